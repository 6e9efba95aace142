"""Audit records as CSV or JSON Lines, streamed (for the REST export, the Settings UI's
export and the CLI: one implementation for all three)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final, Literal

from authgate.services.audit.events import AuditEntry

COLUMNS: Final = (
    "id",
    "timestamp",
    "type",
    "outcome",
    "actor",
    "userId",
    "apiKeyId",
    "apiKeyName",
    "ipAddress",
    "userAgent",
    "path",
    "reason",
    "correlationId",
    "details",
    "hash",
)
ExportFormat = Literal["csv", "json"]
EXPORT_FORMATS: Final[tuple[ExportFormat, ...]] = ("csv", "json")


def export_format_of(raw: str) -> ExportFormat | None:
    """``raw`` as an export format, or None when it is not one."""
    return next((known for known in EXPORT_FORMATS if known == raw), None)


_CHUNK = 64_000
# OWASP "CSV injection": a spreadsheet runs a cell starting with one of these as a
# formula (``=HYPERLINK(...)``, ``@SUM(...)``). Typed logins, user agents and paths
# are an attacker's text, so such cells get a leading ``'``, which spreadsheets show
# as text. LF is added to OWASP's list for the same reason as CR.
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r", "\n")


def spreadsheet_safe(value: object) -> object:
    """``value``, with a leading ``'`` when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


async def as_csv(entries: AsyncIterator[AuditEntry]) -> AsyncIterator[str]:
    """A header line, then one row per record; ``details`` as compact JSON; every text
    cell a spreadsheet would take for a formula neutralised (:func:`spreadsheet_safe`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    async for entry in entries:
        record = entry.as_record()
        if record["details"] is not None:
            record["details"] = json.dumps(record["details"], sort_keys=True)
        writer.writerow(spreadsheet_safe(record[column]) for column in COLUMNS)
        if buffer.tell() > _CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


async def as_json_lines(entries: AsyncIterator[AuditEntry]) -> AsyncIterator[str]:
    async for entry in entries:
        yield json.dumps(entry.as_record(), sort_keys=True) + "\n"


@dataclass(frozen=True, slots=True)
class AuditExport:
    """An export as a download: the streamed body, its media type, its file name."""

    body: AsyncIterator[str]
    media_type: str
    filename: str

    @property
    def content_disposition(self) -> str:
        return f'attachment; filename="{self.filename}"'


def export(entries: AsyncIterator[AuditEntry], export_format: ExportFormat) -> AuditExport:
    """The REST and Settings exports' one download (the CLI writes a file it is named)."""
    if export_format == "json":
        return AuditExport(as_json_lines(entries), "application/x-ndjson", "audit-events.jsonl")
    return AuditExport(as_csv(entries), "text/csv", "audit-events.csv")
