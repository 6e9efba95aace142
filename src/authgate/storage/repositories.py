"""Queries, one repository per table. Repositories never commit: services own transactions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.storage.models import ApiKey, ApiKeyUsage, AuthChange, Base, RevokedToken, User
from authgate.storage.paging import PageRequest, SortOrder


def _order_by(
    sort: Sequence[SortOrder], columns: Mapping[str, Any], tie_breaker: Any
) -> list[ColumnElement[Any]]:
    clauses = []
    for order in sort:
        column = columns[order.field]  # callers validate names against the mapping
        clauses.append(column.desc() if order.descending else column.asc())
    clauses.append(tie_breaker.asc())  # stable pages
    return clauses


class UserRepository:
    # Logical (API) sort names → columns.
    SORT_COLUMNS: Mapping[str, Any] = {
        "id": User.id,
        "login": User.login,
        "email": User.email,
        "firstName": User.first_name,
        "lastName": User.last_name,
        "activated": User.activated,
        "createdDate": User.created_at,
        "lastModifiedDate": User.updated_at,
    }

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, user_id: int) -> User | None:
        return await self._session.get(User, user_id)

    async def by_login(self, login: str) -> User | None:
        return await self._session.scalar(select(User).where(User.login == login))

    async def by_login_or_email(self, identifier: str) -> User | None:
        """The user whose login or e-mail is ``identifier`` (both stored lower-case)."""
        found = await self._session.scalars(
            select(User).where(or_(User.login == identifier, User.email == identifier)).limit(2)
        )
        users = list(found)
        # A login equal to another user's e-mail: the login wins, as in JHipster.
        for user in users:
            if user.login == identifier:
                return user
        return users[0] if users else None

    async def email_taken(self, email: str, *, except_user_id: int | None = None) -> bool:
        query = select(User.id).where(User.email == email)
        if except_user_id is not None:
            query = query.where(User.id != except_user_id)
        return await self._session.scalar(query.limit(1)) is not None

    async def count(self) -> int:
        return await self._session.scalar(select(func.count()).select_from(User)) or 0

    async def count_active_admins(self) -> int:
        query = (
            select(func.count())
            .select_from(User)
            .where(User.activated.is_(True), User.authorities.contains("ROLE_ADMIN"))
        )
        return await self._session.scalar(query) or 0

    async def page(self, request: PageRequest) -> Sequence[User]:
        query = (
            select(User)
            .order_by(*_order_by(request.sort, self.SORT_COLUMNS, User.id))
            .offset(request.offset)
            .limit(request.size)
        )
        return list(await self._session.scalars(query))

    def add(self, user: User) -> None:
        self._session.add(user)

    async def delete(self, user: User) -> None:
        await self._session.delete(user)

    async def flush(self) -> None:
        await self._session.flush()


class RevokedTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(
        self, *, jti: str, user_id: int, expires_at: datetime, revoked_at: datetime
    ) -> None:
        if await self._session.get(RevokedToken, jti) is None:
            self._session.add(
                RevokedToken(jti=jti, user_id=user_id, expires_at=expires_at, revoked_at=revoked_at)
            )

    async def unexpired(self, now: datetime) -> list[tuple[str, datetime]]:
        rows = await self._session.execute(
            select(RevokedToken.jti, RevokedToken.expires_at).where(RevokedToken.expires_at > now)
        )
        return [(jti, expires_at) for jti, expires_at in rows]

    async def delete_expired(self, now: datetime) -> int:
        result = await self._session.execute(
            delete(RevokedToken).where(RevokedToken.expires_at <= now)
        )
        return int(getattr(result, "rowcount", 0) or 0)


class ChangeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def append(self, *, kind: str, subject: str, now: datetime) -> None:
        self._session.add(AuthChange(kind=kind, subject=subject, created_at=now))

    async def after(self, seq: int, *, limit: int) -> list[AuthChange]:
        query = select(AuthChange).where(AuthChange.seq > seq).order_by(AuthChange.seq).limit(limit)
        return list(await self._session.scalars(query))

    async def last_seq(self) -> int:
        return await self._session.scalar(select(func.max(AuthChange.seq))) or 0

    async def delete_before(self, cutoff: datetime) -> int:
        result = await self._session.execute(
            delete(AuthChange).where(AuthChange.created_at < cutoff)
        )
        return int(getattr(result, "rowcount", 0) or 0)


class ApiKeyRepository:
    SORT_COLUMNS: Mapping[str, Any] = {
        "id": ApiKey.id,
        "name": ApiKey.name,
        "createdAt": ApiKey.created_at,
        "expiresAt": ApiKey.expires_at,
        "generatedAt": ApiKey.generated_at,
        "lastUsedAt": ApiKey.last_used_at,
    }

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, key_id: int) -> ApiKey | None:
        return await self._session.get(ApiKey, key_id)

    async def by_public_id(self, public_id: str) -> ApiKey | None:
        return await self._session.scalar(select(ApiKey).where(ApiKey.key_id == public_id))

    async def live_name_taken(
        self, owner_id: int, name: str, *, except_key_id: int | None = None
    ) -> bool:
        query = select(ApiKey.id).where(
            ApiKey.user_id == owner_id, ApiKey.name == name, ApiKey.revoked_at.is_(None)
        )
        if except_key_id is not None:
            query = query.where(ApiKey.id != except_key_id)
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
        query = (
            self._filtered(select(ApiKey), owner_id, include_revoked)
            .order_by(*_order_by(request.sort, self.SORT_COLUMNS, ApiKey.id))
            .offset(request.offset)
            .limit(request.size)
        )
        return list(await self._session.scalars(query))

    def add(self, key: ApiKey) -> None:
        self._session.add(key)

    async def flush(self) -> None:
        await self._session.flush()

    async def record_last_used(self, key_id: int, *, at: datetime, ip: str | None) -> None:
        """Move ``last_used_at`` forward (never back, whatever order batches land in)."""
        await self._session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < at),
            )
            .values(last_used_at=at, last_used_ip=ip)
        )


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


_SQLITE_USAGE_INSERT = (
    f"INSERT INTO api_key_usage ({', '.join(UsageRow._fields)}) "  # noqa: S608 - fixed names
    f"VALUES ({', '.join('?' for _ in UsageRow._fields)})"
)


def _sqlite_instant(moment: datetime) -> str:
    """A datetime as SQLAlchemy's SQLite dialect stores ``UTCDateTime``: naive UTC text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass(frozen=True, slots=True)
class UsageFilter:
    owner_id: int | None = None
    api_key_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: int | None = None
    succeeded: bool | None = None


class UsageRepository:
    SORT_COLUMNS: Mapping[str, Any] = {
        "id": ApiKeyUsage.id,
        "timestamp": ApiKeyUsage.occurred_at,
        "responseCode": ApiKeyUsage.status,
    }

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def insert_many(self, rows: Sequence[UsageRow]) -> None:
        """One executemany INSERT. The ORM would insert row by row to fetch each new id
        (measured 214 us a row on SQLite); on SQLite the tuples go to the driver directly,
        skipping Core's per-value type processing (measured 22 -> 12 us a row)."""
        if not rows:
            return
        connection = await self._session.connection()
        if connection.dialect.name != "sqlite":
            table = Base.metadata.tables["api_key_usage"]
            await connection.execute(insert(table), [row._asdict() for row in rows])
            return
        await connection.exec_driver_sql(
            _SQLITE_USAGE_INSERT,
            [(*row[:3], _sqlite_instant(row.occurred_at), *row[4:]) for row in rows],
        )

    def _filtered(self, query: Any, where: UsageFilter) -> Any:
        if where.owner_id is not None:
            query = query.where(ApiKeyUsage.user_id == where.owner_id)
        if where.api_key_id is not None:
            query = query.where(ApiKeyUsage.api_key_id == where.api_key_id)
        if where.since is not None:
            query = query.where(ApiKeyUsage.occurred_at >= where.since)
        if where.until is not None:
            query = query.where(ApiKeyUsage.occurred_at < where.until)
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

    async def page(self, request: PageRequest, where: UsageFilter) -> Sequence[ApiKeyUsage]:
        sort = request.sort or (SortOrder("timestamp", descending=True),)
        query = (
            self._filtered(select(ApiKeyUsage), where)
            .order_by(*_order_by(sort, self.SORT_COLUMNS, ApiKeyUsage.id))
            .offset(request.offset)
            .limit(request.size)
        )
        return list(await self._session.scalars(query))

    async def delete_before(self, cutoff: datetime) -> int:
        result = await self._session.execute(
            delete(ApiKeyUsage).where(ApiKeyUsage.occurred_at < cutoff)
        )
        return int(getattr(result, "rowcount", 0) or 0)
