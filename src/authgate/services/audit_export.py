"""Audit records as CSV or JSON Lines, streamed (for the REST export and the CLI)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Final

from authgate.services.audit import AuditEntry

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
_CHUNK = 64_000


async def as_csv(entries: AsyncIterator[AuditEntry]) -> AsyncIterator[str]:
    """A header line, then one row per record; ``details`` as compact JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    async for entry in entries:
        record = entry.as_record()
        if record["details"] is not None:
            record["details"] = json.dumps(record["details"], sort_keys=True)
        writer.writerow(record[column] for column in COLUMNS)
        if buffer.tell() > _CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


async def as_json_lines(entries: AsyncIterator[AuditEntry]) -> AsyncIterator[str]:
    async for entry in entries:
        yield json.dumps(entry.as_record(), sort_keys=True) + "\n"
