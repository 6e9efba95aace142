"""``authgate import utmstack``: move UTMStack's users and API keys here (see README,
"Migrating from UTMStack")."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from authgate.cli.console import (
    ConfigOption,
    err,
    friendly_errors,
    load_settings,
    out,
    with_services,
)
from authgate.cli.output import add_row, print_table, table
from authgate.container import Services
from authgate.exceptions import ConfigurationError
from authgate.services.import_report import ImportReport, switch_notice
from authgate.services.second_factor import SecondFactorConfig
from authgate.services.utmstack_import import ImportOptions, UtmStackImporter
from authgate.services.utmstack_rows import parse_source
from authgate.storage import utmstack_source

import_app = typer.Typer(
    help="Import users and API keys from another system.", no_args_is_help=True
)

# A table of more entries than this lists only what needs a look (skipped, conflicts).
_FULL_TABLE_LIMIT = 500


@import_app.command("utmstack")
def import_utmstack(
    context: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="UTMSTACK_DATABASE_URL",
            help="UTMStack's PostgreSQL, postgresql://user@host/db (read in a read-only "
            "transaction). Prefer the environment variable: it keeps the password out of "
            "the process list.",
            show_default=False,
        ),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(help="A JSON export of UTMStack's tables (README: the psql command)."),
    ] = None,
    schema: Annotated[str, typer.Option(help="UTMStack's schema (--database-url).")] = "public",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be done; write nothing.")
    ] = False,
    include_fs_manager: Annotated[
        bool,
        typer.Option("--include-fs-manager", help="Import fs_manager service accounts too."),
    ] = False,
    merge_admin: Annotated[
        bool,
        typer.Option(
            "--merge-admin", help="Map UTMStack's admin onto authgate's (else: a conflict)."
        ),
    ] = False,
    unmapped_keys_owner: Annotated[
        str | None,
        typer.Option(help="Login owning keys whose row names no user (older UTMStack)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of tables.")
    ] = False,
    report_file: Annotated[
        Path | None, typer.Option("--report", help="Also write the JSON report to this file.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Import UTMStack's users, roles, second factors and API keys (idempotent)."""
    if from_file is not None and _from_environment(context, "database_url"):
        database_url = None  # UTMSTACK_DATABASE_URL is a default: an explicit file wins
    if (database_url is None) == (from_file is None):
        err.print("[red]error:[/red] give exactly one of --database-url and --from-file")
        raise typer.Exit(2)
    if report_file is not None:
        problem = _unwritable(report_file)
        if problem:  # found before importing: nothing is imported
            err.print(Text(f"error: --report {report_file}: {problem}", style="red"))
            raise typer.Exit(2)
    options = ImportOptions(
        dry_run=dry_run,
        include_fs_manager=include_fs_manager,
        merge_admin=merge_admin,
        unmapped_keys_owner=unmapped_keys_owner,
    )
    with friendly_errors():
        if database_url is not None:
            label = _database_label(database_url, schema)
            source = asyncio.run(utmstack_source.read_database(database_url, schema=schema))
        else:
            assert from_file is not None
            label = f"file {from_file}"
            source = utmstack_source.read_file(from_file)
        data = parse_source(source)
        tfa_settings: list[SecondFactorConfig] = []

        async def run(services: Services) -> ImportReport:
            tfa_settings.append(services.settings.second_factor)
            importer = UtmStackImporter(
                feed=services.feed,
                clock=services.clock,
                pepper=services.server_secret,
                audit=services.audit,
                max_key_lifetime_days=services.settings.api_keys.max_lifetime_days,
                second_factor=services.second_factor,
            )
            return await importer.run(data, options, source=label)

        report = with_services(load_settings(config), run)
    document = report.as_json()
    if as_json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        _print_tables(report)
    _tell_switch(report, tfa_settings[0] if tfa_settings else None)
    _warn_factors_left_out(report)
    if report_file is not None:
        try:
            report_file.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        except OSError as error:  # checked before, changed since: the import stands
            done = "nothing was written" if dry_run else "the import is done"
            why = error.strerror or type(error).__name__
            err.print(Text(f"error: {done}, but --report {report_file}: {why}", style="red"))
            raise typer.Exit(1) from None


def _from_environment(context: typer.Context, name: str) -> bool:
    """Whether the option ``name`` got its value from its environment variable rather
    than from the command line. (By the source's name: typer keeps click's enum in a
    private module of its own.)"""
    source = context.get_parameter_source(name)
    return source is not None and source.name == "ENVIRONMENT"


def _unwritable(path: Path) -> str | None:
    """Why the report cannot be written to ``path`` (None: it can), checked before the
    import so that a typo in the path costs nothing."""
    if path.is_dir():
        return "is a directory"
    if path.exists():
        return None if os.access(path, os.W_OK) else "not writable"
    parent = path.parent
    if not parent.is_dir():
        return f"no directory {parent}"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"directory {parent} not writable"


def _database_label(url: str, schema: str) -> str:
    """The source as reports and the audit trail name it: never the password."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError("--database-url is not a database URL") from None
    return f"database {parsed.host or 'local'}/{parsed.database or ''} schema {schema}"


def _print_tables(report: ImportReport) -> None:
    entries = report.entries
    shown = [e for e in entries if e.action != "unchanged" or e.notes]
    if len(shown) > _FULL_TABLE_LIMIT:
        # What needs a look: not imported, or revoked and deactivated by this run.
        look = ("skipped", "conflict", "deleted_in_utmstack")
        shown = [e for e in entries if e.action in look]
    rows = table("kind", "UTMStack id", "name", "action", "notes", title="UTMStack import")
    for entry in shown:
        # add_row writes text, not markup: names come from UTMStack and may hold "[...]".
        notes = "; ".join(entry.notes)
        add_row(rows, entry.kind, entry.source_id, entry.name, entry.action, notes)
    if shown:
        print_table(rows)
    if len(shown) < len(entries):
        out.print(f"{len(entries) - len(shown)} more entries (unchanged, or created without notes)")
    counts = table("", *report.counts()["users"], title="totals")
    for kind, by_action in report.counts().items():
        add_row(counts, kind, *(str(n) for n in by_action.values()))
    left_out = [
        ("EMAIL second factors not imported (no SMTP)", report.email_factors_waiting),
        ("TOTP second factors not imported (unusable secret)", report.totp_factors_unusable),
        ("second factors not imported (UTMStack's switch off)", report.factors_switch_off),
    ]
    if any(count for _, count in left_out):
        counts.add_section()
    for label, count in left_out:
        if count:
            add_row(counts, label, str(count))
    print_table(counts)
    for variant in report.variants:
        out.print(Text(f"variant: {variant.subject}: {variant.note}", style="yellow"))
    out.print(
        "dry run: nothing was written"
        if report.dry_run
        else "done" + ("" if report.changed else ": nothing to change")
    )


def _tell_switch(report: ImportReport, settings: SecondFactorConfig | None) -> None:
    """UTMStack's two-factor switch, on standard error (also with --json): what it did,
    and which authgate settings do the same for users without a factor of their own."""
    notice = switch_notice(
        report.tfa_switch,
        required=settings.required if settings else None,
        unenrolled=settings.unenrolled if settings else None,
    )
    kind = "warning" if report.tfa_switch.enabled is None else "notice"
    err.print(Text(f"{kind}: {notice}", style="yellow"))


def _warn_factors_left_out(report: ImportReport) -> None:
    """The last lines of a run (also with --json, on standard error): users whose
    second factor was left out, who sign in with a password alone (or enrol one, if
    they must have one) until the cause is fixed and the import run again."""
    causes = (
        (
            report.email_factors_waiting,
            "UTMStack's EMAIL second factor needs an SMTP server (AUTHGATE_ALERT_SMTP_HOST); "
            "set it and run the import again",
        ),
        (
            report.totp_factors_unusable,
            "UTMStack's TOTP secret is not base32 of 112 bits or more (no authenticator app "
            "can hold it); fix it in UTMStack and run the import again, or have them enrol",
        ),
    )
    for count, why in causes:
        if count:
            users = "user" if count == 1 else "users"
            sign = "would sign" if report.dry_run else "signs" if count == 1 else "sign"
            err.print(
                Text(
                    f"warning: {count} {users} {sign} in with a password alone: {why}",
                    style="yellow",
                )
            )
