"""``authgate keys ...``: API keys for any user, as the operator."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from authgate.cli.console import (
    ConfigOption,
    err,
    friendly_errors,
    load_settings,
    out,
    parse_duration,
    with_services,
)
from authgate.container import Services
from authgate.services.api_keys import ApiKeyView, CreatedKey, KeySpec
from authgate.storage.paging import PageRequest, SortOrder

keys_app = typer.Typer(
    help="Manage API keys (as the operator, for any user).", no_args_is_help=True
)

_ALL_USERS = PageRequest(page=0, size=100_000)


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
        list[str] | None,
        typer.Option(
            help="read, write, admin or a configured extra scope; repeat (default read, write)."
        ),
    ] = None,
    rate_limit: Annotated[
        str | None, typer.Option(help='Requests allowed, e.g. "100/minute".')
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
                rate_limit=rate_limit,
            ),
        )

    with friendly_errors():
        created = with_services(load_settings(config), create)
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

    with friendly_errors():
        rows = with_services(load_settings(config), page)
    table = Table(
        "id", "owner", "name", "prefix", "status", "scopes", "allowed IPs", "expires", "last used"
    )
    for key, owner in rows:
        table.add_row(
            str(key.id),
            owner,
            key.name,
            key.prefix,
            f"{key.status} (legacy)" if key.legacy else key.status,
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
    with friendly_errors():
        with_services(load_settings(config), lambda s: s.api_keys.revoke(None, key_id))
    out.print(f"API key {key_id} revoked")
