"""Queries on the audit trail, its chain head and its retention anchor."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, ClassVar, NamedTuple
from uuid import UUID

from sqlalchemy import delete, false, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.storage.bulk_insert import insert_rows
from authgate.storage.errors import refused_value as refused_value  # re-exported: former home
from authgate.storage.models import ApiKey, AuditChainHead, AuditEvent
from authgate.storage.page_queries import NEWEST_FIRST, paged
from authgate.storage.paging import PageRequest
from authgate.storage.text import storable_text


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

    def canonical(self) -> str:
        """The content as compact ASCII JSON: what the chain hash covers."""
        return json.dumps(self.content(), separators=(",", ":"), ensure_ascii=True)

    def values(self) -> list[Any]:
        """The fields in declaration order (``dataclasses.astuple`` deep-copies every
        value: ~28 us a record, on the write path of every audited request)."""
        return [getattr(self, name) for name in _ROW_FIELDS]

    @classmethod
    def of_model(cls, event: AuditEvent) -> AuditRow:
        return cls(**{f.name: getattr(event, f.name) for f in fields(cls)})


_ROW_FIELDS = tuple(f.name for f in fields(AuditRow))

# A summary of repeated refusals (``services.audit.aggregation``) keeps its count in
# ``details`` under this key: ``{"aggregate": {"count": n, ...}}``, written with sorted
# keys, so the text starts with ``AGGREGATE_DETAILS_PREFIX``.
AGGREGATE = "aggregate"
AGGREGATE_DETAILS_PREFIX = '{"aggregate": {'


def aggregated_count(details: str | None) -> int:
    """How many events a record stands for: a summary's count, 1 for any other record."""
    if not details or not details.startswith(AGGREGATE_DETAILS_PREFIX):
        return 1
    try:
        count = json.loads(details)[AGGREGATE]["count"]
    except (ValueError, KeyError, TypeError):
        return 1
    return count if isinstance(count, int) and count >= 1 else 1


_COLUMNS = (*_ROW_FIELDS, "prev_hash", "hash")

# Rows of ``audit_chain_head``: the newest record of the chain, and the last record
# retention deleted (the anchor of the oldest remaining one), each as (id, hash).
_HEAD_ROW = 1
_RETENTION_ROW = 2


class ChainLink(NamedTuple):
    """A record of the chain, by id and hash."""

    id: int
    hash: str


class SignedLink(NamedTuple):
    """An end point of the chain as stored: the record it names and its signature under
    the audit key (None before the key was introduced, or if removed)."""

    id: int
    hash: str
    mac: str | None

    @property
    def link(self) -> ChainLink:
        return ChainLink(self.id, self.hash)


# Signs an end point (record id, record hash) -> mac, or None in an unkeyed chain.
LinkSigner = Callable[[int, str], str | None]


@dataclass(frozen=True, slots=True)
class AuditFilter:
    event_types: tuple[str, ...] = ()
    outcome: str | None = None
    actor: str | None = None  # login or API key name
    client_ip: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # The key's key_pk (bigint id), or its public UUID (looked up in the same query).
    key_ref: int | UUID | None = None


# A record with the public UUID of the key it names (None: no key, or the key is gone).
EventWithKey = tuple[AuditEvent, str | None]


def _with_public_ids(query: Any) -> Any:
    """``query`` on audit events, each with its key's public UUID."""
    return query.add_columns(ApiKey.public_id).outerjoin(ApiKey, ApiKey.id == AuditEvent.api_key_id)


class AuditRepository:
    SORT_COLUMNS: ClassVar[Mapping[str, Any]] = {
        "id": AuditEvent.id,
        "timestamp": AuditEvent.occurred_at,
        "type": AuditEvent.event_type,
    }

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def lock_chain_head(self, genesis: str) -> SignedLink:
        """Take the chain's write lock and return the head (created, unsigned, at
        ``genesis`` for a new chain).

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
        return head if head is not None else SignedLink(0, genesis, None)

    async def lock_existing_head(self) -> SignedLink | None:
        """Take the chain's write lock if a chain exists; its head, else None."""
        if not await self._lock_row(_HEAD_ROW):
            return None
        return await self.chain_head()

    async def _lock_row(self, row_id: int) -> bool:
        result = await self._session.execute(
            text("UPDATE audit_chain_head SET last_id = last_id WHERE id = :id"), {"id": row_id}
        )
        return bool(getattr(result, "rowcount", 0))

    async def append(
        self, chained: Sequence[tuple[AuditRow, str, str]], *, sign: LinkSigner
    ) -> None:
        """Insert ``(record, prev_hash, hash)`` triples in order and move the head.

        Call inside the transaction that took ``lock_chain_head``.
        """
        await self.insert(chained)
        await self.move_head(chained[-1][2], sign=sign)

    async def insert(self, chained: Sequence[tuple[AuditRow, str, str]]) -> None:
        """Insert ``(record, prev_hash, hash)`` triples in order (see ``append``)."""
        rows = [(*row.values(), previous, own) for row, previous, own in chained]
        await insert_rows(self._session, "audit_events", _COLUMNS, rows)

    async def move_head(self, last_hash: str, *, sign: LinkSigner) -> None:
        """Point the head at the newest record, whose hash is ``last_hash``, signed."""
        last_id = await self._session.scalar(select(func.max(AuditEvent.id))) or 0
        await self.set_link(_HEAD_ROW, last_id, last_hash, sign(last_id, last_hash))

    async def sign_head(self, mac: str) -> None:
        """Sign the head where it is (the audit key's introduction)."""
        await self._set_mac(_HEAD_ROW, mac)

    async def sign_retention_anchor(self, mac: str) -> None:
        """Sign the retention anchor where it is (the audit key's introduction)."""
        await self._set_mac(_RETENTION_ROW, mac)

    async def set_link(self, row_id: int, last_id: int, last_hash: str, mac: str | None) -> None:
        row = await self._session.get(AuditChainHead, row_id)
        if row is None:
            self._session.add(
                AuditChainHead(id=row_id, last_id=last_id, last_hash=last_hash, mac=mac)
            )
        else:
            row.last_id, row.last_hash, row.mac = last_id, last_hash, mac

    async def _set_mac(self, row_id: int, mac: str) -> None:
        await self._session.execute(
            update(AuditChainHead).where(AuditChainHead.id == row_id).values(mac=mac)
        )

    async def chain_head(self) -> SignedLink | None:
        """The newest record of the chain (None before the first append)."""
        return await self._link(_HEAD_ROW)

    async def retention_anchor(self) -> SignedLink | None:
        """The last record retention deleted (None if it never deleted any): the
        oldest remaining record links to it."""
        return await self._link(_RETENTION_ROW)

    async def _link(self, row_id: int) -> SignedLink | None:
        row = (
            await self._session.execute(
                select(AuditChainHead.last_id, AuditChainHead.last_hash, AuditChainHead.mac).where(
                    AuditChainHead.id == row_id
                )
            )
        ).one_or_none()
        return None if row is None else SignedLink(row.last_id, row.last_hash, row.mac)

    async def record(self, record_id: int) -> AuditEvent | None:
        return await self._session.get(AuditEvent, record_id)

    async def any_record(self) -> bool:
        return await self._session.scalar(select(func.min(AuditEvent.id))) is not None

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
        if isinstance(where.key_ref, UUID):
            key_pk = select(ApiKey.id).where(ApiKey.public_id == str(where.key_ref))
            query = query.where(AuditEvent.api_key_id == key_pk.scalar_subquery())
        elif where.key_ref is not None:
            query = query.where(AuditEvent.api_key_id == where.key_ref)
        return query

    async def count(self, where: AuditFilter) -> int:
        query = self._filtered(select(func.count()).select_from(AuditEvent), where)
        return await self._session.scalar(query) or 0

    async def page(self, where: AuditFilter, request: PageRequest) -> list[EventWithKey]:
        query = paged(
            self._filtered(_with_public_ids(select(AuditEvent)), where),
            request,
            self.SORT_COLUMNS,
            AuditEvent.id,
            default=NEWEST_FIRST,
        )
        return [(event, public_id) for event, public_id in await self._session.execute(query)]

    async def after(self, after_id: int, where: AuditFilter, *, limit: int) -> list[EventWithKey]:
        query = (
            self._filtered(_with_public_ids(select(AuditEvent)), where)
            .where(AuditEvent.id > after_id)
            .order_by(AuditEvent.id)
            .limit(limit)
        )
        return [(event, public_id) for event, public_id in await self._session.execute(query)]

    async def chain(self, after_id: int | None, up_to_id: int, *, limit: int) -> list[AuditEvent]:
        """Records with ``after_id < id <= up_to_id`` (``after_id`` None: from the lowest
        id stored, however low), in chain order."""
        query = select(AuditEvent).where(AuditEvent.id <= up_to_id)
        if after_id is not None:
            query = query.where(AuditEvent.id > after_id)
        return list(await self._session.scalars(query.order_by(AuditEvent.id).limit(limit)))

    async def delete_before(self, cutoff: datetime, head: SignedLink, *, sign: LinkSigner) -> int:
        """Retention: delete the oldest records, up to the first one at or after
        ``cutoff`` (everything, if none is), and remember the last deleted one as the
        retention anchor, signed. Call inside the transaction that locked ``head``
        (``lock_existing_head``).

        Chain order is flush order, not time order (a node may flush records older than
        another node's), so deleting by time would cut holes into the chain: only a
        prefix of the chain is ever deleted, and a record older than ``cutoff`` that
        follows a newer one is kept until that one expires too.
        """
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
        await self.set_link(
            _RETENTION_ROW,
            last_deleted.id,
            last_deleted.hash,
            sign(last_deleted.id, last_deleted.hash),
        )
        return int(getattr(result, "rowcount", 0) or 0)


def _insert_ignoring_conflicts(session: AsyncSession) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing``."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert
