"""Access tokens: issuing at login, authenticating requests, revoking.

Hot path. A token seen before costs a SHA-256 and a few dictionary lookups:

* verified claims are cached, keyed by a hash of the token, never past ``exp``;
* logged-out token ids live in an in-memory deny list (loaded at start-up, kept in
  step by the change feed; each entry leaves when its token would have expired);
* the user's current state (active, roles, "tokens valid after") is cached and
  dropped whenever the change feed says the user changed.

So revocation is checked on every request, cache hit or not, without a database
round trip unless the user's state was just invalidated.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from authgate.clock import Clock
from authgate.exceptions import TokenInvalid, TokenRevoked
from authgate.security.principal import Principal, parse_authorities
from authgate.security.tokens import IssuedToken, JwtCodec, TokenClaims
from authgate.services.changes import Change, ChangeFeed, ChangeKind
from authgate.services.expiring_cache import ExpiringCache
from authgate.services.users import UserView
from authgate.storage.db import Database
from authgate.storage.repositories import RevokedTokenRepository, UserRepository


@dataclass(frozen=True, slots=True)
class UserAuthState:
    """What authenticating a token needs to know about its user right now."""

    login: str
    active: bool
    authorities: frozenset[str]
    tokens_valid_after: datetime | None


class AccessTokenService:
    def __init__(
        self,
        *,
        codec: JwtCodec,
        db: Database,
        feed: ChangeFeed,
        clock: Clock,
        token_ttl: timedelta,
        remember_me_ttl: timedelta,
        cache_size: int,
        user_cache_size: int,
        user_cache_ttl: float,
    ) -> None:
        self._codec = codec
        self._db = db
        self._feed = feed
        self._clock = clock
        self._token_ttl = token_ttl
        self._remember_me_ttl = remember_me_ttl
        self._verified: ExpiringCache[bytes, TokenClaims] = ExpiringCache(cache_size)
        self._users: ExpiringCache[int, UserAuthState] = ExpiringCache(user_cache_size)
        # A safety net: the change feed drops a user's entry when it changes.
        self._user_cache_ttl = user_cache_ttl
        # jti -> POSIX time after which the entry is useless (the token has expired).
        self._denied: dict[str, float] = {}
        # Bumped on every user change: a state read from the database before a change
        # must not be cached after it (the read may predate the change's commit).
        self._user_generation = 0
        feed.subscribe(self._on_change)

    @property
    def codec(self) -> JwtCodec:
        return self._codec

    def replace_codec(self, codec: JwtCodec) -> None:
        """Use new signing keys (after a rotation); cached verifications stay valid."""
        self._codec = codec

    async def load_revocations(self) -> None:
        """Fill the deny list from the database (at start-up, after the feed's cursor)."""
        now = self._clock()
        async with self._db.session() as session:
            revoked = await RevokedTokenRepository(session).unexpired(now)
        for jti, expires_at in revoked:
            self._denied[jti] = expires_at.timestamp()

    def issue(self, user: UserView, *, remember_me: bool) -> IssuedToken:
        ttl = self._remember_me_ttl if remember_me else self._token_ttl
        return self._codec.issue(
            subject=user.login,
            user_id=user.id,
            authorities=user.authorities,
            now=self._clock(),
            ttl=ttl,
        )

    async def authenticate(self, token: str) -> Principal:
        """The principal of a bearer token, or raises a ``TokenRejected`` subclass."""
        now = self._clock()
        timestamp = now.timestamp()
        cache_key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        claims = self._verified.get(cache_key, now=timestamp)
        if claims is None:
            claims = self._codec.verify(token, now=now)
            self._verified.put(cache_key, claims, expires_at=claims.expires_at.timestamp())
        if claims.token_id in self._denied:
            raise TokenRevoked(reason="token_logged_out")
        state = self._users.get(claims.user_id, now=timestamp)
        if state is None:
            state = await self._load_user(claims.user_id, now=timestamp)
        if state is None or state.login != claims.subject:
            raise TokenRevoked(reason="user_deleted")
        if not state.active:
            raise TokenRevoked(reason="user_deactivated")
        # "<=": a token issued in the very millisecond of a revocation counts as before it.
        if state.tokens_valid_after is not None and claims.issued_at <= state.tokens_valid_after:
            raise TokenRevoked(reason="sessions_revoked")
        return Principal(
            user_id=claims.user_id,
            login=claims.subject,
            authorities=claims.authorities & state.authorities,
            method="jwt",
            credential_id=claims.token_id,
            expires_at=claims.expires_at,
        )

    async def logout(self, principal: Principal) -> None:
        """Revoke the token ``principal`` authenticated with."""
        if principal.method != "jwt" or principal.expires_at is None:
            raise TokenInvalid("Only a bearer token can be logged out", reason="not_a_token")
        async with self._feed.unit_of_work() as work:
            await RevokedTokenRepository(work.session).add(
                jti=principal.credential_id,
                user_id=principal.user_id,
                expires_at=principal.expires_at,
                revoked_at=self._clock(),
            )
            work.publish(Change(ChangeKind.TOKEN_REVOKED, principal.credential_id))

    async def delete_expired_revocations(self) -> int:
        """Housekeeping: forget revocations of tokens that have expired anyway."""
        now = self._clock()
        cutoff = now.timestamp()
        for jti in [jti for jti, until in self._denied.items() if until <= cutoff]:
            del self._denied[jti]
        async with self._db.transaction() as session:
            return await RevokedTokenRepository(session).delete_expired(now)

    def cache_sizes(self) -> dict[str, int]:
        return {
            "verified_tokens": len(self._verified),
            "user_states": len(self._users),
            "revoked_tokens": len(self._denied),
        }

    # -- internals ------------------------------------------------------------------------

    async def _load_user(self, user_id: int, *, now: float) -> UserAuthState | None:
        generation = self._user_generation
        async with self._db.session() as session:
            user = await UserRepository(session).get(user_id)
        if user is None:
            return None
        state = UserAuthState(
            login=user.login,
            active=user.activated,
            authorities=parse_authorities(user.authorities),
            tokens_valid_after=user.tokens_valid_after,
        )
        if generation == self._user_generation:
            self._users.put(user_id, state, expires_at=now + self._user_cache_ttl)
        return state

    def _on_change(self, change: Change) -> None:
        if change.kind is ChangeKind.USER_CHANGED:
            self._user_generation += 1
            with contextlib.suppress(ValueError):
                self._users.discard(int(change.subject))
        elif change.kind is ChangeKind.TOKEN_REVOKED:
            # The feed does not carry the token's expiry; keep the entry for the longest
            # lifetime any token can have (load_revocations uses the exact one).
            longest = max(self._token_ttl, self._remember_me_ttl) + timedelta(minutes=5)
            self._denied.setdefault(change.subject, self._timestamp() + longest.total_seconds())

    def _timestamp(self) -> float:
        return self._clock().timestamp()
