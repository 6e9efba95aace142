"""``authgate-client keys ...``: your API keys (admins: everyone's with ``--all``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.markup import escape

from authgate.client._cli._render import (
    all_pages,
    first_items,
    parse_duration,
    print_json,
    print_record,
    print_table,
    when,
)
from authgate.client._cli._session import (
    EXIT_USAGE,
    OutputOption,
    checked_outcome,
    err,
    fail,
    out,
    reporting,
    session_of,
)
from authgate.client._models import ApiKey

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="Your API keys: create, list, show, rotate, revoke, usage.", no_args_is_help=True
)

# What a key route's path takes: a UUID, hyphens and all (either case), or the key's
# former numeric id (deprecated). The server has no route for anything else: its 404
# would read as a wrong base URL, so other text is refused before any request.
_KEY_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9]+"
)


def _key_id(value: str) -> str:
    if not _KEY_ID.fullmatch(value):
        raise typer.BadParameter(
            "not a key id: a key's UUID, as 'keys list' shows it"
            " (6f1c3e0a-2b4d-4c8e-9a7f-0d5b1e2c3a4f)"
        )
    return value


KeyId = Annotated[str, typer.Argument(help="The key's UUID (see 'keys list').", callback=_key_id)]
# The server keeps a regenerated key's previous secret at most this long.
MAX_GRACE = timedelta(days=7)


def _duration_option(value: str, name: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise fail(f"{name}: {error}", EXIT_USAGE) from None


def _key_rows(key: ApiKey) -> list[tuple[str, str | None]]:
    rows: list[tuple[str, str | None]] = [
        ("id", str(key.id)),
        ("name", key.name),
        ("prefix", key.prefix),
        ("status", _status(key)),
        ("allowed IPs", ", ".join(key.allowed_ips) or "any"),
        ("scopes", ", ".join(key.scopes) or None),
        ("rate limit", key.rate_limit),
        ("created", when(key.created_at)),
        ("expires", when(key.expires_at, never="never")),
        ("last used", when(key.last_used_at, never="never")),
        ("last used from", key.last_used_ip),
    ]
    if key.revoked_at is not None:
        rows.append(("revoked", when(key.revoked_at)))
    if key.rotation_grace_until is not None:
        rows.append(("old key valid until", when(key.rotation_grace_until)))
    if key.legacy:
        rows.append(("legacy", "rotate: plaintext was stored by UTMStack"))
    return rows


def _status(key: ApiKey) -> str | None:
    """The status, marked ``legacy`` for a key imported from UTMStack and not rotated."""
    if key.legacy and key.status:
        return f"{key.status} (legacy)"
    return key.status


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="What the key is for, e.g. ci-deploy.")],
    expires_in: Annotated[
        str, typer.Option(help="Lifetime: a number with s, m, h, d or w (e.g. 90d).")
    ] = "90d",
    allow_ip: Annotated[
        list[str] | None,
        typer.Option(help="Allowed address or CIDR (IPv4/IPv6); repeat. None: any address."),
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="read, write or admin; repeat (default: the server's, read+write)."),
    ] = None,
    rate_limit: Annotated[
        str | None, typer.Option(help='Requests allowed, e.g. "100/minute".')
    ] = None,
    output: OutputOption = None,
) -> None:
    """Create a key and print it, once (only its hash is kept by the server)."""
    session = session_of(ctx, output)
    lifetime = _duration_option(expires_in, "--expires-in")
    with reporting(), session.client() as client:
        created = client.create_api_key(
            name,
            expires_at=datetime.now(UTC) + lifetime,
            allowed_ips=allow_ip or [],
            scopes=scope,
            rate_limit=rate_limit,
        )
    if session.json:
        print_json(created)
        return
    # The id and name are the server's: text, never markup.
    err.print(
        f"Created API key {escape(created.id)} ({escape(created.prefix or created.name)}),"
        f" expires {when(created.expires_at, never='never')}."
    )
    err.print("This is the only time the key is shown; store it in a secret manager:")
    out.print(created.key, markup=False)


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    all_users: Annotated[bool, typer.Option("--all", help="Admins: every user's keys.")] = False,
    include_revoked: Annotated[
        bool, typer.Option("--include-revoked", help="Also list revoked keys.")
    ] = False,
    page_size: Annotated[int, typer.Option(min=1, max=1000, help="Keys per request.")] = 100,
    output: OutputOption = None,
) -> None:
    """List keys: name, prefix, status, allowed IPs, expiry, last use."""
    session = session_of(ctx, output)
    with reporting(), session.client() as client:
        keys = list(
            all_pages(
                lambda page, size: client.list_api_keys(
                    page=page, size=size, include_revoked=include_revoked, all_users=all_users
                ),
                size=page_size,
                limit=None,
                label="keys",
            )
        )
    if session.json:
        print_json(keys)
        return
    print_table(
        None,
        ["ID", "Name", "Prefix", "Status", "Allowed IPs", "Expires", "Last used"],
        [
            [
                str(key.id),
                key.name,
                key.prefix,
                _status(key),
                ", ".join(key.allowed_ips) or "any",
                when(key.expires_at, never="never"),
                when(key.last_used_at, never="never"),
            ]
            for key in keys
        ],
    )


@keys_app.command("show")
def keys_show(ctx: typer.Context, key_id: KeyId, output: OutputOption = None) -> None:
    """Show one key (never the key itself)."""
    session = session_of(ctx, output)
    with reporting(), session.client() as client:
        key = client.get_api_key(key_id)
    if session.json:
        print_json(key)
    else:
        print_record(_key_rows(key))


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    key_id: KeyId,
    grace: Annotated[
        str, typer.Option(help="How long the old key keeps working (e.g. 24h; at most 7d).")
    ] = "0",
    output: OutputOption = None,
) -> None:
    """Regenerate a key and print the new one, once; the old one stops after --grace."""
    session = session_of(ctx, output)
    grace_period = _duration_option(grace, "--grace")
    if grace_period > MAX_GRACE:
        raise fail(
            f"--grace {grace} is too long: the previous key can keep working at most 7d"
            " (168h) after a rotation",
            EXIT_USAGE,
        )
    with reporting(), session.client() as client:
        rotated = client.regenerate_api_key(key_id, grace=grace_period)
    if session.json:
        seconds = int(grace_period.total_seconds())
        print_json({"id": rotated.id, "key": rotated.key, "graceSeconds": seconds})
        return
    err.print(
        f"Rotated API key {escape(rotated.id)}; the previous key "
        + (f"keeps working for {grace}." if grace_period else "no longer works.")
    )
    err.print("This is the only time the new key is shown:")
    out.print(rotated.key, markup=False)


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: KeyId, output: OutputOption = None) -> None:
    """Revoke a key: refused at once, on every server worker."""
    session = session_of(ctx, output)
    with reporting(), session.client() as client:
        # Asked first: revoking again changes nothing, and saying "Revoked" would
        # suggest the key had been working until now.
        before = client.get_api_key(key_id)
        already = before.status == "revoked" or before.revoked_at is not None
        if not already:
            client.revoke_api_key(key_id)
    if session.json:
        print_json({"id": before.id, "revoked": True, "alreadyRevoked": already})
    elif already:
        revoked_at = f" at {when(before.revoked_at)}" if before.revoked_at else ""
        err.print(f"API key {escape(before.id)} was already revoked{revoked_at}: nothing changed.")
    else:
        err.print(f"Revoked API key {escape(before.id)}.")


@keys_app.command("usage")
def keys_usage(
    ctx: typer.Context,
    key_id: KeyId,
    limit: Annotated[int, typer.Option(min=1, help="At most this many records.")] = 50,
    outcome: Annotated[
        str | None, typer.Option(help="success or failure (refused requests).")
    ] = None,
    output: OutputOption = None,
) -> None:
    """Requests made with a key, newest first: time, method, path, status, address."""
    session = session_of(ctx, output)
    outcome = checked_outcome(outcome)
    with reporting(), session.client() as client:
        records = first_items(
            lambda page, size: client.api_key_usage(key_id, outcome=outcome, page=page, size=size),
            limit=limit,
            label="usage records",
        )
    if session.json:
        print_json(records)
        return
    print_table(
        None,
        ["Time", "Method", "Endpoint", "Status", "Address", "Refused because"],
        [
            [
                when(record.timestamp),
                record.method,
                record.endpoint,
                str(record.status) if record.status is not None else None,
                record.ip_address,
                record.error_message,
            ]
            for record in records
        ],
    )
