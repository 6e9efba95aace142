"""Queries on the audit trail, its chain head and its retention anchor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, exc, false, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.storage.bulk_insert import insert_rows
from authgate.storage.db import storable_text
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
        values = self.values()
        values[0] = self.occurred_at.isoformat(timespec="microseconds")
        return values

    def values(self) -> list[Any]:
        """The fields in declaration order (``dataclasses.astuple`` deep-copies every
        value: ~28 us a record, on the write path of every audited request)."""
        return [getattr(self, name) for name in _ROW_FIELDS]

    @classmethod
    def of_model(cls, event: AuditEvent) -> AuditRow:
        return cls(**{f.name: getattr(event, f.name) for f in fields(cls)})


_ROW_FIELDS = tuple(f.name for f in fields(AuditRow))
_COLUMNS = (*_ROW_FIELDS, "prev_hash", "hash")

# Rows of ``audit_chain_head``: the newest record of the chain, and the last record
# retention deleted (the anchor of the oldest remaining one), each as (id, hash).
_HEAD_ROW = 1
_RETENTION_ROW = 2


class ChainLink(NamedTuple):
    """A record of the chain, by id and hash."""

    id: int
    hash: str


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
        if not await self._lock_row(_HEAD_ROW):
            # A new chain: two nodes may start it at once, so the head row is inserted
            # only if missing (the second insert waits for the first and does nothing),
            # then locked like any other time.
            await self._session.execute(
                _insert_ignoring_conflicts(self._session)(AuditChainHead)
                .values(id=_HEAD_ROW, last_id=0, last_hash=genesis)
                .on_conflict_do_nothing(index_elements=["id"])
            )
            await self._lock_row(_HEAD_ROW)
        head = await self.chain_head()
        return head.hash if head is not None else genesis

    async def _lock_row(self, row_id: int) -> bool:
        result = await self._session.execute(
            text("UPDATE audit_chain_head SET last_id = last_id WHERE id = :id"), {"id": row_id}
        )
        return bool(getattr(result, "rowcount", 0))

    async def append(self, chained: Sequence[tuple[AuditRow, str, str]]) -> None:
        """Insert ``(record, prev_hash, hash)`` triples in order and move the head.

        Call inside the transaction that took ``lock_chain_head``.
        """
        await self.insert(chained)
        await self.move_head(chained[-1][2])

    async def insert(self, chained: Sequence[tuple[AuditRow, str, str]]) -> None:
        """Insert ``(record, prev_hash, hash)`` triples in order (see ``append``)."""
        rows = [(*row.values(), previous, own) for row, previous, own in chained]
        await insert_rows(self._session, "audit_events", _COLUMNS, rows)

    async def move_head(self, last_hash: str) -> None:
        """Point the head at the newest record, whose hash is ``last_hash``."""
        last_id = await self._session.scalar(select(func.max(AuditEvent.id)))
        head = await self._session.get(AuditChainHead, _HEAD_ROW)
        if head is None:
            raise RuntimeError("append without lock_chain_head")
        head.last_hash = last_hash
        head.last_id = last_id or 0

    async def chain_head(self) -> ChainLink | None:
        """The newest record of the chain (None before the first append)."""
        return await self._link(_HEAD_ROW)

    async def retention_anchor(self) -> ChainLink | None:
        """The last record retention deleted (None if it never deleted any): the
        oldest remaining record links to it."""
        return await self._link(_RETENTION_ROW)

    async def _link(self, row_id: int) -> ChainLink | None:
        row = (
            await self._session.execute(
                select(AuditChainHead.last_id, AuditChainHead.last_hash).where(
                    AuditChainHead.id == row_id
                )
            )
        ).one_or_none()
        return None if row is None else ChainLink(row.last_id, row.last_hash)

    async def first_after_head(self) -> int | None:
        """The id of a record past the chain head, if any. One statement, so one
        snapshot: an append inserts its records and moves the head in one transaction,
        so a record past the head was not appended by authgate."""
        head_id = (
            select(AuditChainHead.last_id).where(AuditChainHead.id == _HEAD_ROW).scalar_subquery()
        )
        return await self._session.scalar(
            select(func.min(AuditEvent.id)).where(AuditEvent.id > func.coalesce(head_id, 0))
        )

    def _filtered(self, query: Any, where: AuditFilter) -> Any:
        if where.event_types:
            query = query.where(AuditEvent.event_type.in_(where.event_types))
        if where.outcome is not None:
            query = query.where(AuditEvent.outcome == where.outcome)
        for value in (where.actor, where.client_ip):
            if value is not None and not storable_text(value):
                return query.where(false())  # no stored record holds such a value
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

    async def chain(self, after_id: int, up_to_id: int, *, limit: int) -> list[AuditEvent]:
        """Records with ``after_id < id <= up_to_id``, in chain order."""
        query = (
            select(AuditEvent)
            .where(AuditEvent.id > after_id, AuditEvent.id <= up_to_id)
            .order_by(AuditEvent.id)
            .limit(limit)
        )
        return list(await self._session.scalars(query))

    async def delete_before(self, cutoff: datetime) -> int:
        """Retention: delete the oldest records, up to the first one at or after
        ``cutoff`` (everything, if none is), and remember the last deleted one as the
        retention anchor. Call inside a transaction; it takes the chain's write lock.

        Chain order is flush order, not time order (a node may flush records older than
        another node's), so deleting by time would cut holes into the chain: only a
        prefix of the chain is ever deleted, and a record older than ``cutoff`` that
        follows a newer one is kept until that one expires too.
        """
        if not await self._lock_row(_HEAD_ROW):
            return 0  # nothing was ever written
        head = await self.chain_head()
        if head is None:
            return 0
        first_kept = await self._session.scalar(
            select(func.min(AuditEvent.id)).where(
                AuditEvent.occurred_at >= cutoff, AuditEvent.id <= head.id
            )
        )
        # Records past the head are no part of the chain (verify reports them): never
        # deleted, so they cannot hide in a retention cut.
        boundary = head.id + 1 if first_kept is None else first_kept
        last_deleted = (
            await self._session.execute(
                select(AuditEvent.id, AuditEvent.hash)
                .where(AuditEvent.id < boundary)
                .order_by(AuditEvent.id.desc())
                .limit(1)
            )
        ).one_or_none()
        if last_deleted is None:
            return 0
        result = await self._session.execute(
            delete(AuditEvent).where(AuditEvent.id <= last_deleted.id)
        )
        anchor = await self._session.get(AuditChainHead, _RETENTION_ROW)
        if anchor is None:
            self._session.add(
                AuditChainHead(
                    id=_RETENTION_ROW, last_id=last_deleted.id, last_hash=last_deleted.hash
                )
            )
        else:
            anchor.last_id, anchor.last_hash = last_deleted.id, last_deleted.hash
        return int(getattr(result, "rowcount", 0) or 0)


def refused_value(error: BaseException) -> bool:
    """Whether the database refused a value of the statement (SQLSTATE class 22, "data
    exception": a NUL in text, a string too long), as opposed to being unavailable."""
    if isinstance(error, exc.DataError):
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    # asyncpg's errors reach SQLAlchemy as plain DBAPIError; the code tells them apart.
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return isinstance(code, str) and code.startswith("22")


def _insert_ignoring_conflicts(session: AsyncSession) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing``."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert
