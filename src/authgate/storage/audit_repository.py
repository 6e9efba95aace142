"""Queries on the audit trail and its chain head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.storage.bulk_insert import insert_rows
from authgate.storage.models import AuditChainHead, AuditEvent
from authgate.storage.paging import PageRequest, SortOrder
from authgate.storage.repositories import order_by


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit record's content: everything the chain hash covers."""

    occurred_at: datetime
    event_type: str
    outcome: str
    actor_login: str | None
    actor_user_id: int | None
    api_key_id: int | None
    api_key_name: str | None
    client_ip: str | None
    user_agent: str | None
    request_path: str | None
    reason: str | None
    correlation_id: str | None
    details: str | None

    def content(self) -> list[Any]:
        """The fields in a fixed order, the time in UTC with microseconds."""
        values: list[Any] = list(astuple(self))
        values[0] = self.occurred_at.isoformat(timespec="microseconds")
        return values

    @classmethod
    def of_model(cls, event: AuditEvent) -> AuditRow:
        return cls(**{f.name: getattr(event, f.name) for f in fields(cls)})


_COLUMNS = (*(f.name for f in fields(AuditRow)), "prev_hash", "hash")


@dataclass(frozen=True, slots=True)
class AuditFilter:
    event_types: tuple[str, ...] = ()
    outcome: str | None = None
    actor: str | None = None  # login or API key name
    client_ip: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    api_key_id: int | None = None


class AuditRepository:
    SORT_COLUMNS: Mapping[str, Any] = {
        "id": AuditEvent.id,
        "timestamp": AuditEvent.occurred_at,
        "type": AuditEvent.event_type,
    }

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def lock_chain_head(self, genesis: str) -> str:
        """Take the chain's write lock and return its last hash.

        The no-op UPDATE locks the head row on PostgreSQL and takes SQLite's write lock,
        so concurrent appenders (workers, nodes) queue instead of forking the chain.
        """
        result = await self._session.execute(
            text("UPDATE audit_chain_head SET last_id = last_id WHERE id = 1")
        )
        if not getattr(result, "rowcount", 0):
            self._session.add(AuditChainHead(id=1, last_id=0, last_hash=genesis))
            await self._session.flush()
            return genesis
        return await self.chain_head() or genesis

    async def append(self, chained: Sequence[tuple[AuditRow, str, str]]) -> None:
        """Insert ``(record, prev_hash, hash)`` triples in order and move the head.

        Call inside the transaction that took ``lock_chain_head``.
        """
        rows = [(*astuple(row), previous, own) for row, previous, own in chained]
        await insert_rows(self._session, "audit_events", _COLUMNS, rows)
        last_id = await self._session.scalar(select(func.max(AuditEvent.id)))
        head = await self._session.get(AuditChainHead, 1)
        if head is None:
            raise RuntimeError("append without lock_chain_head")
        head.last_hash = chained[-1][2]
        head.last_id = last_id or 0

    async def chain_head(self) -> str | None:
        return await self._session.scalar(
            select(AuditChainHead.last_hash).where(AuditChainHead.id == 1)
        )

    def _filtered(self, query: Any, where: AuditFilter) -> Any:
        if where.event_types:
            query = query.where(AuditEvent.event_type.in_(where.event_types))
        if where.outcome is not None:
            query = query.where(AuditEvent.outcome == where.outcome)
        if where.actor is not None:
            query = query.where(
                (AuditEvent.actor_login == where.actor) | (AuditEvent.api_key_name == where.actor)
            )
        if where.client_ip is not None:
            query = query.where(AuditEvent.client_ip == where.client_ip)
        if where.since is not None:
            query = query.where(AuditEvent.occurred_at >= where.since)
        if where.until is not None:
            query = query.where(AuditEvent.occurred_at < where.until)
        if where.api_key_id is not None:
            query = query.where(AuditEvent.api_key_id == where.api_key_id)
        return query

    async def count(self, where: AuditFilter) -> int:
        query = self._filtered(select(func.count()).select_from(AuditEvent), where)
        return await self._session.scalar(query) or 0

    async def page(self, where: AuditFilter, request: PageRequest) -> Sequence[AuditEvent]:
        sort = request.sort or (SortOrder("id", descending=True),)
        query = (
            self._filtered(select(AuditEvent), where)
            .order_by(*order_by(sort, self.SORT_COLUMNS, AuditEvent.id))
            .offset(request.offset)
            .limit(request.size)
        )
        return list(await self._session.scalars(query))

    async def after(self, after_id: int, where: AuditFilter, *, limit: int) -> list[AuditEvent]:
        query = (
            self._filtered(select(AuditEvent), where)
            .where(AuditEvent.id > after_id)
            .order_by(AuditEvent.id)
            .limit(limit)
        )
        return list(await self._session.scalars(query))

    async def delete_before(self, cutoff: datetime) -> int:
        result = await self._session.execute(
            delete(AuditEvent).where(AuditEvent.occurred_at < cutoff)
        )
        return int(getattr(result, "rowcount", 0) or 0)
