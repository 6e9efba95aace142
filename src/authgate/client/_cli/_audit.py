"""``authgate-client audit tail``: the latest audit events (admins)."""

from __future__ import annotations

from typing import Annotated

import typer

from authgate.client._cli._render import first_items, print_json, print_table, when
from authgate.client._cli._session import OutputOption, checked_outcome, reporting, session_of

__all__ = ["audit_app"]

audit_app = typer.Typer(help="The audit trail (administrators).", no_args_is_help=True)


@audit_app.command("tail")
def audit_tail(
    ctx: typer.Context,
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, help="How many events.")] = 50,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only this type (e.g. AUTH_FAILURE); repeat for several."),
    ] = None,
    outcome: Annotated[str | None, typer.Option(help="success or failure.")] = None,
    actor: Annotated[str | None, typer.Option(help="Login or key name.")] = None,
    output: OutputOption = None,
) -> None:
    """The latest audit events, oldest first (like tail)."""
    session = session_of(ctx, output)
    outcome = checked_outcome(outcome)
    with reporting(), session.client() as client:
        events = first_items(
            lambda page, size: client.audit_events(
                types=event_type or (), outcome=outcome, actor=actor, page=page, size=size
            ),
            limit=lines,
            label="audit events",
        )
    events.reverse()  # the server sends newest first; tail prints oldest first
    if session.json:
        print_json(events)
        return
    print_table(
        None,
        ["ID", "Time", "Type", "Outcome", "Actor", "Address", "Reason"],
        [
            [
                str(event.id),
                when(event.timestamp),
                event.type,
                event.outcome,
                event.actor,
                event.ip_address,
                event.reason,
            ]
            for event in events
        ],
    )
