"""``authgate-client sessions ...``: your v12 sessions (one per ``login --v12``, per
device or script), listed and revoked."""

from __future__ import annotations

from typing import Annotated

import typer

from authgate.client._cli._render import print_json, print_table, when
from authgate.client._cli._session import (
    EXIT_USAGE,
    OutputOption,
    err,
    fail,
    reporting,
    session_of,
)

__all__ = ["sessions_app"]

sessions_app = typer.Typer(
    help="Your v12 sessions (logins with --v12): list, revoke.", no_args_is_help=True
)


@sessions_app.command("list")
def sessions_list(ctx: typer.Context, output: OutputOption = None) -> None:
    """Your live sessions; * marks the one this command uses."""
    session = session_of(ctx, output)
    with reporting(), session.client() as client:
        sessions = client.sessions()
    if session.json:
        print_json(sessions)
        return
    print_table(
        None,
        ["", "id", "address", "device", "created", "last used", "expires"],
        [
            (
                "*" if s.current else "",
                s.id,
                s.ip,
                s.user_agent,
                when(s.created_at),
                when(s.last_used_at),
                when(s.expires_at),
            )
            for s in sessions
        ],
    )


@sessions_app.command("revoke")
def sessions_revoke(
    ctx: typer.Context,
    session_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="The session's id (see 'sessions list').")
    ] = None,
    others: Annotated[
        bool, typer.Option("--others", help="Revoke every session but this one.")
    ] = False,
) -> None:
    """Revoke one session, or all others: their refresh and access tokens stop working."""
    if (session_id is None) == (not others):
        raise fail("give a session ID or --others (not both)", EXIT_USAGE)
    session = session_of(ctx)
    with reporting(), session.client() as client:
        if others:
            client.revoke_other_sessions()
        else:
            assert session_id is not None
            client.revoke_session(session_id)
    err.print("Revoked every other session." if others else f"Revoked session {session_id}.")
