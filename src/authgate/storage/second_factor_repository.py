"""Second-factor rows: secrets (encrypted by the service), one-time code hashes.

Single use is enforced by the database, not by a read-then-write: a TOTP step is taken
by an ``UPDATE ... WHERE last_totp_step < :step`` and a code by an ``UPDATE ... WHERE
used_at IS NULL``; only the statement that changed a row wins, on every node.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import CursorResult, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.storage.models import OneTimeCode, SecondFactor, User
from authgate.storage.row_locks import take_sqlite_write_lock


class SecondFactorRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, user_id: int) -> SecondFactor | None:
        return await self._session.get(SecondFactor, user_id)

    async def get_or_create(self, user_id: int, *, now: datetime) -> SecondFactor:
        """The user's row to change, read anew and locked until the transaction ends (or
        a new one): an enrolment started replaces the one in progress whole, never over
        a verification of it committed after the read (an unchanged value is not
        written: a ``pending_verified_at`` read as None and set to None again would keep
        the verification of the replaced secret)."""
        await take_sqlite_write_lock(self._session)
        row = await self._session.get(
            SecondFactor, user_id, with_for_update=True, populate_existing=True
        )
        if row is None:
            row = SecondFactor(user_id=user_id, updated_at=now)
            self._session.add(row)
        return row

    async def take_totp_step(self, user_id: int, step: int) -> bool:
        """Record ``step`` as the last accepted one, unless it (or a later one) was."""
        result = await self._session.execute(
            update(SecondFactor)
            .where(
                SecondFactor.user_id == user_id,
                or_(SecondFactor.last_totp_step.is_(None), SecondFactor.last_totp_step < step),
            )
            .values(last_totp_step=step)
        )
        return _changed(result)

    async def take_pending_step(self, user_id: int, step: int) -> bool:
        """The same for the secret being enrolled."""
        result = await self._session.execute(
            update(SecondFactor)
            .where(
                SecondFactor.user_id == user_id,
                or_(
                    SecondFactor.pending_last_step.is_(None),
                    SecondFactor.pending_last_step < step,
                ),
            )
            .values(pending_last_step=step)
        )
        return _changed(result)

    async def mark_pending_verified(
        self,
        user_id: int,
        *,
        method: str,
        started_at: datetime,
        secret: str | None,
        now: datetime,
    ) -> bool:
        """Mark the enrolment in progress verified, if it is still the one that began at
        ``started_at`` with this (encrypted) ``secret``; False when an enrolment started
        since has replaced it (its secret or codes are not the ones checked)."""
        result = await self._session.execute(
            update(SecondFactor)
            .where(
                SecondFactor.user_id == user_id,
                SecondFactor.pending_method == method,
                SecondFactor.pending_started_at == started_at,
                SecondFactor.pending_totp_secret.is_not_distinct_from(secret),
            )
            .values(pending_verified_at=now)
        )
        return _changed(result)

    async def delete(self, user_id: int) -> None:
        await self._session.execute(delete(SecondFactor).where(SecondFactor.user_id == user_id))

    async def enrolled_user_ids(self, user_ids: Sequence[int]) -> dict[int, str]:
        """user id -> method in force, for the users of a page that have one."""
        if not user_ids:
            return {}
        rows = await self._session.execute(
            select(User.id, User.second_factor).where(
                User.id.in_(user_ids), User.second_factor.is_not(None)
            )
        )
        return {user_id: str(method) for user_id, method in rows}


class OneTimeCodeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def add(self, code: OneTimeCode) -> None:
        self._session.add(code)

    async def replace(self, user_id: int, purpose: str, codes: Sequence[OneTimeCode]) -> None:
        """Drop the user's codes of ``purpose`` and store ``codes`` instead."""
        await self.delete(user_id, purpose)
        self._session.add_all(codes)

    async def delete(self, user_id: int, purpose: str | None = None) -> None:
        statement = delete(OneTimeCode).where(OneTimeCode.user_id == user_id)
        if purpose is not None:
            statement = statement.where(OneTimeCode.purpose == purpose)
        await self._session.execute(statement)

    async def use(self, user_id: int, purpose: str, code_hash: str, *, now: datetime) -> bool:
        """Mark the matching unused, unexpired code used; False when there is none."""
        result = await self._session.execute(
            update(OneTimeCode)
            .where(
                OneTimeCode.user_id == user_id,
                OneTimeCode.purpose == purpose,
                OneTimeCode.code_hash == code_hash,
                OneTimeCode.used_at.is_(None),
                or_(OneTimeCode.expires_at.is_(None), OneTimeCode.expires_at > now),
            )
            .values(used_at=now)
        )
        return _changed(result)

    async def count_unused(self, user_id: int, purpose: str) -> int:
        count = await self._session.scalar(
            select(func.count())
            .select_from(OneTimeCode)
            .where(
                OneTimeCode.user_id == user_id,
                OneTimeCode.purpose == purpose,
                OneTimeCode.used_at.is_(None),
            )
        )
        return int(count or 0)

    async def latest_created(
        self, user_id: int, purpose: str, *, live_at: datetime | None = None
    ) -> datetime | None:
        """When the latest code of ``purpose`` was made; with ``live_at``, the latest
        that still works then (unused, unexpired)."""
        query = select(func.max(OneTimeCode.created_at)).where(
            OneTimeCode.user_id == user_id, OneTimeCode.purpose == purpose
        )
        if live_at is not None:
            query = query.where(
                OneTimeCode.used_at.is_(None),
                or_(OneTimeCode.expires_at.is_(None), OneTimeCode.expires_at > live_at),
            )
        latest: datetime | None = await self._session.scalar(query)
        return latest


def _changed(result: object) -> bool:
    return isinstance(result, CursorResult) and result.rowcount == 1
