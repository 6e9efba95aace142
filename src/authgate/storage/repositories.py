"""Queries, one repository per table. Repositories never commit: services own transactions."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    bindparam,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.storage.models import AuthChange, LegacyImport, RevokedToken, User
from authgate.storage.page_queries import paged
from authgate.storage.paging import PageRequest
from authgate.storage.row_locks import lock_row, take_sqlite_write_lock
from authgate.storage.sqlite_reads import AnySelect
from authgate.storage.text import storable_text

# What a login reads, as Core statements built once and run on a bare connection: no
# ORM object, identity map, session or statement building per login (the ORM read of
# the user cost ~0.9 ms of event-loop CPU a login on aiosqlite, the second-factor
# re-read as much again).
_LOGIN_COLUMNS = select(
    User.id,
    User.login,
    User.email,
    User.first_name,
    User.last_name,
    User.lang_key,
    User.activated,
    User.authorities,
    User.password_hash,
    User.created_at,
    User.updated_at,
    User.password_changed_at,
    User.tokens_valid_after,
    User.created_by,
    User.last_modified_by,
    User.image_url,
    User.activation_pending,
    User.second_factor,
    User.initial_password,
    User.password_change_required,
    User.public_id,
)
_BY_LOGIN_OR_EMAIL = _LOGIN_COLUMNS.where(
    or_(User.login == bindparam("identifier"), User.email == bindparam("identifier"))
).limit(2)
_SECOND_FACTOR = select(User.second_factor).where(User.id == bindparam("user_id"))
_CHANGES_AFTER = (
    select(AuthChange.seq, AuthChange.kind, AuthChange.subject, AuthChange.created_at)
    .where(AuthChange.seq > bindparam("seq"))
    .order_by(AuthChange.seq)
    .limit(bindparam("limit"))
)


# What a login reads of its user: see ``login_row_of``.
LOGIN_ROWS: AnySelect = _BY_LOGIN_OR_EMAIL


def login_row_of(rows: Sequence[Any], identifier: str) -> Any | None:
    """Of the rows ``LOGIN_ROWS`` read for ``identifier`` (``Database.login_row``), the
    user whose login or e-mail it is: the columns a login reads (``UserView``'s, and
    the password hash; same names as ``User``), or None. Both are stored lower-case; a
    login equal to another user's e-mail wins, as in JHipster."""
    for row in rows:
        if row.login == identifier:
            return row
    return rows[0] if rows else None


def second_factor_of(connection: Connection, user_id: int) -> str | None:
    """The user's second factor in force (``User.second_factor``), None without one or
    without such a user. Run by ``Database.read``."""
    second_factor: str | None = connection.execute(
        _SECOND_FACTOR, {"user_id": user_id}
    ).scalar_one_or_none()
    return second_factor


def changes_after(
    connection: Connection, seq: int, limit: int
) -> Sequence[Row[int, str, str, datetime]]:
    """The change feed's rows after ``seq`` in order, at most ``limit``: (seq, kind,
    subject, created_at). Every process polls them several times a second, idle or not, so this is
    one statement on a bare connection (run by ``Database.read``), no ORM objects."""
    return connection.execute(_CHANGES_AFTER, {"seq": seq, "limit": limit}).all()


_ACTIVE_ADMIN = (User.activated.is_(True), User.authorities.contains("ROLE_ADMIN"))


class UserRepository:
    # Logical (API) sort names → columns.
    SORT_COLUMNS: ClassVar[Mapping[str, Any]] = {
        "id": User.id,
        "login": User.login,
        "email": User.email,
        "firstName": User.first_name,
        "lastName": User.last_name,
        "activated": User.activated,
        "createdDate": User.created_at,
        "lastModifiedDate": User.updated_at,
        # Logins (or "system"); UTMStack's users page sorts by lastModifiedBy. NULL for
        # users imported from UTMStack, whose own values stay in legacy_profile.
        "createdBy": User.created_by,
        "lastModifiedBy": User.last_modified_by,
    }

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, user_id: int) -> User | None:
        return await self._session.get(User, user_id)

    async def by_login(self, login: str) -> User | None:
        if not storable_text(login):
            return None
        return await self._session.scalar(select(User).where(User.login == login))

    async def by_email(self, email: str) -> User | None:
        if not storable_text(email):
            return None
        return await self._session.scalar(select(User).where(User.email == email))

    async def by_public_id(self, public_id: str) -> User | None:
        """The user of a v12 id (a UUID; anything else is nobody)."""
        try:
            canonical = str(uuid.UUID(public_id))
        except ValueError:
            return None
        return await self._session.scalar(select(User).where(User.public_id == canonical))

    async def name_taken(self, name: str, *, except_user_id: int | None = None) -> bool:
        """Whether ``name`` (lower-case) is some user's login or e-mail address, the user
        ``except_user_id`` left out. A user signs in with either, so neither may be
        another user's other: a login equal to someone's e-mail would take their e-mail
        sign-in (the login wins, ``login_row``), and the reverse."""
        if not storable_text(name):
            return False
        query = select(User.id).where(or_(User.email == name, User.login == name))
        if except_user_id is not None:
            query = query.where(User.id != except_user_id)
        return await self._session.scalar(query.limit(1)) is not None

    async def count(
        self,
        *,
        login_contains: str | None = None,
        search: str | None = None,
        except_user_id: int | None = None,
    ) -> int:
        query = _filtered(
            select(func.count()).select_from(User), login_contains, search, except_user_id
        )
        return await self._session.scalar(query) or 0

    async def by_reset_key(self, digest: str) -> User | None:
        return await self._session.scalar(select(User).where(User.reset_key_hash == digest))

    async def count_active_admins(self) -> int:
        query = select(func.count()).select_from(User).where(*_ACTIVE_ADMIN)
        return await self._session.scalar(query) or 0

    async def locked(self, user_id: int) -> User | None:
        """The user read anew, its row locked until the transaction ends (None if it no
        longer exists): a concurrent transaction that locks it too (or writes it) waits
        for this one, then sees what it committed.

        Take it first in a write transaction: a user's row before its keys' rows, and
        after ``lock_active_admins``, so that no two transactions wait on each other."""
        return await lock_row(self._session, User, User.id == user_id)

    async def lock_active_admins(self) -> int:
        """Lock the rows of every active admin (in id order, so that two callers never
        wait on each other) and return how many there are: until the transaction ends,
        no concurrent one that takes them too can deactivate, demote or delete another
        admin, so the count stays true. Take it before any other user's row."""
        await take_sqlite_write_lock(self._session)
        query = select(User.id).where(*_ACTIVE_ADMIN).order_by(User.id).with_for_update()
        return len((await self._session.scalars(query)).all())

    async def page(
        self,
        request: PageRequest,
        *,
        login_contains: str | None = None,
        search: str | None = None,
        except_user_id: int | None = None,
    ) -> Sequence[User]:
        users = _filtered(select(User), login_contains, search, except_user_id)
        query = paged(users, request, self.SORT_COLUMNS, User.id)
        return list(await self._session.scalars(query))

    def add(self, user: User) -> None:
        self._session.add(user)

    def add_all(self, users: Sequence[User]) -> None:
        self._session.add_all(users)

    async def all(self) -> Sequence[User]:
        """Every user (an import matches them against its source, in memory)."""
        return list(await self._session.scalars(select(User)))

    async def delete(self, user: User) -> None:
        await self._session.delete(user)

    async def flush(self) -> None:
        await self._session.flush()


def _filtered(
    query: Select[Any],
    login_contains: str | None,
    search: str | None,
    except_user_id: int | None,
) -> Select[Any]:
    """The users a page and its count both select (the count must match the pages)."""
    if login_contains:
        query = query.where(_login_contains(login_contains))
    if search:
        query = query.where(_matches(search))
    if except_user_id is not None:
        query = query.where(User.id != except_user_id)
    return query


def _login_contains(fragment: str) -> ColumnElement[bool]:
    """Logins containing ``fragment``, case-insensitively (logins are stored lower-case;
    ``%`` and ``_`` in the fragment are literal)."""
    return User.login.contains(fragment.lower(), autoescape=True)


def _matches(fragment: str) -> ColumnElement[bool]:
    """Users whose login, e-mail, first or last name contains ``fragment``,
    case-insensitively (v12's ``?search=``; ``%`` and ``_`` are literal)."""
    lowered = fragment.lower()
    return or_(
        User.login.contains(lowered, autoescape=True),
        User.email.contains(lowered, autoescape=True),
        func.lower(User.first_name).contains(lowered, autoescape=True),
        func.lower(User.last_name).contains(lowered, autoescape=True),
    )


class RevokedTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(
        self, *, jti: str, user_id: int, expires_at: datetime, revoked_at: datetime
    ) -> bool:
        """Deny ``jti``; False when it was denied already. One insert-if-absent (``ON
        CONFLICT DO NOTHING``): of several requests denying one token at once exactly
        one gets True, and none breaks the key (a read-then-insert did: the loser's
        commit raised on ``revoked_tokens.jti``, a 500)."""
        insert = (
            postgresql_insert
            if self._session.get_bind().dialect.name == "postgresql"
            else sqlite_insert
        )
        result = await self._session.execute(
            insert(RevokedToken)
            .values(jti=jti, user_id=user_id, expires_at=expires_at, revoked_at=revoked_at)
            .on_conflict_do_nothing(index_elements=["jti"])
        )
        return int(getattr(result, "rowcount", 0) or 0) == 1

    async def remove(self, jti: str) -> None:
        """Take ``jti`` off the list (a pending token claimed for a code that was wrong)."""
        await self._session.execute(delete(RevokedToken).where(RevokedToken.jti == jti))

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

    def append(self, *, kind: str, subject: str, now: datetime) -> AuthChange:
        """The row, added to the session (its ``seq`` is set when the session flushes)."""
        row = AuthChange(kind=kind, subject=subject, created_at=now)
        self._session.add(row)
        return row

    async def last_seq(self) -> int:
        return await self._session.scalar(select(func.max(AuthChange.seq))) or 0

    async def created_at_of(self, seq: int) -> datetime | None:
        """When the row numbered ``seq`` was made (None: there is none)."""
        return await self._session.scalar(
            select(AuthChange.created_at).where(AuthChange.seq == seq)
        )

    async def delete_before(self, cutoff: datetime) -> int:
        result = await self._session.execute(
            delete(AuthChange).where(AuthChange.created_at < cutoff)
        )
        return int(getattr(result, "rowcount", 0) or 0)


class LegacyImportRepository:
    """What ``authgate import utmstack`` imported, by UTMStack id (``LegacyImport``)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def all(self) -> Sequence[LegacyImport]:
        return list(await self._session.scalars(select(LegacyImport)))

    def add_all(self, rows: Sequence[LegacyImport]) -> None:
        self._session.add_all(rows)
