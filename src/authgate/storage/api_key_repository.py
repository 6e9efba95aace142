"""Queries on API keys and their usage log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, NamedTuple, cast
from uuid import UUID

from sqlalchemy import Row, Table, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from authgate.storage.bulk_insert import insert_rows
from authgate.storage.models import ApiKey, ApiKeyUsage, ApiKeyUsageMinute, User
from authgate.storage.page_queries import paged
from authgate.storage.paging import PageRequest, SortOrder
from authgate.storage.row_locks import lock_row
from authgate.storage.text import storable_text

# What verifying a key reads, as one Core statement built once: on a cache miss (the
# hot path's slow case) no ORM object, identity map or session is paid for.
_VERIFICATION_QUERY = select(
    ApiKey.id,
    ApiKey.name,
    ApiKey.user_id,
    ApiKey.key_id,
    ApiKey.secret_hash,
    ApiKey.previous_secret_hash,
    ApiKey.previous_valid_until,
    ApiKey.allowed_networks,
    ApiKey.scopes,
    ApiKey.expires_at,
    ApiKey.revoked_at,
    ApiKey.suspended_at,
    ApiKey.rate_limit,
    ApiKey.last_used_at,
)
_BY_KEY_ID = _VERIFICATION_QUERY.where(ApiKey.key_id == bindparam("key_id"))
# A legacy (UTMStack) key has no key id in it: found by its digest, through a unique index.
_BY_LEGACY_DIGEST = _VERIFICATION_QUERY.where(ApiKey.legacy_digest == bindparam("digest"))


async def verification_row(connection: AsyncConnection, key_id: str) -> Row[Any] | None:
    """The columns of ``ApiKey`` that verification needs (same names), or None."""
    result = await connection.execute(_BY_KEY_ID, {"key_id": key_id})
    return cast("Row[Any] | None", result.one_or_none())


async def legacy_verification_row(connection: AsyncConnection, digest: str) -> Row[Any] | None:
    """:func:`verification_row` of the key imported with this ``legacy_digest``."""
    result = await connection.execute(_BY_LEGACY_DIGEST, {"digest": digest})
    return cast("Row[Any] | None", result.one_or_none())


class ApiKeyRepository:
    SORT_COLUMNS: ClassVar[Mapping[str, Any]] = {
        # The id the DTO shows: the public UUID (the bigint primary key only breaks ties).
        "id": ApiKey.public_id,
        "name": ApiKey.name,
        "createdAt": ApiKey.created_at,
        "expiresAt": ApiKey.expires_at,
        "generatedAt": ApiKey.generated_at,
        "lastUsedAt": ApiKey.last_used_at,
        # The comma-joined text, as UTMStack sorts its allowed_ip column: its API Keys
        # page asks for sort=allowedIp and empties the table on an error.
        "allowedIp": ApiKey.allowed_networks,
    }

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, key_pk: int) -> ApiKey | None:
        return await self._session.get(ApiKey, key_pk)

    async def by_ref(self, ref: UUID | int) -> ApiKey | None:
        """The key with this public UUID, or (deprecated paths) this bigint id."""
        if isinstance(ref, UUID):
            return await self._session.scalar(select(ApiKey).where(ApiKey.public_id == str(ref)))
        return await self.get(ref)

    async def locked(self, ref: UUID | int) -> ApiKey | None:
        """``by_ref`` read anew, the key's row locked until the transaction ends: a
        concurrent change of the key (a rotation, a revocation) waits for this one, then
        sees what it committed. A key's row after its owner's (``UserRepository.locked``)."""
        matches = ApiKey.public_id == str(ref) if isinstance(ref, UUID) else ApiKey.id == ref
        return await lock_row(self._session, ApiKey, matches)

    async def by_key_id(self, key_id: str) -> ApiKey | None:
        """The key whose public part (``agk_<key_id>_...``) is ``key_id``."""
        return await self._session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))

    async def live_name_taken(
        self, owner_id: int, name: str, *, except_key_pk: int | None = None
    ) -> bool:
        if not storable_text(name):
            return False
        query = select(ApiKey.id).where(
            ApiKey.user_id == owner_id, ApiKey.name == name, ApiKey.revoked_at.is_(None)
        )
        if except_key_pk is not None:
            query = query.where(ApiKey.id != except_key_pk)
        return await self._session.scalar(query.limit(1)) is not None

    def _filtered(self, query: Any, owner_id: int | None, include_revoked: bool) -> Any:
        if owner_id is not None:
            query = query.where(ApiKey.user_id == owner_id)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        return query

    async def count(self, *, owner_id: int | None, include_revoked: bool) -> int:
        query = self._filtered(select(func.count()).select_from(ApiKey), owner_id, include_revoked)
        return await self._session.scalar(query) or 0

    async def page(
        self, request: PageRequest, *, owner_id: int | None, include_revoked: bool
    ) -> Sequence[ApiKey]:
        keys = self._filtered(select(ApiKey), owner_id, include_revoked)
        query = paged(keys, request, self.SORT_COLUMNS, ApiKey.id)
        return list(await self._session.scalars(query))

    def add(self, key: ApiKey) -> None:
        self._session.add(key)

    async def flush(self) -> None:
        await self._session.flush()

    async def imported(self) -> Sequence[ApiKey]:
        """The keys imported from UTMStack (those with a legacy id)."""
        return list(
            await self._session.scalars(select(ApiKey).where(ApiKey.legacy_id.is_not(None)))
        )

    async def live_names(self) -> set[tuple[int, str]]:
        """(owner id, name) of every key that is not revoked."""
        live = select(ApiKey.user_id, ApiKey.name).where(ApiKey.revoked_at.is_(None))
        return {(row.user_id, row.name) for row in await self._session.execute(live)}

    async def insert_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert keys given as column values, in one statement (an import's new keys)."""
        await self._session.execute(insert(ApiKey), list(rows))

    async def live_of_owner(self, owner_id: int) -> Sequence[ApiKey]:
        """The owner's keys that are not revoked (expired ones included: they may be
        extended), oldest first."""
        query = select(ApiKey).where(ApiKey.user_id == owner_id, ApiKey.revoked_at.is_(None))
        return list(await self._session.scalars(query.order_by(ApiKey.id)))

    async def live_with_owners(
        self, now: datetime, *, after: int, size: int
    ) -> Sequence[tuple[ApiKey, str | None]]:
        """Keys neither revoked nor expired, each with its owner's login, in id order
        from after ``after``: one page of at most ``size`` (keyset paging), one query."""
        query = (
            select(ApiKey, User.login)
            .outerjoin(User, User.id == ApiKey.user_id)
            .where(
                ApiKey.id > after,
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            )
            .order_by(ApiKey.id)
            .limit(size)
        )
        return [(key, login) for key, login in await self._session.execute(query)]

    async def count_live(self, now: datetime, *, expiring_before: datetime | None = None) -> int:
        """Keys neither revoked nor expired (and expiring before ``expiring_before``)."""
        query = (
            select(func.count())
            .select_from(ApiKey)
            .where(
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            )
        )
        if expiring_before is not None:
            query = query.where(ApiKey.expires_at <= expiring_before)
        return await self._session.scalar(query) or 0

    async def last_used_times(self, key_pks: Sequence[int]) -> dict[int, datetime | None]:
        """The stored ``last_used_at`` of each key (a key not found is left out)."""
        rows = await self._session.execute(
            select(ApiKey.id, ApiKey.last_used_at).where(ApiKey.id.in_(key_pks))
        )
        return {row.id: row.last_used_at for row in rows}

    async def record_last_uses(self, uses: Sequence[tuple[int, datetime, str | None]]) -> None:
        """Move each key's ``last_used_at`` (and address) forward, never back, whatever
        order batches land in: (key pk, time, address) each, in one executemany of a
        statement built once (a usage flush's, every second: no ORM update)."""
        if uses:
            await self._session.execute(
                _MOVE_LAST_USE, [{"pk": pk, "at": at, "ip": ip} for pk, at, ip in uses]
            )


def _table(model: Any) -> Table:
    """A model's Core table (Core statements skip the ORM's bulk and sync paths)."""
    return cast("Table", model.__table__)


_KEYS = _table(ApiKey).c
# Core, not ORM-enabled: an ORM update would look for the keys among the session's
# objects to synchronize them (none are loaded here), and is built at each call.
_MOVE_LAST_USE = (
    update(_table(ApiKey))
    .where(
        _KEYS.id == bindparam("pk"),
        or_(_KEYS.last_used_at.is_(None), _KEYS.last_used_at < bindparam("at")),
    )
    .values(last_used_at=bindparam("at"), last_used_ip=bindparam("ip"))
)


_USAGE = _table(ApiKeyUsage).c
_SUCCESSES = (_USAGE.api_key_id == bindparam("key_pk")) & _USAGE.failure_reason.is_(None)
_RECENT = (
    select(_USAGE.id)
    .where(_SUCCESSES)
    .order_by(_USAGE.occurred_at.desc(), _USAGE.id.desc())
    .limit(bindparam("keep"))
)
# Core, built once (each flush runs it for every key it wrote a sample of).
_KEEP_RECENT = delete(_table(ApiKeyUsage)).where(
    _SUCCESSES, _USAGE.id.not_in(select(_RECENT.subquery().c.id))
)

_UPSERTS: dict[str, Any] = {}


def _minutes_upsert(dialect: str) -> Any:
    """The rollups' upsert for ``dialect`` (SQLite or PostgreSQL), built once: on the
    Core table, so that a flush pays neither its construction nor the ORM's bulk path."""
    upsert = _UPSERTS.get(dialect)
    if upsert is not None:
        return upsert
    sqlite = dialect == "sqlite"
    minutes = _table(ApiKeyUsageMinute)
    statement = (sqlite_insert if sqlite else postgresql_insert)(minutes)
    table, new = minutes.c, statement.excluded
    larger, smaller = (func.max, func.min) if sqlite else (func.greatest, func.least)
    newer = new.last_at >= table.last_at
    summed = ("requests", "status_2xx", "status_3xx", "status_4xx", "status_5xx")
    upsert = _UPSERTS[dialect] = statement.on_conflict_do_update(
        index_elements=[table.api_key_id, table.minute],
        set_={
            **{name: table[name] + new[name] for name in summed},
            "first_at": smaller(table.first_at, new.first_at),
            "last_at": larger(table.last_at, new.last_at),
            "distinct_ips": larger(table.distinct_ips, new.distinct_ips),
            "last_ip": case((newer, new.last_ip), else_=table.last_ip),
            "last_method": case((newer, new.last_method), else_=table.last_method),
            "last_path": case((newer, new.last_path), else_=table.last_path),
            "api_key_name": new.api_key_name,
        },
    )
    return upsert


class UsageRow(NamedTuple):
    """One ``api_key_usage`` row, in column order."""

    api_key_id: int
    api_key_name: str
    user_id: int
    occurred_at: datetime
    method: str
    path: str
    status: int
    client_ip: str | None
    user_agent: str | None
    latency_ms: float
    failure_reason: str | None


@dataclass(frozen=True, slots=True)
class UsageFilter:
    owner_id: int | None = None
    # The key's key_pk (bigint id), or its public UUID (looked up in the same query).
    key_ref: int | UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: int | None = None
    succeeded: bool | None = None


def _key_pk(key: int | UUID) -> Any:
    """The bigint id, or a subquery finding it from the public UUID."""
    if isinstance(key, UUID):
        return select(ApiKey.id).where(ApiKey.public_id == str(key)).scalar_subquery()
    return key


def _of_owner_key_and_period(
    query: Any,
    where: UsageFilter,
    table: type[ApiKeyUsage] | type[ApiKeyUsageMinute],
    at: Any,
) -> Any:
    """``where``'s owner, key and period (``at``: the table's time column), read alike
    in the usage records and in their per-minute rollups."""
    if where.owner_id is not None:
        query = query.where(table.user_id == where.owner_id)
    if where.key_ref is not None:
        query = query.where(table.api_key_id == _key_pk(where.key_ref))
    if where.since is not None:
        query = query.where(at >= where.since)
    if where.until is not None:
        query = query.where(at < where.until)
    return query


class UsageRepository:
    SORT_COLUMNS: ClassVar[Mapping[str, Any]] = {
        "id": ApiKeyUsage.id,
        "timestamp": ApiKeyUsage.occurred_at,
        "responseCode": ApiKeyUsage.status,
    }

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def insert_many(self, rows: Sequence[UsageRow]) -> None:
        await insert_rows(self._session, "api_key_usage", UsageRow._fields, rows)

    def _filtered(self, query: Any, where: UsageFilter) -> Any:
        query = _of_owner_key_and_period(query, where, ApiKeyUsage, ApiKeyUsage.occurred_at)
        if where.status is not None:
            query = query.where(ApiKeyUsage.status == where.status)
        if where.succeeded is True:
            query = query.where(ApiKeyUsage.failure_reason.is_(None))
        elif where.succeeded is False:
            query = query.where(ApiKeyUsage.failure_reason.is_not(None))
        return query

    async def count(self, where: UsageFilter) -> int:
        query = self._filtered(select(func.count()).select_from(ApiKeyUsage), where)
        return await self._session.scalar(query) or 0

    async def page(
        self, request: PageRequest, where: UsageFilter
    ) -> Sequence[tuple[ApiKeyUsage, str]]:
        """Records, each with its key's public UUID (the id people know the key by)."""
        records = self._filtered(select(ApiKeyUsage, ApiKey.public_id), where).join(
            ApiKey, ApiKey.id == ApiKeyUsage.api_key_id
        )
        query = paged(
            records,
            request,
            self.SORT_COLUMNS,
            ApiKeyUsage.id,
            default=(SortOrder("timestamp", descending=True),),
        )
        return [(usage, public_id) for usage, public_id in await self._session.execute(query)]

    async def delete_before(self, cutoff: datetime) -> int:
        result = await self._session.execute(
            delete(ApiKeyUsage).where(ApiKeyUsage.occurred_at < cutoff)
        )
        await self._session.execute(
            delete(ApiKeyUsageMinute).where(ApiKeyUsageMinute.minute < cutoff)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def add_minutes(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add per-minute rollups to what other workers (or earlier flushes) wrote for the
        same key and minute: counts add up, times widen, the latest request's address,
        method and path win, and distinct addresses keep the largest count."""
        if not rows:
            return
        connection = await self._session.connection()
        await self._session.execute(_minutes_upsert(connection.dialect.name), list(rows))

    async def keep_recent_successes(self, api_key_id: int, keep: int) -> None:
        """Delete the key's sampled accepted requests but the ``keep`` most recent, by
        when they happened (workers and nodes flush in their own order, so the newest
        ids are not the newest requests; the id only breaks ties)."""
        await self._session.execute(_KEEP_RECENT, {"key_pk": api_key_id, "keep": keep})

    async def minutes(self, where: UsageFilter) -> Sequence[ApiKeyUsageMinute]:
        """Rollups of the key (or owner) in the period, oldest first."""
        query = _of_owner_key_and_period(
            select(ApiKeyUsageMinute), where, ApiKeyUsageMinute, ApiKeyUsageMinute.minute
        )
        return list(await self._session.scalars(query.order_by(ApiKeyUsageMinute.minute)))
