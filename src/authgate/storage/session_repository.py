"""Sessions of UTMStack v12's API (refresh-token families) and their refresh tokens."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.storage.models import RefreshToken, Session, User
from authgate.storage.row_locks import lock_row


class SessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def add(self, row: Session) -> None:
        self._session.add(row)

    def add_token(self, *, token_hash: str, session_id: str, now: datetime) -> None:
        token = RefreshToken(token_hash=token_hash, session_id=session_id, created_at=now)
        self._session.add(token)

    async def get(self, session_id: str) -> Session | None:
        return await self._session.get(Session, session_id)

    async def token(self, token_hash: str) -> RefreshToken | None:
        return await self._session.get(RefreshToken, token_hash)

    async def locked_token(self, token_hash: str) -> tuple[RefreshToken, Session] | None:
        """The refresh token and its session, both read anew with the session's row locked
        until the transaction ends (None when either is gone): the refreshes of one
        session take turns, and each sees what the one before it committed (which of its
        tokens were exchanged, and when)."""
        token = await self._session.get(RefreshToken, token_hash)
        if token is None:
            return None
        session = await lock_row(self._session, Session, Session.id == token.session_id)
        if session is None:
            return None
        token = await self._session.get(RefreshToken, token_hash, populate_existing=True)
        return (token, session) if token is not None else None

    async def retire_live(self, session_id: str, *, now: datetime) -> None:
        """Mark every refresh token of the session not yet exchanged as exchanged now."""
        await self._session.execute(
            update(RefreshToken)
            .where(RefreshToken.session_id == session_id, RefreshToken.rotated_at.is_(None))
            .values(rotated_at=now)
        )

    async def live_tokens(self, session_id: str) -> int:
        """How many refresh tokens of the session were not exchanged yet."""
        count = await self._session.scalar(
            select(func.count())
            .select_from(RefreshToken)
            .where(RefreshToken.session_id == session_id, RefreshToken.rotated_at.is_(None))
        )
        return int(count or 0)

    async def live(self, user_id: int, *, now: datetime) -> Sequence[Session]:
        """The user's sessions that are neither revoked nor expired, oldest first."""
        rows = await self._session.scalars(
            select(Session)
            .where(
                Session.user_id == user_id,
                Session.revoked_at.is_(None),
                Session.expires_at > now,
            )
            .order_by(Session.created_at, Session.id)
        )
        return rows.all()

    async def user(self, user_id: int) -> User | None:
        return await self._session.get(User, user_id)

    async def delete_ended(self, *, now: datetime, limit: int) -> int:
        """Delete at most ``limit`` sessions that expired or were revoked, with their
        refresh tokens (explicitly: SQLite enforces no cascade unless told to)."""
        ended = select(Session.id).where(
            or_(Session.expires_at <= now, Session.revoked_at.is_not(None))
        )
        ids = list(await self._session.scalars(ended.limit(limit)))
        if ids:
            await self._session.execute(
                delete(RefreshToken).where(RefreshToken.session_id.in_(ids))
            )
            await self._session.execute(delete(Session).where(Session.id.in_(ids)))
        return len(ids)
