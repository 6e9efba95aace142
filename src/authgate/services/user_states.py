"""What authenticating a request needs to know about a user right now, cached.

Shared by bearer tokens and API keys. An entry is dropped as soon as the change feed
says the user changed (deactivation, password change, roles, log out everywhere), and
after a TTL as a safety net.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from authgate.security.principal import parse_authorities
from authgate.services.changes import Change, ChangeFeed, ChangeKind
from authgate.services.expiring_cache import ExpiringCache
from authgate.services.ports import Database
from authgate.services.single_flight import CurrentLoads
from authgate.storage.errors import is_unavailable
from authgate.storage.models import User


@dataclass(frozen=True, slots=True)
class UserAuthState:
    user_id: int
    login: str
    active: bool
    authorities: frozenset[str]
    tokens_valid_after: datetime | None
    # The one token id exempt from ``tokens_valid_after`` (the session that changed the
    # password), or None.
    kept_token_id: str | None = None
    has_second_factor: bool = False
    # The token id or v12 session id that enrolled the second factor (counts as having
    # passed it), or None.
    second_factor_session: str | None = None

    def ends_token(self, issued_at: datetime, token_id: str) -> bool:
        """Whether the user's sessions ended after this token was issued (a password
        change or reset, "log out everywhere", a deactivation) and it is not the one
        kept. "<=": a token issued in the very millisecond of the end counts as before."""
        return (
            self.tokens_valid_after is not None
            and issued_at <= self.tokens_valid_after
            and token_id != self.kept_token_id
        )

    @classmethod
    def of(cls, user: User) -> UserAuthState:
        """The state of a stored user."""
        return cls(
            user_id=user.id,
            login=user.login,
            active=user.activated,
            authorities=parse_authorities(user.authorities),
            tokens_valid_after=user.tokens_valid_after,
            kept_token_id=(
                user.kept_session_jti
                if user.kept_session_cutoff is not None
                and user.kept_session_cutoff == user.tokens_valid_after
                else None
            ),
            has_second_factor=user.second_factor is not None,
            second_factor_session=(
                user.second_factor_session if user.second_factor is not None else None
            ),
        )


class UserCacheConfig(BaseModel):
    """``Settings.user_cache``, set by ``AUTHGATE_USER_CACHE_SIZE`` and
    ``AUTHGATE_USER_CACHE_TTL_SECONDS`` (``authgate.settings_names``) or a
    ``[user_cache]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(default=10_000, ge=1, le=10_000_000)
    ttl_seconds: float = Field(default=60.0, gt=0, le=3600)


class UserStates:
    def __init__(self, *, db: Database, feed: ChangeFeed, max_entries: int, ttl: float) -> None:
        self._db = db
        self._ttl = ttl
        self._cache: ExpiringCache[int, UserAuthState] = ExpiringCache(max_entries)
        # A state read from the database before a user change must not be cached after
        # it (the read may predate the change's commit): see ``CurrentLoads``.
        self._loads: CurrentLoads[int, UserAuthState | None] = CurrentLoads()
        feed.subscribe(self._on_change)
        feed.on_rewind(self._forget_everything)

    def cached(self, user_id: int, *, now: float) -> UserAuthState | None:
        """The cached state, if any (no I/O: the hot path's first try)."""
        return self._cache.get(user_id, now=now)

    async def load(self, user_id: int, *, now: float) -> UserAuthState | None:
        """The state from the database, or ``None`` if the user no longer exists.

        While the database cannot be reached, the last state known (past its TTL, never
        one the change feed discarded) is used: nothing can change a user while the
        database is down, and cached credentials keep working through an outage."""
        try:
            state, current = await self._loads.run(user_id, lambda: self._fetch(user_id))
        except Exception as error:
            last_known = self._cache.stale(user_id)
            if last_known is None or not is_unavailable(error):
                raise
            return last_known
        if state is not None and current:
            self._cache.put(user_id, state, expires_at=now + self._ttl)
        return state

    def hit_ratio(self) -> int:
        return self._cache.hit_ratio_percent()

    def __len__(self) -> int:
        return len(self._cache)

    async def _fetch(self, user_id: int) -> UserAuthState | None:
        async with self._db.session() as session:
            user = await self._db.users(session).get(user_id)
        return UserAuthState.of(user) if user is not None else None

    async def _forget_everything(self) -> None:
        """The change feed went back (a restore): every user is read again."""
        self._loads.invalidate()
        self._cache.clear()

    def _on_change(self, change: Change) -> None:
        if change.kind is ChangeKind.USER_CHANGED:
            self._loads.invalidate()
            with contextlib.suppress(ValueError):
                self._cache.discard(int(change.subject))
