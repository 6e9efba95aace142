"""``authgate audit ...``: the audit trail from the server's command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from authgate.cli.console import (
    ConfigOption,
    err,
    friendly_errors,
    load_settings,
    out,
    with_services,
)
from authgate.cli.output import stamp
from authgate.clock import as_utc
from authgate.container import Services
from authgate.security.audit_checkpoints import MAX_CHECKPOINT_LENGTH
from authgate.security.log_lines import escape_control_characters
from authgate.services.audit.events import AuditEntry, EventType
from authgate.services.audit_checkpoints import PublishedCheckpoint
from authgate.services.audit_export import ExportFormat, as_csv, as_json_lines
from authgate.services.audit_verification import ChainVerification
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest, SortOrder

audit_app = typer.Typer(
    help="Read, export, verify and checkpoint the audit trail.", no_args_is_help=True
)


@audit_app.command("verify")
def audit_verify(
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="A checkpoint kept outside the database: a file holding its JWS, or the "
            "JSON as published (webhook body, log line, API listing).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check the keyed hash chain (and a checkpoint); report the first problem (exit 1)."""
    text = _read_checkpoint_file(checkpoint) if checkpoint is not None else None

    async def verify(services: Services) -> ChainVerification:
        held = services.checkpoints.read(text, location="file") if text is not None else None
        return await services.audit.verify(checkpoint=held)

    with friendly_errors(invalid_input_exit=2):
        result = with_services(load_settings(config), verify)
    keyed = f"; keyed from record {result.keyed_from}" if result.keyed_from else ""
    compared = result.checkpoint
    if result.intact:
        out.print(f"audit chain intact: {result.checked} records verified{keyed}")
        if compared is not None:
            out.print(
                f"checkpoint of record {compared.checkpoint.position} "
                f"({stamp(compared.checkpoint.time)}, {compared.checkpoint.node}): "
                f"{compared.detail}",
                highlight=False,
            )
        return
    where = f" at record {result.first_broken_id}" if result.first_broken_id else ""
    err.print(
        f"[red]audit chain {result.verdict}[/red]{where}: {result.problem} "
        f"({result.checked} records verified before it{keyed})",
        highlight=False,
    )
    raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(config: ConfigOption = None) -> None:
    """Sign a checkpoint of the chain now and print it (JSON, as the sinks receive it):
    keep it outside the database and give it to `audit verify --checkpoint` later."""

    async def publish(services: Services) -> PublishedCheckpoint | None:
        return await services.checkpoints.publish("command_line")

    with friendly_errors():
        published = with_services(load_settings(config), publish)
    if published is None:
        err.print(
            "[red]no checkpoint:[/red] the chain head is not signed with the audit key "
            "(see the log; run `authgate audit verify`)"
        )
        raise typer.Exit(1)
    sys.stdout.write(json.dumps(published.notice().as_json(), sort_keys=True) + "\n")
    sys.stdout.flush()


def _read_checkpoint_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")[: MAX_CHECKPOINT_LENGTH * 2]
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not a text file"
        err.print(f"[red]error:[/red] cannot read the checkpoint file {path}: {reason}")
        raise typer.Exit(2) from None


@audit_app.command("tail")
def audit_tail(
    # 0 as tail's: with --follow, only the records written from now on.
    lines: Annotated[
        int, typer.Option("-n", "--lines", help="How many recent records.", min=0)
    ] = 20,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new ones.")] = False,
    event_type: Annotated[
        # The REST API's list: an unknown type is refused with the valid ones (exit 2),
        # not taken for a filter that matches nothing.
        list[EventType] | None,
        typer.Option("--type", help="Only these event types (repeat)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Print the latest records; with --follow, new ones as they are written (Ctrl-C ends)."""
    where = AuditFilter(event_types=tuple(event.value for event in event_type or ()))

    async def tail(services: Services) -> None:
        newest_first = PageRequest(page=0, size=lines, sort=(SortOrder("id", descending=True),))
        page = await services.audit.search(where, newest_first)
        latest = 0
        for entry in reversed(page.items):
            _print(entry)
            latest = entry.id
        while follow:
            await asyncio.sleep(1.0)
            async for entry in services.audit.stream(where, after=latest):
                _print(entry)
                latest = entry.id

    with friendly_errors(), contextlib.suppress(KeyboardInterrupt):
        with_services(load_settings(config), tail)


def _in_utc(moment: datetime | None) -> datetime | None:
    """A time option in UTC; one with no UTC form is a bad option (exit 2), as a
    malformed one is."""
    try:
        return None if moment is None else as_utc(moment)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


@audit_app.command("export")
def audit_export(
    output_format: Annotated[
        ExportFormat, typer.Option("--format", help="csv, or json for JSON Lines.")
    ] = "csv",
    since: Annotated[
        datetime | None,
        typer.Option(help="From this time (ISO 8601; without a zone, UTC).", callback=_in_utc),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(help="Before this time (ISO 8601; without a zone, UTC).", callback=_in_utc),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write every matching record, oldest first, to standard output."""
    where = AuditFilter(since=since, until=until)

    async def export(services: Services) -> None:
        entries = services.audit.stream(where)
        chunks = as_csv(entries) if output_format == "csv" else as_json_lines(entries)
        async for chunk in chunks:
            sys.stdout.write(chunk)
        sys.stdout.flush()

    with friendly_errors():
        with_services(load_settings(config), export)


def _print(entry: AuditEntry) -> None:
    who = entry.actor_login or (f"key {entry.api_key_name}" if entry.api_key_name else "-")
    line = (
        f"{stamp(entry.occurred_at)} {entry.event_type:<24} {entry.outcome:<7} "
        f"{who} {entry.client_ip or '-'} {entry.reason or ''}".rstrip()
    )
    # A failed login's typed name is anyone's text: never Rich markup ("[/x]" crashed the
    # command, "[link=...]" made a hyperlink), and one record stays one line whatever
    # rows an older version stored, and however narrow the terminal (soft_wrap: a pipe
    # to grep gets whole records).
    out.print(escape_control_characters(line), markup=False, highlight=False, soft_wrap=True)
