"""``authgate keys ...``: API keys for any user, as the operator."""

from __future__ import annotations

from typing import Annotated

import typer

from authgate.api.schemas import ApiKeyDTO, CreatedApiKeyDTO, UsageRecordDTO
from authgate.cli.console import (
    ConfigOption,
    duration_option,
    err,
    friendly_errors,
    load_settings,
    out,
    with_services,
)
from authgate.cli.output import (
    OutputFormat,
    OutputOption,
    add_row,
    print_json,
    print_table,
    stamp,
    table,
)
from authgate.container import Services
from authgate.services.api_key_views import ApiKeyView, CreatedKey, KeySpec, UsageRecordView
from authgate.services.key_refs import key_ref
from authgate.storage.api_key_repository import UsageFilter
from authgate.storage.paging import PageRequest, SortOrder

keys_app = typer.Typer(
    help="Manage API keys (as the operator, for any user).", no_args_is_help=True
)

_ALL_USERS = PageRequest(page=0, size=100_000)
KeyIdArgument = Annotated[
    str, typer.Argument(help="The key's UUID (see keys list); its old numeric id is deprecated.")
]


async def _owners(services: Services) -> dict[int, str]:
    return {u.id: u.login for u in (await services.users.list_users(_ALL_USERS)).items}


def _print_created(created: CreatedKey, owner: str, output: OutputFormat, what: str) -> None:
    view = created.view
    if output is OutputFormat.JSON:
        print_json(CreatedApiKeyDTO(**ApiKeyDTO.of(view).model_dump(), key=created.plaintext))
        return
    err.print(
        f"{what} API key {view.public_id} ({view.prefix}) of {owner}, "
        f"expires {stamp(view.expires_at)}"
        + (
            # Suspended (its owner deactivated): neither works until it is re-enabled.
            "; suspended: neither the new key nor the previous one works until it is re-enabled"
            if view.suspended_at is not None
            else f"; the previous key works until {stamp(view.previous_valid_until)}"
            if view.previous_valid_until
            else ""
        )
    )
    err.print("This is the only time the key is shown:")
    out.print(created.plaintext, soft_wrap=True, highlight=False, markup=False)


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
    output: OutputOption = OutputFormat.TABLE,
    config: ConfigOption = None,
) -> None:
    """Create an API key and print it (once: it is not stored, only its hash)."""
    lifetime = duration_option(expires_in, option="--expires-in")

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
    _print_created(created, user.lower(), output, "created")


@keys_app.command("list")
def keys_list(
    user: Annotated[str | None, typer.Option(help="Only this user's keys.")] = None,
    include_revoked: Annotated[bool, typer.Option(help="Also list revoked keys.")] = False,
    output: OutputOption = OutputFormat.TABLE,
    config: ConfigOption = None,
) -> None:
    """List API keys (no secrets: only their masked prefixes)."""

    async def page(services: Services) -> list[tuple[ApiKeyView, str]]:
        owner_id = (await services.users.get_user(user)).id if user else None
        keys = await services.api_keys.list_keys(
            None,
            PageRequest(page=0, size=100_000, sort=(SortOrder("createdAt"),)),
            owner_id=owner_id,
            include_revoked=include_revoked,
        )
        logins = await _owners(services)
        return [(key, logins.get(key.owner_id, "?")) for key in keys.items]

    with friendly_errors():
        rows = with_services(load_settings(config), page)
    if output is OutputFormat.JSON:
        print_json([ApiKeyDTO.of(key) for key, _ in rows])
        return
    listing = table(
        "id", "owner", "name", "prefix", "status", "scopes", "allowed IPs", "expires", "last used"
    )
    for key, owner in rows:
        add_row(
            listing,
            key.public_id,
            owner,
            key.name,
            key.prefix,
            f"{key.status} (legacy)" if key.legacy else key.status,
            ",".join(sorted(key.scopes)),
            ", ".join(key.allowed_networks) or "any",
            stamp(key.expires_at),
            stamp(key.last_used_at) + (f" from {key.last_used_ip}" if key.last_used_ip else ""),
        )
    print_table(listing)


@keys_app.command("show")
def keys_show(
    key_id: KeyIdArgument,
    output: OutputOption = OutputFormat.TABLE,
    config: ConfigOption = None,
) -> None:
    """Show one API key: owner, status, allowed IPs, scopes, dates, last use."""

    async def show(services: Services) -> tuple[ApiKeyView, str]:
        key = await services.api_keys.get(None, key_ref(key_id))
        return key, (await _owners(services)).get(key.owner_id, "?")

    with friendly_errors():
        key, owner = with_services(load_settings(config), show)
    if output is OutputFormat.JSON:
        print_json(ApiKeyDTO.of(key))
        return
    facts = table("field", "value")
    for field, value in (
        ("id", key.public_id),
        ("name", key.name),
        ("owner", owner),
        ("prefix", key.prefix),
        ("status", key.status),
        ("scopes", ", ".join(sorted(key.scopes))),
        ("allowed IPs", ", ".join(key.allowed_networks) or "any address"),
        ("rate limit", key.rate_limit or "none"),
        ("created", stamp(key.created_at)),
        ("generated", stamp(key.generated_at)),
        ("expires", stamp(key.expires_at)),
        ("previous key valid until", stamp(key.previous_valid_until, missing="-")),
        ("last used", stamp(key.last_used_at)),
        ("last used from", key.last_used_ip or "-"),
        ("revoked", stamp(key.revoked_at, missing="-")),
        ("suspended", stamp(key.suspended_at, missing="-")),
    ):
        add_row(facts, field, value)
    print_table(facts)


@keys_app.command("rotate")
def keys_rotate(
    key_id: KeyIdArgument,
    grace: Annotated[
        str,
        typer.Option(
            help="How long the previous key keeps working: 0, or a number with s, m, h, d "
            "or w, at most 7d (e.g. 24h)."
        ),
    ] = "0",
    output: OutputOption = OutputFormat.TABLE,
    config: ConfigOption = None,
) -> None:
    """Regenerate an API key's secret and print the new key (once)."""
    period = duration_option(grace, option="--grace", zero_ok=True)

    async def rotate(services: Services) -> tuple[CreatedKey, str]:
        ref = key_ref(key_id)
        plaintext = await services.api_keys.regenerate(None, ref, grace=period)
        view = await services.api_keys.get(None, ref)
        owner = (await _owners(services)).get(view.owner_id, "?")
        return CreatedKey(view=view, plaintext=plaintext), owner

    with friendly_errors():
        created, owner = with_services(load_settings(config), rotate)
    _print_created(created, owner, output, "regenerated")


@keys_app.command("usage")
def keys_usage(
    key_id: Annotated[
        str | None, typer.Option("--key", help="Only this key's use (its UUID).")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Only the keys of this user.")] = None,
    failures: Annotated[bool, typer.Option(help="Only refused requests.")] = False,
    limit: Annotated[int, typer.Option(help="How many records, newest first.", min=1)] = 50,
    output: OutputOption = OutputFormat.TABLE,
    config: ConfigOption = None,
) -> None:
    """Recent use of API keys: time, key, address, method, path, status, why refused."""

    async def usage(services: Services) -> list[UsageRecordView]:
        owner_id = (await services.users.get_user(user)).id if user else None
        page = await services.api_keys.usage(
            None,
            PageRequest(page=0, size=limit, sort=(SortOrder("id", descending=True),)),
            UsageFilter(
                owner_id=owner_id,
                key_ref=key_ref(key_id) if key_id is not None else None,
                succeeded=False if failures else None,
            ),
        )
        return list(page.items)

    with friendly_errors():
        records = with_services(load_settings(config), usage)
    if output is OutputFormat.JSON:
        print_json([UsageRecordDTO.of(record) for record in records])
        return
    listing = table("time", "key", "address", "method", "path", "status", "refused because")
    for record in records:
        add_row(
            listing,
            stamp(record.occurred_at),
            f"{record.api_key_public_id} {record.api_key_name}",
            record.client_ip or "",
            record.method,
            record.path,
            str(record.status),
            record.failure_reason or "",
        )
    print_table(listing)


@keys_app.command("revoke")
def keys_revoke(
    key_id: KeyIdArgument,
    config: ConfigOption = None,
) -> None:
    """Revoke an API key: every worker and node refuses it within a second."""
    with friendly_errors():
        with_services(load_settings(config), lambda s: s.api_keys.revoke(None, key_ref(key_id)))
    out.print(f"API key {key_id} revoked")
