"""What ``authgate import utmstack`` imported so far (``legacy_imports``), for its runs:
which UTMStack ids were imported (one deleted in authgate since is not re-created), and
what was imported of each key (a later run applies only what changed in UTMStack)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from authgate.services.changes import UnitOfWork
from authgate.services.import_report import Kind
from authgate.storage.models import LegacyImport


class Ledger:
    """``legacy_imports``: the UTMStack ids imported so far (and each key's imported
    fields), read once per run; new ids are added at the end of the run."""

    def __init__(self, work: UnitOfWork, now: datetime) -> None:
        self._work = work
        self._now = now
        self._rows: dict[tuple[str, str], LegacyImport] = {}
        self._new: list[LegacyImport] = []

    async def load(self) -> None:
        for row in await self._work.db.legacy_imports(self._work.session).all():
            self._rows[(row.kind, row.legacy_id)] = row

    def imported(self, kind: Kind, legacy_id: str) -> bool:
        return (kind, legacy_id) in self._rows

    def fields(self, kind: Kind, legacy_id: str) -> dict[str, Any] | None:
        """What the last run imported of a key (None: not recorded, an earlier version)."""
        row = self._rows.get((kind, legacy_id))
        try:
            document = json.loads(row.imported) if row is not None and row.imported else None
        except json.JSONDecodeError:
            return None
        return document if isinstance(document, dict) else None

    def record(self, kind: Kind, legacy_id: str, fields: dict[str, Any] | None = None) -> None:
        imported = json.dumps(fields, sort_keys=True) if fields is not None else None
        row = self._rows.get((kind, legacy_id))
        if row is None:
            row = LegacyImport(
                kind=kind, legacy_id=legacy_id, imported=imported, first_imported_at=self._now
            )
            self._rows[(kind, legacy_id)] = row
            self._new.append(row)
        elif fields is not None and row.imported != imported:
            row.imported = imported

    def save(self) -> None:
        if self._new:
            self._work.db.legacy_imports(self._work.session).add_all(self._new)
            self._new = []
