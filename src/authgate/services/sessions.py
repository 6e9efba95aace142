"""UTMStack v12's sessions: token pairs, refresh rotation with reuse detection, revocation.

A session is one family of refresh tokens. Its id is the ``sid`` of every access token
issued in it, so revoking the session (logout, "revoke this device", reuse detection,
the per-user cap) refuses those access tokens too, through the access-token deny list.

Refresh tokens are opaque: 32 random bytes, stored as their SHA-256 only (a fast hash
suits a high-entropy secret). Each refresh exchanges the token for a new one; the old
one is kept, marked rotated, so that presenting it again is recognised as reuse (a
stolen token used by the thief or by the victim, whoever comes second): the whole
session is revoked and the event audited. v12 only answered 401 there.

Except within the reuse interval (``AUTHGATE_REFRESH_REUSE_INTERVAL_SECONDS``, 30 s, as
Auth0's): v12's web client keeps its tokens in localStorage, shared by every tab, and
makes one tab's refreshes one, not several tabs', so two tabs refresh with the same
token at once. A token exchanged less than the interval ago is exchanged again, for a
new pair of the same session as it is now (the user and the second factor checked as
for any refresh), and the session has one more live refresh token. Which stay live:
the next exchange of a live token retires every other live token of its session (they
count as exchanged from then: presented within the interval they are exchanged, after
it they are reuse), so a session has one live token and those handed out within the
interval since, at most ``MAX_LIVE_REFRESH_TOKENS``; one more exchange in the interval
is reuse. The refreshes of one session take turns (its row is locked), so racing
requests are judged one after the other; a session ended (logout, a password change,
deactivation, ...) refuses every token, as before.

A session also ends when the user is deactivated or their tokens are revoked ("log out
everywhere", a password change): a refresh then fails, because the session started
before ``tokens_valid_after``.

A user with a second factor gets no session for the password alone: the login answers a
pre-auth token (its own audience, 5 minutes, spent by the session it buys) and
:meth:`SessionService.after_code` trades it and a code for the session, which remembers
that it passed the factor. A session that did not (started before the factor was
enabled) ends at its next refresh.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from authgate.clock import Clock
from authgate.exceptions import (
    BadCredentials,
    NotFound,
    PermissionDenied,
)
from authgate.reasons import Reason
from authgate.security.principal import Principal
from authgate.security.tokens import IssuedPending, IssuedToken, PendingClaims
from authgate.services.access_tokens import AccessTokenService
from authgate.services.accounts import AccountService
from authgate.services.audit.events import Actor, EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.changes import ChangeFeed, UnitOfWork
from authgate.services.ports import Database, SessionRepo
from authgate.services.second_factor import Method, SecondFactorService
from authgate.services.user_fields import UserView
from authgate.storage.models import RefreshToken, Session, User

# Longer refresh tokens are refused before hashing (ours are 43 characters).
MAX_REFRESH_TOKEN_LENGTH = 128
# Live (not yet exchanged) refresh tokens a session may have: the newest and those given
# to exchanges within the reuse interval (a browser's tabs). Beyond it, an exchange in the
# interval is taken for reuse: so many at once is a replay, not tabs.
MAX_LIVE_REFRESH_TOKENS = 16
# Housekeeping deletes ended sessions this many per transaction, so that a backlog
# (after a long outage, or mass revocation) never holds one long write lock.
PURGE_BATCH = 500


class AccountDeactivated(PermissionDenied):
    """v12 answers 403 to a deactivated user's correct password (after the password
    check, so it tells nothing to someone who does not know the password)."""

    code = "user_deactivated"


class SecondFactorRequired(PermissionDenied):
    """The user must enrol a second factor (``AUTHGATE_TFA_REQUIRED``) and has none; v12
    has no forced enrolment, so the v11 login takes them through it. (A session that did
    not pass the user's second factor cannot be refreshed: ``RefreshTokenInvalid`` with
    this reason.)"""

    code = "second_factor_required"


class RefreshTokenInvalid(BadCredentials):
    """Unknown, expired or revoked refresh token: one answer for all."""

    code = "invalid_refresh_token"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access: IssuedToken
    refresh_token: str
    refresh_expires_at: datetime
    user: UserView


@dataclass(frozen=True, slots=True)
class SecondStep:
    """A right password of a user with a second factor: ``pre_auth`` (and a code of
    ``method``) buy the session at ``/api/v1/auth/tfa/verify-code``."""

    method: Method
    pre_auth: IssuedPending


@dataclass(frozen=True, slots=True)
class SessionView:
    id: str
    ip: str | None
    user_agent: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Profile:
    """What v12's ``UserResponse`` shows of a user."""

    public_id: str
    email: str
    name: str
    activated: bool
    lang_key: str
    tfa_enabled: bool


def ended_by_account(user: User | None, session: Session) -> Reason | None:
    """Why the account ends a session whose row is still live, or ``None``: the user was
    deactivated (or deleted), or their tokens were revoked since the session began (a
    password change, "log out everywhere")."""
    if user is None or not user.activated:
        return Reason.USER_DEACTIVATED
    if user.tokens_valid_after is not None and session.created_at <= user.tokens_valid_after:
        return Reason.SESSIONS_REVOKED
    return None


def refresh_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class SessionService:
    def __init__(
        self,
        *,
        db: Database,
        feed: ChangeFeed,
        accounts: AccountService,
        second_factor: SecondFactorService,
        tokens: AccessTokenService,
        audit: AuditLog,
        clock: Clock,
        refresh_ttl: timedelta,
        reuse_interval: timedelta = timedelta(0),
        max_sessions: int = 10,
    ) -> None:
        self._db = db
        self._feed = feed
        self._accounts = accounts
        self._second_factor = second_factor
        self._tokens = tokens
        self._audit = audit
        self._clock = clock
        self._refresh_ttl = refresh_ttl
        self._reuse_interval = reuse_interval
        self._max_sessions = max_sessions

    async def login(
        self, login: str, password: str, *, ip: str | None, user_agent: str | None
    ) -> TokenPair | SecondStep:
        """Check the password like every login (throttles, audit) and start a session,
        or, for a user with a second factor, answer the second step (an e-mail code is
        sent as the v10/v11 login sends it; ``CodeNotSent``, 503, when it cannot be:
        v12's code page cannot ask for another)."""
        try:
            user = await self._accounts.authenticate(login, password)
        except BadCredentials as failure:
            if failure.reason is Reason.USER_DEACTIVATED:
                raise AccountDeactivated(
                    "User account is deactivated", reason=failure.reason
                ) from None
            raise
        method = await self._second_factor.login_method(user)
        if method is None:
            self._refuse_unenrolled(user)
            return await self._start(user, ip=ip, user_agent=user_agent, spent=None)
        await self._second_factor.begin_login(user)
        return SecondStep(method=method, pre_auth=self._tokens.issue_pre_auth(user))

    async def after_code(
        self, pre_auth_token: str, code: str, *, ip: str | None, user_agent: str | None
    ) -> TokenPair:
        """Trade a pre-auth token and a code (TOTP, e-mail or recovery, checked and
        counted as the v10/v11 second step does) for a session that passed the second
        factor. The token works once; the fifth wrong code in ten minutes locks the
        second step (``SecondFactorLocked``) and revokes the token: the login restarts."""
        pending = await self._tokens.authenticate_pre_auth(pre_auth_token)
        # Read anew and dated from the read (the session's ``created_at``, its access
        # token's ``iat``): a reset, password change or "log out everywhere" committed
        # before the read refuses the token here, one committed while the code is
        # checked ends the session (stamped at its creation, it outlived them).
        user = await self._accounts.dated_account(pending.user_id)
        self._tokens.confirm_pending(pending, user)
        # Claimed before the code is checked: of requests carrying one token, one goes on
        # (a loser's code is not used up); a wrong code gives the token back, and so
        # does a failure to store the session (the token may buy one still). The
        # session's transaction spends it.
        async with self._tokens.claimed(pending):
            await self._second_factor.check_login_code(user, code)
            return await self._start(user, ip=ip, user_agent=user_agent, spent=pending)

    async def _start(
        self,
        user: UserView,
        *,
        ip: str | None,
        user_agent: str | None,
        spent: PendingClaims | None,
    ) -> TokenPair:
        """A new session (passed the second factor when it spends a pre-auth token, which
        the caller has claimed). Past the per-user cap, the oldest sessions are revoked."""
        now = self._clock()
        session_id = str(uuid.uuid4())
        refresh_token = secrets.token_urlsafe(32)
        expires_at = now + self._refresh_ttl
        async with self._feed.unit_of_work() as work:
            if spent is not None:  # claimed by the caller; denied everywhere from the commit
                self._tokens.mark_spent(work, spent)
            sessions = self._db.user_sessions(work.session)
            live = list(await sessions.live(user.id, now=now))
            evicted = live[: max(0, len(live) - self._max_sessions + 1)]
            await self._revoke(work, user.id, evicted, reason=Reason.SESSION_CAP)
            sessions.add(
                Session(
                    id=session_id,
                    user_id=user.id,
                    ip=ip,
                    user_agent=(user_agent or None) and user_agent[:512],
                    created_at=user.credentials_as_of(now),
                    last_used_at=now,
                    expires_at=expires_at,
                    second_factor=spent is not None,
                )
            )
            await work.session.flush()
            sessions.add_token(
                token_hash=refresh_token_hash(refresh_token), session_id=session_id, now=now
            )
        actor = Actor(login=user.login, user_id=user.id)
        for old in evicted:
            self._record_revoked(actor, old.id, Reason.SESSION_CAP)
        return TokenPair(
            access=self._tokens.issue_for_session(
                user, session_id=session_id, second_factor=spent is not None
            ),
            refresh_token=refresh_token,
            refresh_expires_at=expires_at,
            user=user,
        )

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Exchange a refresh token for a new pair. Raises ``RefreshTokenInvalid`` (401),
        also for a session that did not pass a second factor enabled since (the session
        ends); on reuse of a rotated token (past the reuse interval) the whole session is
        revoked first (and audited)."""
        if not refresh_token or len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
            raise RefreshTokenInvalid(reason=Reason.MALFORMED_REFRESH_TOKEN)
        token_hash = refresh_token_hash(refresh_token)
        now = self._clock()
        new_token = secrets.token_urlsafe(32)
        refused: Reason | None = None
        async with self._feed.unit_of_work() as work:
            sessions = self._db.user_sessions(work.session)
            found = await sessions.locked_token(token_hash)
            if found is None:
                raise RefreshTokenInvalid(reason=Reason.UNKNOWN_REFRESH_TOKEN)
            stored, session = found
            user = await sessions.user(session.user_id)
            if session.revoked_at is not None or session.expires_at <= now:
                raise RefreshTokenInvalid(reason=Reason.SESSION_ENDED)
            ended = ended_by_account(user, session)
            refused = ended or await self._exchange(sessions, stored, now=now)
            if ended is not None:
                # The account ended the session's access tokens already (the user's
                # state, or ``tokens_valid_after``): the row ends too, but its ``sid`` is
                # not denied, which would also end the one token a password change
                # keeps for the caller who made it (v12 keeps it until it expires).
                self._mark_revoked([session], reason=ended)
            elif refused is not None:
                await self._revoke(work, session.user_id, [session], reason=refused)
            else:
                session.last_used_at = now
                sessions.add_token(
                    token_hash=refresh_token_hash(new_token), session_id=session.id, now=now
                )
                # Dated from before the read of the user (``now``): the access token
                # is issued after the commit (and a look at the second factor), and a
                # reset committed meanwhile must end it (``iat`` at issue outlived it).
                view = UserView.of(user, read_at=now)  # type: ignore[arg-type]  # not None
        actor = Actor(login=user.login if user else None, user_id=session.user_id)
        if refused is Reason.REFRESH_TOKEN_REUSED:
            self._audit.record(
                EventType.REFRESH_TOKEN_REUSED,
                "failure",
                actor=actor,
                reason=refused,
                details={"session": session.id},
            )
        if refused is not None:
            self._record_revoked(actor, session.id, refused)
            raise RefreshTokenInvalid(reason=refused)
        method = await self._second_factor.login_method(view)
        factor_refusal = self._second_factor_refusal(view, method, passed=session.second_factor)
        if factor_refusal is not None:
            # A factor enabled (or required) since the login: the session ends.
            async with self._feed.unit_of_work() as work:
                stored_session = await self._db.user_sessions(work.session).get(session.id)
                if stored_session is not None:
                    await self._revoke(work, view.id, [stored_session], reason=Reason.SECOND_FACTOR)
            # A refresh token that no longer refreshes is 401 whatever the cause (v12's
            # spec; clients then sign in again), with the refusal's words and reason.
            raise RefreshTokenInvalid(factor_refusal.message, reason=factor_refusal.reason)
        return TokenPair(
            access=self._tokens.issue_for_session(
                view, session_id=session.id, second_factor=session.second_factor
            ),
            refresh_token=new_token,
            refresh_expires_at=session.expires_at,
            user=view,
        )

    async def _exchange(
        self, sessions: SessionRepo, stored: RefreshToken, *, now: datetime
    ) -> Reason | None:
        """Exchange ``stored``, its session locked: ``None`` when it may be, else why not.
        A live token retires itself and every other live token of its session; one
        exchanged less than the reuse interval ago (another tab refreshing with it) is
        exchanged again while the session has fewer than ``MAX_LIVE_REFRESH_TOKENS``
        live ones; anything else is reuse."""
        if stored.rotated_at is None:
            await sessions.retire_live(stored.session_id, now=now)
            return None
        # ``now`` may be before ``rotated_at``: read before this waited for that exchange.
        if (
            self._reuse_interval > timedelta(0)
            and now - stored.rotated_at < self._reuse_interval
            and await sessions.live_tokens(stored.session_id) < MAX_LIVE_REFRESH_TOKENS
        ):
            return None
        return Reason.REFRESH_TOKEN_REUSED

    async def logout(self, refresh_token: str) -> None:
        """End the refresh token's session; nothing happens (and nothing is said) for an
        unknown token."""
        if not refresh_token or len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
            return
        async with self._feed.unit_of_work() as work:
            sessions = self._db.user_sessions(work.session)
            stored = await sessions.token(refresh_token_hash(refresh_token))
            session = await sessions.get(stored.session_id) if stored is not None else None
            if session is None or session.revoked_at is not None:
                return
            user = await sessions.user(session.user_id)
            await self._revoke(work, session.user_id, [session], reason=Reason.LOGOUT)
        actor = Actor(login=user.login if user else None, user_id=session.user_id)
        self._audit.record(
            EventType.LOGOUT, "success", actor=actor, details={"session": session.id}
        )

    async def logout_access_token(self, principal: Principal) -> None:
        """``/api/logout`` (v10/v11): revoke the token used and, for a v12 token (one
        with a ``sid``), end its session as v12's logout does, or its refresh token
        would go on issuing access tokens."""
        await self._tokens.logout(principal)  # refuses anything but a token, first
        if principal.session_id is None:
            return
        async with self._feed.unit_of_work() as work:
            session = await self._db.user_sessions(work.session).get(principal.session_id)
            if (
                session is not None
                and session.user_id == principal.user_id
                and session.revoked_at is None
            ):
                await self._revoke(work, principal.user_id, [session], reason=Reason.LOGOUT)

    async def profile(self, user_id: int) -> Profile:
        async with self._db.session() as read:
            user = await self._db.user_sessions(read).user(user_id)
        if user is None:  # deleted since its token was checked
            raise BadCredentials("User not found", reason=Reason.USER_DELETED)
        return Profile(
            public_id=user.public_id,
            email=user.email,
            name=" ".join(part for part in (user.first_name, user.last_name) if part),
            activated=user.activated,
            lang_key=user.lang_key,
            tfa_enabled=user.second_factor is not None,
        )

    async def list_live(self, user_id: int) -> list[SessionView]:
        """The user's sessions that a refresh would accept. A password change, "log out
        everywhere", deactivation or a newly enabled second factor ends sessions without
        marking their rows (a refresh finds out), so the rows are judged here by the
        same checks as :meth:`refresh`: the list never shows a session that is over."""
        now = self._clock()
        async with self._db.session() as read:
            sessions = self._db.user_sessions(read)
            user = await sessions.user(user_id)
            live = await sessions.live(user_id, now=now)
        if user is None:
            return []
        view = UserView.of(user)
        method = await self._second_factor.login_method(view)
        return [
            SessionView(
                id=s.id,
                ip=s.ip,
                user_agent=s.user_agent,
                created_at=s.created_at,
                last_used_at=s.last_used_at,
                expires_at=s.expires_at,
            )
            for s in live
            if ended_by_account(user, s) is None
            and self._second_factor_refusal(view, method, passed=s.second_factor) is None
        ]

    async def revoke(self, user_id: int, session_id: str, *, actor: Actor) -> None:
        """Revoke one of the user's live sessions; ``NotFound`` for any other id (someone
        else's session looks exactly like a session that does not exist)."""
        try:  # ids are UUIDs: anything else (a NUL, which PostgreSQL refuses) is no session
            session_id = str(uuid.UUID(session_id))
        except ValueError:
            raise NotFound("Session not found", reason=Reason.SESSION_NOT_FOUND) from None
        async with self._feed.unit_of_work() as work:
            session = await self._db.user_sessions(work.session).get(session_id)
            if (
                session is None
                or session.user_id != user_id
                or session.revoked_at is not None
                or session.expires_at <= self._clock()
            ):
                raise NotFound("Session not found", reason=Reason.SESSION_NOT_FOUND)
            await self._revoke(work, user_id, [session], reason=Reason.REVOKED_BY_USER)
        self._record_revoked(actor, session_id, Reason.REVOKED_BY_USER)

    async def revoke_others(self, user_id: int, *, keep: str | None, actor: Actor) -> int:
        """Revoke every live session of the user except ``keep`` (the caller's)."""
        now = self._clock()
        async with self._feed.unit_of_work() as work:
            live = await self._db.user_sessions(work.session).live(user_id, now=now)
            others = [s for s in live if s.id != keep]
            await self._revoke(work, user_id, others, reason=Reason.REVOKED_BY_USER)
        if others:
            self._audit.record(
                EventType.SESSION_REVOKED,
                "success",
                actor=actor,
                reason=Reason.REVOKED_BY_USER,
                details={"sessions": len(others)},
            )
        return len(others)

    async def purge_ended(self, *, batch: int = PURGE_BATCH) -> int:
        """Housekeeping: delete expired and revoked sessions with their refresh tokens,
        ``batch`` sessions per transaction. Nothing is lost by it: a refresh token of a
        deleted session is refused as unknown, exactly as one of an ended session, and
        the access tokens of a revoked session stay refused through the deny list,
        which keeps its own entries until those tokens expire."""
        purged = 0
        while True:
            async with self._db.transaction() as work:
                deleted = await self._db.user_sessions(work).delete_ended(
                    now=self._clock(), limit=batch
                )
            purged += deleted
            if deleted < batch:
                return purged

    async def mark_second_factor(self, user_id: int, session_id: str) -> None:
        """The user just enabled a second factor from this session, proving a code of
        it: the session counts as having passed it (its next refresh carries ``otp``)."""
        async with self._db.transaction() as write:
            session = await self._db.user_sessions(write).get(session_id)
            if session is not None and session.user_id == user_id:
                session.second_factor = True

    def _refuse_unenrolled(self, user: UserView) -> None:
        refusal = self._second_factor_refusal(user, None, passed=False)
        if refusal is not None:
            raise refusal

    def _second_factor_refusal(
        self, user: UserView, method: Method | None, *, passed: bool
    ) -> SecondFactorRequired | None:
        """Why a session that did (``passed``) or did not pass the second factor may not
        go on, given the user's ``login_method``; ``None`` when it may."""
        if method is None:
            if not self._second_factor.required_for(user):
                return None
            return SecondFactorRequired(
                "A second factor is required and none is enabled; sign in through "
                "/api/authenticate to enrol one",
                reason=Reason.SECOND_FACTOR_REQUIRED,
            )
        if passed:
            return None
        return SecondFactorRequired(
            "A second factor was enabled since this session began; sign in again",
            reason=Reason.SECOND_FACTOR_REQUIRED,
        )

    async def _revoke(
        self, work: UnitOfWork, user_id: int, sessions: list[Session], *, reason: Reason
    ) -> None:
        self._mark_revoked(sessions, reason=reason)
        if sessions:
            await self._tokens.deny_sessions(
                work, user_id=user_id, session_ids=[s.id for s in sessions]
            )

    def _mark_revoked(self, sessions: list[Session], *, reason: Reason) -> None:
        now = self._clock()
        for session in sessions:
            session.revoked_at = now
            session.revoked_reason = reason

    def _record_revoked(self, actor: Actor, session_id: str, reason: Reason) -> None:
        """The audit event of one session revoked (by the cap, a refused refresh or its
        user)."""
        self._audit.record(
            EventType.SESSION_REVOKED,
            "success",
            actor=actor,
            reason=reason,
            details={"session": session_id},
        )
