"""Running the server and its database: ``authgate serve|migrate|version``."""

from __future__ import annotations

import asyncio
import logging.config
import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from authgate import __version__
from authgate.cli.connection_limit import connection_bound, raise_open_files_limit
from authgate.cli.console import (
    ConfigOption,
    database_problems,
    friendly_errors,
    load_settings,
    metrics_shared_by_workers,
    out,
    refuse_a_new_data_dir,
    with_services,
)
from authgate.cli.log_config import log_config
from authgate.container import (
    Services,
    configured_rules,
    create_data_dir,
    load_signing_keys,
    prepare_data_dir,
)
from authgate.exceptions import ConfigurationError, ValidationFailed
from authgate.settings import Settings
from authgate.storage import migrate as migrations
from authgate.storage.db import Database

server_commands = typer.Typer()
log = logging.getLogger("authgate.cli")
# Where `serve` leaves the generated first admin password when no terminal shows it.
INITIAL_ADMIN_PASSWORD_FILE = "initial-admin-password"  # noqa: S105 - a file name


@server_commands.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


WORKER_HEALTHCHECK_SECONDS = 60
"""How long a worker may leave its supervisor's ping unanswered before uvicorn kills it."""


@server_commands.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    config: ConfigOption = None,
) -> None:
    """Run the server (migrating SQLite first, and creating 'admin' on first start)."""
    with friendly_errors():
        settings = load_settings(
            config, creates_data_dir=True, host=host, port=port, workers=workers
        )
        _check_listening(settings.http.host, settings.http.port)
        # A bad [[alert_rules]] entry: one line now, not a traceback from the start-up.
        configured_rules(settings)
        # Before anything logs, so that the start's warnings (a data dir others may
        # read, Redis unreachable) are in the configured format, one JSON object a line
        # in JSON mode; warnings only until the start can no longer fail, so that a
        # refused start stays one line (friendly_errors) without its INFO lines.
        logging.config.dictConfig(
            log_config(_at_least_warning(settings.log_level), settings.log_format)
        )
        # Create the data dir and signing keys before the workers start, so that they
        # share one key (with_services warns about an open data dir).
        create_data_dir(settings)
        load_signing_keys(settings)
        admin_password = with_services(settings, _prepare_to_serve, serving=True)
    logging.config.dictConfig(log_config(settings.log_level, settings.log_format))
    _announce(settings)
    warning = unreachable_links_warning(settings)
    if warning is not None:
        log.warning(warning)
    for warning in settings.forward_auth.warnings(settings.api_keys.allowed_scopes):
        log.warning(warning)
    if admin_password is not None:
        _hand_over_admin_password(settings, admin_password)
    with metrics_shared_by_workers(settings.http.workers):
        _run_uvicorn(settings)


def _check_listening(host: str, port: int) -> None:
    """Refuse, in one line, an address this server could not listen on (a port taken,
    a host that is no address of this machine), before anything is created or logged:
    uvicorn would say it in several lines after the start's, and exit 3."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, protocol, _, address = found[0]
        with socket.socket(family, kind, protocol) as probe:
            # As uvicorn's sockets are bound: SO_REUSEADDR (a port only in TIME_WAIT is
            # not taken), and IPv6 only for an IPv6 address (asyncio's), so that `::`
            # is not refused for a port another program holds on IPv4 alone.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)
    except OSError as error:  # socket.gaierror included
        reason = error.strerror or type(error).__name__
        raise ConfigurationError(f"cannot listen on {shown}: {reason}") from None


def _at_least_warning(level: str) -> str:
    return level if logging.getLevelName(level) >= logging.WARNING else "WARNING"


def _run_uvicorn(settings: Settings) -> None:
    # Imported here: the other commands never serve, and uvicorn and the protocol (with
    # the API modules it reaches) would add to every command's start.
    import uvicorn

    from authgate.cli.http_protocol import bounded_head_protocol
    from authgate.cli.worker_supervision import supervise_with_exit_detection

    max_connections = _open_files_and_connections(settings)
    if settings.http.workers > 1:
        supervise_with_exit_detection()
    uvicorn.run(
        "authgate.app:create_app_from_environment",
        factory=True,
        host=settings.http.host,
        port=settings.http.port,
        workers=settings.http.workers,
        proxy_headers=False,  # client addresses are resolved by authgate's own rules
        server_header=False,
        access_log=False,  # authgate logs requests itself, without query strings
        # uvicorn kills a worker that does not answer its supervisor's ping within this
        # time, and stops the whole server when a replacement then fails to start. Its
        # default (5 s) is shorter than a worker's start (it imports the app in a fresh
        # interpreter: ~2 s of CPU, far longer on a busy host) and than a busy event loop
        # may keep the answering thread from the GIL, so healthy workers were killed.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        # A request that never ends (a verification of a huge audit trail, a client that
        # stops reading an export) must not hold a stop forever: uvicorn waits for running
        # requests without a bound unless told one.
        timeout_graceful_shutdown=settings.http.shutdown_timeout_seconds,
        log_config=log_config(settings.log_level, settings.log_format),
        # httptools with bounds on the request head's size and arrival time and on the
        # body's arrival time (431, 408): uvicorn's own protocols bound none of them
        # (see authgate.cli.http_protocol).
        http=bounded_head_protocol(
            max_head_bytes=settings.http.max_header_bytes,
            head_timeout=settings.http.header_timeout_seconds,
            body_timeout=settings.http.body_timeout_seconds,
            max_body_bytes=settings.http.max_body_bytes,
            max_connections=max_connections,
        ),
        # authgate serves no WebSocket: a request carrying Upgrade: websocket (UTMStack
        # v10's nginx auth check forwards it with GET /api/authenticate) is answered as
        # the plain HTTP request it also is, not refused as a failed handshake (403).
        ws="none",
    )


def _open_files_and_connections(settings: Settings) -> int:
    """Raise the open-files limit (the workers inherit it) and work out the bound on
    open connections per worker under it (``authgate.cli.connection_limit``)."""
    limit = raise_open_files_limit()
    configured = settings.http.max_connections
    bound = connection_bound(configured, limit.now)
    log.info(
        "open files limit %d%s; at most %d open connections per worker",
        limit.now,
        f" (raised from {limit.before})" if limit.now != limit.before else "",
        bound,
    )
    if bound < configured and "max_connections" in settings.http.model_fields_set:
        log.warning(
            "AUTHGATE_MAX_CONNECTIONS=%d is more than half the open-files limit (%d): "
            "%d per worker; raise the hard limit (systemd: LimitNOFILE=)",
            configured,
            limit.now,
            bound,
        )
    return bound


async def _prepare_to_serve(services: Services) -> str | None:
    """Create the first admin if there is none (``with_services(serving=True)`` has
    refused a configuration the running nodes disagree with, before any worker starts,
    with a plain message)."""
    given = services.settings.admin_password
    try:
        return await services.users.ensure_initial_admin(
            given.get_secret_value() if given is not None else None
        )
    except ValidationFailed as refused:  # only a given password can be refused
        raise ConfigurationError(
            f"AUTHGATE_ADMIN_PASSWORD (or _FILE) is refused: {refused.message}"
        ) from None


@server_commands.command()
def migrate(config: ConfigOption = None) -> None:
    """Apply pending database migrations (safe to run repeatedly)."""
    with friendly_errors():
        # The database only: building the services would generate a pepper, keys and
        # signing keys into the data dir (compose's migrate container has none of its own).
        # Only a SQLite database lives there: PostgreSQL needs no data dir at all.
        settings = load_settings(config, creates_data_dir=True)
        if settings.is_sqlite:
            refuse_a_new_data_dir(settings)
            prepare_data_dir(settings)

        async def run() -> tuple[str | None, bool]:
            db = Database(settings.effective_database_url)
            try:
                current = await migrations.current_revision(db.engine)
                if migrations.unknown_revision(current):
                    raise ConfigurationError(migrations.unknown_revision_message(str(current)))
                # An older version started on a newer schema (an image rolled back):
                # serve runs on it (migrations only add), so there is nothing to do.
                if migrations.schema_is_newer(current):
                    return current, True
                await migrations.upgrade(db.engine)
                return await migrations.current_revision(db.engine), False
            finally:
                await db.close()

        with database_problems(settings):
            revision, newer = asyncio.run(run())
    if newer:
        out.print(
            f"the database schema ({revision}) is newer than this version's "
            f"({migrations.head_revision()}): nothing to do",
            soft_wrap=True,
        )
        return
    out.print(f"database schema at revision {revision}")


def _display_url(url: str) -> str:
    """The database URL without its password: in the user part, and in the query, where
    libpq and asyncpg also take one (``?password=``, ``?sslpassword=``; the log review:
    printed at every start)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    hidden = {
        name: "***" if "password" in name.lower() else value for name, value in parsed.query.items()
    }
    return parsed.set(query=hidden).render_as_string(hide_password=True)


def _announce(settings: Settings) -> None:
    """Where the server is: a banner on standard output, or one log record in JSON."""
    base = settings.http.base_url
    database = _display_url(settings.effective_database_url)
    data_dir = settings.data_dir.absolute() if settings.uses_data_dir else None
    if settings.log_format == "json":
        log.info(
            "authgate %s: API %s/api, database %s, data dir %s",
            __version__,
            base,
            database,
            data_dir or "-",
        )
        return
    out.print(f"authgate {__version__}")
    out.print(f"  API:        {base}/api")
    out.print(f"  Swagger UI: {base}/swagger-ui/index.html")
    # Paths are not wrapped: the data dir line is what to copy into --data-dir.
    out.print(f"  Database:   {database}", soft_wrap=True)
    if data_dir is not None:
        out.print(f"  Data dir:   {data_dir}", soft_wrap=True)


_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - recognised, not bound


def unreachable_links_warning(settings: Settings) -> str | None:
    """Why the links authgate sends (password resets, invitations) would not open, if
    they would not: without a public URL they name the listening address, and a
    wildcard one (a container's ``--host 0.0.0.0``) is no address to open."""
    http = settings.http
    if http.public_url or http.host not in _WILDCARD_HOSTS:
        return None
    return (
        f"AUTHGATE_PUBLIC_URL is not set: password-reset and invitation links will name "
        f"{http.base_url}, which their recipients cannot open; set it to the URL people "
        "reach authgate at"
    )


def _hand_over_admin_password(settings: Settings, password: str) -> None:
    """Show the generated password to a person at a terminal; anywhere else (a
    container's or systemd's log, a pipe) it would stay in the log for good, so it
    goes to a file only this user can read, and the log says where, never what."""
    if sys.stdout.isatty():
        out.print("  First start: created user [bold]admin[/bold] with password")
        out.print(f"    [bold]{password}[/bold]")
        out.print("  It is shown only this once: store it now, then change it.")
        return
    path = _write_private_file(settings.data_dir / INITIAL_ADMIN_PASSWORD_FILE, password)
    log.warning(
        "first start: created user admin; its password is in %s (mode 0600): "
        "read it, change the password, then delete the file",
        path.absolute(),
    )


def _write_private_file(path: Path, text: str) -> Path:
    """``text`` in a new file of mode 0600 (an old one, from an earlier first start on
    a database since reset, is replaced)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text + "\n")
    return path
