"""Access tokens: issuing at login, authenticating requests, revoking.

Hot path. A token seen before costs a SHA-256 and a few dictionary lookups:

* verified claims are cached, keyed by a hash of the token, never past ``exp``;
* logged-out token ids live in an in-memory deny list (loaded at start-up, kept in
  step by the change feed; each entry leaves when its token would have expired);
* the user's current state (active, roles, "tokens valid after") comes from
  ``UserStates``, which drops a user whenever the change feed says they changed;
* the principal built for a token is reused until that state changes.

So revocation is checked on every request, cache hit or not, without a database
round trip unless the user's state was just invalidated.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from authgate.clock import Clock
from authgate.exceptions import SecondFactorLocked, TokenInvalid, TokenRevoked
from authgate.reasons import Reason
from authgate.security.principal import ROLE_ADMIN, Principal
from authgate.security.signing_keys import Algorithm
from authgate.security.tokens import (
    PRE_AUTH_AUDIENCE_SUFFIX,
    PRE_VERIFICATION_AUDIENCE_SUFFIX,
    IssuedPending,
    IssuedToken,
    JwtCodec,
    PendingClaims,
    TokenClaims,
)
from authgate.services.audit.events import Actor, EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.changes import Change, ChangeFeed, ChangeKind, UnitOfWork
from authgate.services.expiring_cache import ExpiringCache
from authgate.services.ports import Database
from authgate.services.user_fields import UserView
from authgate.services.user_states import UserAuthState, UserStates

# UTMStack's pre-verification tokens live five minutes.
PRE_VERIFICATION_TTL: Final = timedelta(minutes=5)


class TokenConfig(BaseModel):
    """``Settings.tokens``: the JWTs issued and accepted, set by their flat names
    (``AUTHGATE_JWT_ISSUER``, ``AUTHGATE_TOKEN_TTL_SECONDS``, ...: see
    ``authgate.settings_names``) or a ``[tokens]`` table. The HS512 secret and the key
    ring's file are top-level settings (secrets and files, see docs/architecture.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: Algorithm = "ES256"
    issuer: str = "authgate"
    audience: str = "authgate"
    ttl_seconds: int = Field(default=3600, ge=60, le=30 * 86400)
    remember_me_ttl_seconds: int = Field(default=7 * 86400, ge=60, le=365 * 86400)
    # A v12 refresh token exchanged less than this ago may be exchanged again (another
    # tab refreshing with it) without being taken for a stolen one; 0: never.
    refresh_reuse_interval_seconds: int = Field(default=30, ge=0, le=300)
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    query_param: bool = Field(
        default=False,
        description="Also accept ?access_token= (leaks tokens into logs and browser history).",
    )
    cache_size: int = Field(default=10_000, ge=0, le=10_000_000)

    @property
    def ttl(self) -> timedelta:
        return timedelta(seconds=self.ttl_seconds)

    @property
    def remember_me_ttl(self) -> timedelta:
        return timedelta(seconds=self.remember_me_ttl_seconds)

    @property
    def refresh_reuse_interval(self) -> timedelta:
        return timedelta(seconds=self.refresh_reuse_interval_seconds)

    @property
    def leeway(self) -> timedelta:
        return timedelta(seconds=self.leeway_seconds)


class _VerifiedToken:
    """A cache entry: the token's verified claims and the principal last built from them
    (rebuilt only when the user's state object changes)."""

    __slots__ = ("claims", "principal", "state")

    def __init__(self, claims: TokenClaims) -> None:
        self.claims = claims
        self.state: UserAuthState | None = None
        self.principal: Principal | None = None


class AccessTokenService:
    def __init__(
        self,
        *,
        codec: JwtCodec,
        db: Database,
        feed: ChangeFeed,
        users: UserStates,
        clock: Clock,
        audit: AuditLog,
        token_ttl: timedelta,
        remember_me_ttl: timedelta,
        cache_size: int,
        tenant_id: str | None = None,
        default_tenant: bool = True,
    ) -> None:
        """``tenant_id``: the ``tid`` of v12 sessions' tokens; ``default_tenant``: it is
        UTMStack's default tenant (whose admins are v12's instance operators)."""
        self._codec = codec
        self._tenant_id = tenant_id
        self._default_tenant = default_tenant
        self._db = db
        self._feed = feed
        self._clock = clock
        self._token_ttl = token_ttl
        self._remember_me_ttl = remember_me_ttl
        self._users = users
        self._audit = audit
        self._verified: ExpiringCache[bytes, _VerifiedToken] = ExpiringCache(cache_size)
        # jti -> POSIX time after which the entry is useless (the token has expired).
        self._denied: dict[str, float] = {}
        feed.subscribe(self._on_change)
        feed.on_rewind(self._reload_after_rewind)

    @property
    def codec(self) -> JwtCodec:
        return self._codec

    def replace_codec(self, codec: JwtCodec) -> None:
        """Use new signing keys (after a rotation); cached verifications stay valid."""
        self._codec = codec

    async def load_revocations(self) -> None:
        """Fill the deny list from the database (at start-up, after the feed's cursor):
        every revocation of a token still accepted, the leeway past its expiry included."""
        async with self._db.session() as session:
            revoked = await self._db.revoked_tokens(session).unexpired(self._accepted_since())
        for jti, expires_at in revoked:
            self._denied[jti] = expires_at.timestamp()

    def issue(
        self, user: UserView, *, remember_me: bool, second_factor: bool = False
    ) -> IssuedToken:
        """An access token; ``second_factor`` when the login passed one."""
        ttl = self._remember_me_ttl if remember_me else self._token_ttl
        return self._codec.issue(
            subject=user.login,
            user_id=user.id,
            authorities=user.authorities,
            now=user.credentials_as_of(self._clock()),
            ttl=ttl,
            second_factor=second_factor,
        )

    def issue_for_session(
        self, user: UserView, *, session_id: str, second_factor: bool = False
    ) -> IssuedToken:
        """An access token of a v12 session: it carries ``sid`` (so revoking the session
        revokes it), ``email``, and the tenant claims v12's UI reads (``tid``: the
        tenant, ``AUTHGATE_V12_TENANT_ID``; ``platform``); ``second_factor`` when the
        session's login passed one."""
        return self._codec.issue(
            subject=user.login,
            user_id=user.id,
            authorities=user.authorities,
            now=user.credentials_as_of(self._clock()),
            ttl=self._token_ttl,
            session_id=session_id,
            email=user.email,
            tenant_id=self._tenant_id,
            # v12: the instance operator is an admin of the default tenant.
            platform=self._default_tenant and ROLE_ADMIN in user.authorities,
            second_factor=second_factor,
        )

    async def deny_sessions(
        self, work: UnitOfWork, *, user_id: int, session_ids: list[str]
    ) -> None:
        """Refuse every access token of these sessions, on every worker and node, from
        the commit of ``work``. The deny-list entry (keyed by the ``sid``) lives as long
        as the longest-lived token the session can have issued."""
        now = self._clock()
        until = now + self._token_ttl + timedelta(minutes=5)
        repository = self._db.revoked_tokens(work.session)
        for session_id in session_ids:
            await repository.add(jti=session_id, user_id=user_id, expires_at=until, revoked_at=now)
            work.publish(Change(ChangeKind.TOKEN_REVOKED, session_id))

    def issue_pre_verification(self, user: UserView, *, remember_me: bool) -> IssuedPending:
        """A pre-verification token (5 minutes): only the second-factor endpoints take it."""
        return self._issue_pending(user, PRE_VERIFICATION_AUDIENCE_SUFFIX, remember_me=remember_me)

    def issue_pre_auth(self, user: UserView) -> IssuedPending:
        """A v12 pre-auth token (5 minutes): only ``/api/v1/auth/tfa/verify-code`` takes it."""
        return self._issue_pending(user, PRE_AUTH_AUDIENCE_SUFFIX, remember_me=False)

    def _issue_pending(
        self, user: UserView, audience_suffix: str, *, remember_me: bool
    ) -> IssuedPending:
        return self._codec.issue_pre_verification(
            subject=user.login,
            user_id=user.id,
            now=user.credentials_as_of(self._clock()),
            ttl=PRE_VERIFICATION_TTL,
            remember_me=remember_me,
            audience_suffix=audience_suffix,
        )

    async def authenticate_pre_verification(self, token: str) -> PendingClaims:
        """The claims of a live pre-verification token of an active user, or raises a
        ``TokenRejected`` subclass (used, revoked, expired, or not one)."""
        return await self._authenticate_pending(token, PRE_VERIFICATION_AUDIENCE_SUFFIX)

    async def authenticate_pre_auth(self, token: str) -> PendingClaims:
        """The same for a v12 pre-auth token (and only for one)."""
        return await self._authenticate_pending(token, PRE_AUTH_AUDIENCE_SUFFIX)

    async def claim(self, claims: PendingClaims) -> bool:
        """Take a pre-verification (or v12 pre-auth) token for one second step, before
        its code is looked at: the token is denied in the database at once (an
        insert-if-absent, committed), so of several requests carrying it exactly one
        goes on, on whichever worker or node; False when it is taken or spent already
        (the caller answers ``token_revoked``, as for a used token). Before, each
        request checked its code and revoked the token after: a loser's right code
        (a recovery code, say) was used up and its revocation broke the table's key
        (500). The claimer then ``release``s the token (its code was wrong: the token
        may try again, as it always could) or makes it ``spent``."""
        async with self._db.transaction() as session:
            claimed = await self._db.revoked_tokens(session).add(
                jti=claims.token_id,
                user_id=claims.user_id,
                expires_at=claims.expires_at,
                revoked_at=self._clock(),
            )
        if claimed:
            self._denied[claims.token_id] = claims.expires_at.timestamp()
        return claimed

    @asynccontextmanager
    async def claimed(self, claims: PendingClaims) -> AsyncIterator[None]:
        """Run the block holding the token ``claim`` took for it, or raise
        ``TokenRevoked`` (``token_used``) when another request holds or spent it. When
        the block fails the token is given back (``release``, even when cancelled): its
        code was wrong or the step failed, and it may try again; but the code that locks
        the second step (``SecondFactorLocked``) spends it, and the login starts again.
        After the block the caller makes it ``spent`` (or ``mark_spent`` in the
        transaction that uses it)."""
        if not await self.claim(claims):
            raise TokenRevoked(reason=Reason.TOKEN_USED)
        try:
            yield
        except SecondFactorLocked:
            await self.spent(claims)
            raise
        except BaseException:  # an error, or cancelled: the token may be used still
            await asyncio.shield(self.release(claims))
            raise

    async def release(self, claims: PendingClaims) -> None:
        """Give back a token ``claim`` took (its code was wrong, or the step failed)."""
        async with self._db.transaction() as session:
            await self._db.revoked_tokens(session).remove(claims.token_id)
        self._denied.pop(claims.token_id, None)

    async def spent(self, claims: PendingClaims) -> None:
        """A claimed token is used up: every worker and node denies it from now on."""
        async with self._feed.unit_of_work() as work:
            self.mark_spent(work, claims)

    def mark_spent(self, work: UnitOfWork, claims: PendingClaims) -> None:
        """``spent`` from the commit of ``work`` (v12: the session the token buys is
        created in the same transaction)."""
        work.publish(Change(ChangeKind.TOKEN_REVOKED, claims.token_id))

    async def _authenticate_pending(self, token: str, audience_suffix: str) -> PendingClaims:
        now = self._clock()
        claims = self._codec.verify_pre_verification(
            token, now=now, audience_suffix=audience_suffix
        )
        if claims.token_id in self._denied:
            raise TokenRevoked(reason=Reason.TOKEN_USED)
        state = await self._users.load(claims.user_id, now=now.timestamp())
        if state is None:
            raise TokenRevoked(reason=Reason.USER_DELETED)
        _refuse_pending(claims, state.login, state.active, state.tokens_valid_after)
        return claims

    def confirm_pending(self, claims: PendingClaims, user: UserView) -> None:
        """Raise ``TokenRevoked`` as ``authenticate_pre_verification`` does unless
        ``user``, the token's user read again by the second step (``read_at`` set),
        still accepts the token. What the step issues is dated from that read: a reset,
        deactivation or "log out everywhere" committed before it is refused here, one
        committed after it ends what is issued (its ``tokens_valid_after`` is later)."""
        _refuse_pending(claims, user.login, user.activated, user.tokens_valid_after)

    async def revoke(self, *, token_id: str, user_id: int, expires_at: datetime) -> None:
        """Put one token on the deny list (every worker and node); revoking a token
        revoked already (two logouts at once) is no error."""
        async with self._feed.unit_of_work() as work:
            await self._db.revoked_tokens(work.session).add(
                jti=token_id, user_id=user_id, expires_at=expires_at, revoked_at=self._clock()
            )
            work.publish(Change(ChangeKind.TOKEN_REVOKED, token_id))
        self._denied[token_id] = expires_at.timestamp()

    async def authenticate(self, token: str) -> Principal:
        """The principal of a bearer token, or raises a ``TokenRejected`` subclass."""
        now = self._clock()
        timestamp = now.timestamp()
        cache_key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        verified = self._verified.get(cache_key, now=timestamp)
        if verified is None:
            claims = self._codec.verify(token, now=now)
            verified = _VerifiedToken(claims)
            self._verified.put(cache_key, verified, expires_at=claims.expires_at.timestamp())
        claims = verified.claims
        if claims.token_id in self._denied:
            raise TokenRevoked(reason=Reason.TOKEN_LOGGED_OUT)
        # A v12 session's revocation denies its ``sid`` (a UUID: never a 22-character jti).
        if claims.session_id is not None and claims.session_id in self._denied:
            raise TokenRevoked(reason=Reason.SESSION_REVOKED)
        state = self._users.cached(claims.user_id, now=timestamp) or await self._users.load(
            claims.user_id, now=timestamp
        )
        if state is None or state.login != claims.subject:
            raise TokenRevoked(reason=Reason.USER_DELETED)
        if not state.active:
            raise TokenRevoked(reason=Reason.USER_DEACTIVATED)
        if state.ends_token(claims.issued_at, claims.token_id):
            raise TokenRevoked(reason=Reason.SESSIONS_REVOKED)
        if verified.state is not state or verified.principal is None:
            verified.principal = Principal(
                user_id=claims.user_id,
                login=claims.subject,
                authorities=claims.authorities & state.authorities,
                method="jwt",
                credential_id=claims.token_id,
                expires_at=claims.expires_at,
                session_id=claims.session_id,
                second_factor_missing=state.has_second_factor
                and not claims.second_factor
                and not _enrolled_it(claims, state),
                issued_at=claims.issued_at,
            )
            verified.state = state
        return verified.principal

    async def logout(self, principal: Principal) -> None:
        """Revoke the token ``principal`` authenticated with."""
        if principal.method != "jwt" or principal.expires_at is None:
            raise TokenInvalid("Only a bearer token can be logged out", reason=Reason.NOT_A_TOKEN)
        await self.revoke(
            token_id=principal.credential_id,
            user_id=principal.user_id,
            expires_at=principal.expires_at,
        )
        self._audit.record(EventType.LOGOUT, "success", actor=Actor.of(principal))

    async def delete_expired_revocations(self) -> int:
        """Housekeeping: forget revocations of tokens that are refused anyway: expired
        longer ago than the leeway the codec still accepts them for (forgotten at their
        bare expiry, a logged-out token came back for the rest of the leeway, and a spent
        second-step token bought a second login: the time review)."""
        accepted_since = self._accepted_since()
        cutoff = accepted_since.timestamp()
        for jti in [jti for jti, until in self._denied.items() if until <= cutoff]:
            del self._denied[jti]
        async with self._db.transaction() as session:
            return await self._db.revoked_tokens(session).delete_expired(accepted_since)

    def _accepted_since(self) -> datetime:
        """The earliest expiry of a token the codec still accepts now."""
        return self._clock() - self._codec.leeway

    def cache_hit_ratios(self) -> dict[str, int]:
        return {
            "verified_tokens": self._verified.hit_ratio_percent(),
            "user_states": self._users.hit_ratio(),
        }

    def cache_sizes(self) -> dict[str, int]:
        return {
            "verified_tokens": len(self._verified),
            "user_states": len(self._users),
            "revoked_tokens": len(self._denied),
        }

    # -- internals ------------------------------------------------------------------------

    async def _reload_after_rewind(self) -> None:
        """The change feed went back (a restore): revocations other nodes made since are
        read from the table (the entries held here stay: refusing more is safe)."""
        self._verified.clear()
        await self.load_revocations()

    def _on_change(self, change: Change) -> None:
        if change.kind is ChangeKind.TOKEN_REVOKED:
            # The feed does not carry the token's expiry; keep the entry for the longest
            # lifetime any token can have (load_revocations uses the exact one).
            longest = max(self._token_ttl, self._remember_me_ttl) + timedelta(minutes=5)
            self._denied.setdefault(change.subject, self._timestamp() + longest.total_seconds())

    def _timestamp(self) -> float:
        return self._clock().timestamp()


def _refuse_pending(
    claims: PendingClaims, login: str, active: bool, tokens_valid_after: datetime | None
) -> None:
    """Raise ``TokenRevoked`` unless the user (as read) accepts this pending token."""
    if login != claims.subject:
        raise TokenRevoked(reason=Reason.USER_DELETED)
    if not active:
        raise TokenRevoked(reason=Reason.USER_DEACTIVATED)
    if tokens_valid_after is not None and claims.issued_at <= tokens_valid_after:
        raise TokenRevoked(reason=Reason.SESSIONS_REVOKED)


def _enrolled_it(claims: TokenClaims, state: UserAuthState) -> bool:
    """Whether this token's session enrolled the user's second factor: it proved the
    factor then (a code at the verify step), as a login's second step would have."""
    enrolled = state.second_factor_session
    return enrolled is not None and enrolled in (claims.token_id, claims.session_id)
