"""The server's command line: ``authgate serve|migrate|users|signing-keys``.

Commands call the same services the REST API calls; nothing here holds a rule.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from authgate import __version__
from authgate.app import ensure_schema
from authgate.container import Services, build_services, load_signing_keys, prepare_data_dir
from authgate.exceptions import AuthgateError, ConfigurationError
from authgate.security.principal import KNOWN_AUTHORITIES, ROLE_USER
from authgate.services.api_keys import ApiKeyView, CreatedKey, KeySpec
from authgate.services.signing_keys import SigningKeyFile
from authgate.services.users import NewUser
from authgate.settings import CONFIG_FILE_VARIABLE, Settings
from authgate.storage import migrate as migrations
from authgate.storage.paging import PageRequest, SortOrder

T = TypeVar("T")

app = typer.Typer(
    help="authgate: self-hosted API authentication (JWT bearer tokens and API keys).",
    no_args_is_help=True,
)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
keys_app = typer.Typer(
    help="Manage API keys (as the operator, for any user).", no_args_is_help=True
)
signing_keys_app = typer.Typer(help="Manage the JWT signing keys.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(signing_keys_app, name="signing-keys")

out = Console()
err = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config file (else AUTHGATE_CONFIG_FILE)."),
]


def main() -> None:
    app()


@contextmanager
def _friendly_errors() -> Iterator[None]:
    """Known failures become one red line and an exit code; never a traceback."""
    try:
        yield
    except ConfigurationError as error:
        err.print(f"[red]configuration error:[/red] {error}")
        raise typer.Exit(2) from None
    except AuthgateError as error:
        err.print(f"[red]error:[/red] {error.message}")
        raise typer.Exit(1) from None
    except ValidationError as error:
        err.print(f"[red]invalid settings:[/red] {error}")
        raise typer.Exit(2) from None


def _settings(config: Path | None, **overrides: Any) -> Settings:
    if config is not None:
        # Worker processes build their own settings from the environment.
        os.environ[CONFIG_FILE_VARIABLE] = str(config)
    given = {name: value for name, value in overrides.items() if value is not None}
    return Settings(**given)


def _with_services(settings: Settings, use: Callable[[Services], Awaitable[T]]) -> T:
    async def run() -> T:
        services = build_services(settings)
        try:
            await ensure_schema(services)
            await services.start(background=False)
            return await use(services)
        finally:
            await services.close()

    return asyncio.run(run())


def _read_password(from_stdin: bool, *, confirm: bool = True) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            err.print("[red]error:[/red] no password on standard input")
            raise typer.Exit(1)
        return password
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=confirm))


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    config: ConfigOption = None,
) -> None:
    """Run the server (migrating SQLite first, and creating 'admin' on first start)."""
    with _friendly_errors():
        settings = _settings(config, host=host, port=port, workers=workers)
        # Create the data dir and signing keys before the workers start, so that they
        # share one key.
        prepare_data_dir(settings)
        load_signing_keys(settings)
        admin_password = _with_services(
            settings,
            lambda services: services.users.ensure_initial_admin(
                settings.admin_password.get_secret_value() if settings.admin_password else None
            ),
        )
    base = settings.base_url
    out.print(f"authgate {__version__}")
    out.print(f"  API:        {base}/api")
    out.print(f"  Swagger UI: {base}/swagger-ui/index.html")
    out.print(f"  Database:   {_display_url(settings.effective_database_url)}")
    if admin_password is not None:
        out.print("  First start: created user [bold]admin[/bold] with password")
        out.print(f"    [bold]{admin_password}[/bold]")
        out.print("  It is shown only this once: store it now, then change it.")
    uvicorn.run(
        "authgate.app:create_app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        proxy_headers=False,  # client addresses are resolved by authgate's own rules
        server_header=False,
        access_log=False,  # authgate logs requests itself, without query strings
        log_config=_log_config(settings.log_level),
    )


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Apply pending database migrations (safe to run repeatedly)."""
    with _friendly_errors():
        settings = _settings(config)

        async def run() -> str | None:
            services = build_services(settings)
            try:
                await migrations.upgrade(services.db.engine)
                return await migrations.current_revision(services.db.engine)
            finally:
                await services.db.close()

        revision = asyncio.run(run())
    out.print(f"database schema at revision {revision}")


@users_app.command("create")
def users_create(
    login: Annotated[str, typer.Option(help="Login (lower-cased).")],
    email: Annotated[str, typer.Option(help="E-mail address.")],
    role: Annotated[
        list[str] | None,
        typer.Option(help="ROLE_ADMIN or ROLE_USER; repeat for both (default ROLE_USER)."),
    ] = None,
    first_name: Annotated[str | None, typer.Option()] = None,
    last_name: Annotated[str | None, typer.Option()] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Create a user."""
    roles = frozenset(role or [ROLE_USER])
    unknown = roles - KNOWN_AUTHORITIES
    if unknown:
        err.print(f"[red]error:[/red] unknown role {sorted(unknown)[0]}")
        raise typer.Exit(1)
    password = _read_password(password_stdin)
    with _friendly_errors():
        user = _with_services(
            _settings(config),
            lambda services: services.users.create_user(
                NewUser(
                    login=login,
                    email=email,
                    password=password,
                    authorities=roles,
                    first_name=first_name,
                    last_name=last_name,
                )
            ),
        )
    out.print(f"created user {user.login} ({', '.join(sorted(user.authorities))})")


@users_app.command("list")
def users_list(config: ConfigOption = None) -> None:
    """List all users."""
    with _friendly_errors():
        page = _with_services(
            _settings(config),
            lambda services: services.users.list_users(
                PageRequest(page=0, size=100_000, sort=(SortOrder("login"),))
            ),
        )
    table = Table("id", "login", "email", "roles", "active", "created")
    for user in page.items:
        table.add_row(
            str(user.id),
            user.login,
            user.email,
            ", ".join(sorted(user.authorities)),
            "yes" if user.activated else "no",
            user.created_at.isoformat(timespec="seconds"),
        )
    out.print(table)


@users_app.command("set-password")
def users_set_password(
    login: Annotated[str, typer.Argument(help="The user's login.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Set a user's password; their existing tokens stop working."""
    password = _read_password(password_stdin)
    with _friendly_errors():
        _with_services(_settings(config), lambda s: s.users.set_password(login, password))
    out.print(f"password of {login.lower()} changed; their tokens are revoked")


@users_app.command("deactivate")
def users_deactivate(
    login: Annotated[str, typer.Argument(help="The user's login.")],
    config: ConfigOption = None,
) -> None:
    """Deactivate a user: no more logins, existing tokens stop working."""
    with _friendly_errors():
        _with_services(_settings(config), lambda s: s.users.deactivate(login, acting_user_id=None))
    out.print(f"user {login.lower()} deactivated")


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Option(help="Login of the key's owner.")],
    name: Annotated[str, typer.Option(help="A name that says what the key is for.")],
    expires_in: Annotated[
        str, typer.Option(help="Lifetime: a number with s, m, h, d or w (e.g. 90d).")
    ] = "90d",
    allow_ip: Annotated[
        list[str] | None,
        typer.Option(help="Allowed address or CIDR (IPv4/IPv6); repeat for several."),
    ] = None,
    scope: Annotated[
        list[str] | None, typer.Option(help="read, write or admin; repeat (default read, write).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create an API key and print it (once: it is not stored, only its hash)."""
    try:
        lifetime = parse_duration(expires_in)
    except ValueError as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None

    async def create(services: Services) -> CreatedKey:
        owner = await services.users.get_user(user)
        return await services.api_keys.create(
            owner.id,
            KeySpec(
                name=name,
                allowed_networks=allow_ip or [],
                expires_at=services.clock() + lifetime,
                scopes=frozenset(scope) if scope else None,
            ),
        )

    with _friendly_errors():
        created = _with_services(_settings(config), create)
    view = created.view
    err.print(
        f"created API key {view.id} ({view.prefix}) for {user.lower()}, expires {view.expires_at}"
    )
    err.print("This is the only time the key is shown:")
    out.print(created.plaintext, soft_wrap=True, highlight=False)


@keys_app.command("list")
def keys_list(
    user: Annotated[str | None, typer.Option(help="Only this user's keys.")] = None,
    include_revoked: Annotated[bool, typer.Option(help="Also list revoked keys.")] = False,
    config: ConfigOption = None,
) -> None:
    """List API keys (no secrets: only their masked prefixes)."""

    async def page(services: Services) -> list[tuple[ApiKeyView, str]]:
        owner_id = (await services.users.get_user(user)).id if user else None
        keys = await services.api_keys.list_keys(
            None,
            PageRequest(page=0, size=100_000, sort=(SortOrder("id"),)),
            owner_id=owner_id,
            include_revoked=include_revoked,
        )
        logins = {u.id: u.login for u in (await services.users.list_users(_ALL_USERS)).items}
        return [(key, logins.get(key.owner_id, "?")) for key in keys.items]

    with _friendly_errors():
        rows = _with_services(_settings(config), page)
    table = Table(
        "id", "owner", "name", "prefix", "status", "scopes", "allowed IPs", "expires", "last used"
    )
    for key, owner in rows:
        table.add_row(
            str(key.id),
            owner,
            key.name,
            key.prefix,
            key.status,
            ",".join(sorted(key.scopes)),
            ", ".join(key.allowed_networks) or "any",
            key.expires_at.isoformat(timespec="minutes") if key.expires_at else "never",
            key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see keys list).")],
    config: ConfigOption = None,
) -> None:
    """Revoke an API key: every worker and node refuses it within a second."""
    with _friendly_errors():
        _with_services(_settings(config), lambda s: s.api_keys.revoke(None, key_id))
    out.print(f"API key {key_id} revoked")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_ALL_USERS = PageRequest(page=0, size=100_000)


def parse_duration(text: str) -> timedelta:
    """``90d`` → 90 days; units s, m, h, d, w."""
    value, unit = text.strip()[:-1], text.strip()[-1:].lower()
    if unit not in _DURATION_UNITS or not value.isdigit() or int(value) <= 0:
        raise ValueError(f"invalid duration {text!r}: use a positive number with s, m, h, d or w")
    return timedelta(seconds=int(value) * _DURATION_UNITS[unit])


@signing_keys_app.command("list")
def signing_keys_list(config: ConfigOption = None) -> None:
    """Show the keys in the key ring (no key material)."""
    with _friendly_errors():
        key_file, ring = load_signing_keys(_settings(config))
    table = Table("kid", "algorithm", "created", "state")
    for key in ring.keys:
        state = "active" if key is ring.active else f"retired {key.retired_at:%Y-%m-%d %H:%M}"
        table.add_row(key.kid, key.algorithm, key.created_at.isoformat(timespec="seconds"), state)
    out.print(table)
    if key_file is None:
        out.print("HS512 mode: the shared secret is configured, not stored by authgate.")


@signing_keys_app.command("rotate")
def signing_keys_rotate(config: ConfigOption = None) -> None:
    """Start signing with a new key; old keys keep verifying until their tokens expire."""
    with _friendly_errors():
        settings = _settings(config)
        key_file, _ = load_signing_keys(settings)
        if not isinstance(key_file, SigningKeyFile):
            raise ConfigurationError("HS512 secrets are rotated by changing AUTHGATE_JWT_SECRET")
        longest = max(settings.token_ttl, settings.remember_me_ttl)
        ring = key_file.rotate(keep_for=longest + timedelta(minutes=5))
    out.print(f"new active key {ring.active.kid}; running servers pick it up within a second")


def _display_url(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _log_config(level: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "authgate": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
        },
    }
