"""The published checkpoints of the audit chain (``audit_checkpoints``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.storage.models import AuditCheckpoint
from authgate.storage.page_queries import NEWEST_FIRST, paged
from authgate.storage.paging import PageRequest


class AuditCheckpointRepository:
    SORT_COLUMNS: ClassVar[Mapping[str, Any]] = {
        "id": AuditCheckpoint.id,
        "time": AuditCheckpoint.created_at,
        "position": AuditCheckpoint.position,
    }

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def add(self, checkpoint: AuditCheckpoint) -> None:
        self._session.add(checkpoint)

    async def count(self) -> int:
        return await self._session.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0

    async def page(self, request: PageRequest) -> Sequence[AuditCheckpoint]:
        query = paged(
            select(AuditCheckpoint),
            request,
            self.SORT_COLUMNS,
            AuditCheckpoint.id,
            default=NEWEST_FIRST,
        )
        return list(await self._session.scalars(query))

    async def newest(self) -> AuditCheckpoint | None:
        return await self._session.scalar(
            select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
        )

    async def delete_before(self, cutoff: datetime) -> int:
        result = await self._session.execute(
            delete(AuditCheckpoint).where(AuditCheckpoint.created_at < cutoff)
        )
        return int(getattr(result, "rowcount", 0) or 0)
