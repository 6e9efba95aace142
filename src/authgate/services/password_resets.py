"""Password recovery (UTMStack's ``/api/account/reset-password/init`` and ``/finish``)
and the delivery of reset links.

Asking for a link never tells whether an address has an account: the answer is the
same, and the work that depends on the answer (looking the user up, storing a key,
sending mail) runs after the response, in the background, so not even its timing
tells. Requests are limited per e-mail address, per account and per client address
(:class:`ResetLimits`); over a limit nothing is sent and the refusal is audited. The
client's limit, which depends on nothing but the client, is counted before the answer,
so a refused request leaves no work behind; at most ``ResetLimits.pending`` accepted
requests wait for the background, and one more is dropped (same answer), logged and
counted (:attr:`PasswordResets.dropped`): a flood cannot build an unbounded backlog.
Without an SMTP server nothing can be sent; an admin then hands the link over
(``authgate users reset-link``, the Settings UI).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from authgate.clock import Clock
from authgate.exceptions import FieldError, ValidationFailed
from authgate.reasons import Reason
from authgate.security.networks import throttle_network
from authgate.security.passwords import PasswordPolicy
from authgate.services.audit.events import Actor, EventType, current_request, printable
from authgate.services.audit.writer import AuditLog
from authgate.services.changes import Change, ChangeFeed, ChangeKind
from authgate.services.mail import Mailer, MailNotSent
from authgate.services.password_hashing import AsyncPasswordHasher
from authgate.services.ports import Database
from authgate.services.reset_keys import IssuedResetKey, issue_reset_key, reset_key_digest
from authgate.services.throttle_store import ThrottleStore
from authgate.services.user_fields import EMAIL_MAX_LENGTH, UserView, email_errors
from authgate.storage.models import User
from authgate.storage.text import storable_text

log = logging.getLogger(__name__)

RESET_KEY_MAX_LENGTH = 128


class ResetKeyInvalid(ValidationFailed):
    """Unknown, already used or replaced reset key (400)."""

    code = "reset_key_invalid"


class ResetKeyExpired(ValidationFailed):
    """A reset key older than 24 hours (400)."""

    code = "reset_key_expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetLimits:
    """Reset links asked for within ``window`` seconds, at most, per e-mail address
    (lower-cased), per account and per client address. The client's limit is checked
    first; a body that is no e-mail address is counted nowhere. ``pending``: requests
    that may wait for the background work at once (it runs one at a time), beyond
    which a request is dropped."""

    per_address: int = 3
    per_account: int = 3
    per_client: int = 20
    window: int = 3600
    pending: int = 100


# At most one log line per this many seconds about dropped requests: a flood must not
# become a flood of log lines.
DROPPED_LOG_INTERVAL = 60.0


class PasswordResets:
    def __init__(
        self,
        *,
        db: Database,
        feed: ChangeFeed,
        hasher: AsyncPasswordHasher,
        policy: PasswordPolicy,
        clock: Clock,
        audit: AuditLog,
        throttle: ThrottleStore,
        mailer: Mailer,
        reset_page: str,
        limits: ResetLimits | None = None,
    ) -> None:
        self._db = db
        self._feed = feed
        self._hasher = hasher
        self._policy = policy
        self._clock = clock
        self._audit = audit
        self._throttle = throttle
        self._mailer = mailer
        self._reset_page = reset_page
        self._limits = limits or ResetLimits()
        self._pending: set[asyncio.Task[None]] = set()
        self._serial = asyncio.Lock()
        self._dropped = 0
        self._dropped_logged = 0  # the count the last log line reported
        self._dropped_logged_at: float | None = None

    @property
    def mail_configured(self) -> bool:
        return self._mailer.configured

    def link(self, issued: IssuedResetKey) -> str:
        return issued.link(self._reset_page)

    @property
    def pending(self) -> int:
        """Requests whose background work has not finished."""
        return len(self._pending)

    @property
    def dropped(self) -> int:
        """Requests dropped since start-up because ``ResetLimits.pending`` were waiting."""
        return self._dropped

    async def request(self, email: str) -> None:
        """Ask for a reset link for the account with this e-mail address. Returns as
        soon as the client's limit is counted, whatever the address: what depends on
        the address happens in the background (see the module docstring), and
        :meth:`settle` waits for it (tests, shutdown)."""
        address = email.strip().lower()
        shown = printable(address[:EMAIL_MAX_LENGTH]) or address[:EMAIL_MAX_LENGTH]
        actor = Actor(login=shown)
        if email_errors(address) or not storable_text(address):
            # No account has this address, and no counter is made for it: a counter per
            # distinct body would let anyone fill the throttle store.
            self._refused(actor, Reason.UNKNOWN_EMAIL)
            return
        # The client's limit first, before the answer: it depends on the client alone,
        # never on the address, so its timing tells nothing; over it, nothing more is
        # counted (a client cannot make counters for addresses of its choosing beyond
        # its own budget) and no background work is left behind.
        request = current_request.get()
        client = request.client_ip if request is not None else None
        # Per IPv6 /64, as logins: new addresses within one's own /64 are no new client.
        if client is not None and await self._over(
            "reset:client:" + throttle_network(client), self._limits.per_client
        ):
            self._refused(actor, Reason.THROTTLED)
            return
        if len(self._pending) >= self._limits.pending:
            self._drop()
            return
        task = asyncio.create_task(self._request(address, shown), name="authgate-password-reset")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        """Wait for the background work of every request made so far."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def deliver(
        self, user: UserView, issued: IssuedResetKey, *, invitation: bool = False
    ) -> bool:
        """Mail the reset link to the user (with ``invitation``, as an invitation to a
        new account); False when no SMTP server is configured or it failed (the caller
        then shows the link to the admin). Never a password."""
        if not self._mailer.configured:
            return False
        link = self.link(issued)
        try:
            await self._mailer.send_text(
                to=user.email,
                subject="authgate: you are invited"
                if invitation
                else "authgate: set your password",
                body=(
                    _invitation_body(user.login, link, issued.expires_at - self._clock())
                    if invitation
                    else _mail_body(user.login, link)
                ),
                sent_at=self._clock(),
            )
        except (MailNotSent, ValueError) as error:
            log.warning("reset link for %s not mailed: %s", printable(user.login), error)
            return False
        return True

    async def check(self, key: str) -> None:
        """Raise what :meth:`finish` would for ``key`` (``ResetKeyInvalid``,
        ``ResetKeyExpired``), without using it: a used or expired link is said to be so
        when it is opened, before its user types a new password twice."""
        digest = _digest_of(key)
        async with self._db.session() as session:
            user = await self._db.users(session).by_reset_key(digest) if digest else None
        self._usable(user)

    async def finish(self, key: str, new_password: str) -> UserView:
        """Set the password of the user the key belongs to; the key is used up, a user
        created without a password is activated, and every token of the user revoked.

        Raises ``ResetKeyInvalid`` (unknown, used or replaced key), ``ResetKeyExpired``,
        or ``ValidationFailed`` when the password breaks the policy (the key stays).
        """
        digest = _digest_of(key)
        async with self._db.session() as session:
            user = await self._db.users(session).by_reset_key(digest) if digest else None
        self._usable(user)
        assert user is not None
        self._policy.check(new_password, login=user.login, email=user.email, field="newPassword")
        password_hash = await self._hasher.hash(new_password)
        async with self._feed.unit_of_work() as work:
            users = self._db.users(work.session)
            found = await users.by_reset_key(digest)
            # Read again with the row locked: of two uses at once (two nodes) the second
            # sees the first's, and an admin's deactivation meanwhile has ended the link.
            stored = await users.locked(found.id) if found is not None else None
            if stored is not None and stored.reset_key_hash != digest:
                stored = None  # used, or replaced by a new link, meanwhile
            self._usable(stored)
            assert stored is not None
            now = self._clock()
            stored.password_hash = password_hash
            stored.password_changed_at = now
            stored.tokens_valid_after = now
            stored.kept_session_jti = stored.kept_session_cutoff = None
            stored.password_change_required = False  # the user chose this one
            stored.initial_password = False
            stored.reset_key_hash = None
            stored.reset_key_expires_at = None
            activated = bool(stored.activation_pending)
            if activated:
                stored.activated = True
                stored.activation_pending = False
            stored.updated_at = now
            stored.last_modified_by = stored.login
            work.publish(Change(ChangeKind.USER_CHANGED, str(stored.id)))
            view = UserView.of(stored)
        details: dict[str, object] = {"user": view.login, "via": "reset_key"}
        if activated:
            details["activated"] = True
        self._audit.record(
            EventType.PASSWORD_RESET,
            "success",
            actor=Actor(login=view.login, user_id=view.id),
            details=details,
        )
        return view

    def _usable(self, user: User | None) -> None:
        # A deactivated user's link sets nothing (one waiting for its first activation is
        # activated by it); deactivating ends the link anyway, this is the second lock.
        if (
            user is None
            or user.reset_key_expires_at is None
            or not (user.activated or user.activation_pending)
        ):
            raise ResetKeyInvalid(
                "This reset link is invalid or has already been used; ask for a new one.",
                field_errors=[FieldError("key", "Invalid or already used reset key.")],
            )
        if user.reset_key_expires_at <= self._clock():
            raise ResetKeyExpired(
                "This link has expired; ask for a new one.",
                field_errors=[FieldError("key", "Expired reset key.")],
            )

    def _drop(self) -> None:
        # Not audited one by one: a record per dropped request would be the backlog
        # again, in the audit writer. A log line at most once per interval, and a count.
        self._dropped += 1
        now = self._clock().timestamp()
        last = self._dropped_logged_at
        if last is None or now - last >= DROPPED_LOG_INTERVAL:
            log.warning(
                "password reset requests dropped: %d were waiting already (%d dropped "
                "since the last report, %d since start-up)",
                self._limits.pending,
                self._dropped - self._dropped_logged,
                self._dropped,
            )
            self._dropped_logged, self._dropped_logged_at = self._dropped, now

    async def _request(self, address: str, shown: str) -> None:
        try:
            # One at a time: requests are rare, and counting them must not race.
            async with self._serial:
                await self._request_for(address, shown)
        except Exception:  # a background task: log, never lose the loop
            log.exception("password reset request failed")

    async def _request_for(self, address: str, shown: str) -> None:
        actor = Actor(login=shown)
        if await self._over("reset:address:" + _address_digest(address), self._limits.per_address):
            self._refused(actor, Reason.THROTTLED)
            return
        async with self._db.session() as session:
            user = await self._db.users(session).by_email(address)
        if user is None:
            self._refused(actor, Reason.UNKNOWN_EMAIL)
            return
        actor = Actor(login=user.login, user_id=user.id)
        if not (user.activated or user.activation_pending):
            self._refused(actor, Reason.USER_DEACTIVATED)
            return
        if await self._over(f"reset:account:{user.id}", self._limits.per_account):
            self._refused(actor, Reason.THROTTLED)
            return
        if not self._mailer.configured:
            self._refused(actor, Reason.MAIL_NOT_CONFIGURED)
            return
        issued = issue_reset_key(self._clock())
        async with self._feed.unit_of_work() as work:
            stored = await self._db.users(work.session).get(user.id)
            if stored is None:
                return
            stored.reset_key_hash = issued.digest
            stored.reset_key_expires_at = issued.expires_at
            view = UserView.of(stored)
        mailed = await self.deliver(view, issued)
        self._audit.record(
            EventType.PASSWORD_RESET_REQUESTED,
            "success" if mailed else "failure",
            actor=actor,
            reason=None if mailed else Reason.MAIL_FAILED,
            details={"user": view.login, "delivery": "email"},
        )

    async def _over(self, subject: str, limit: int) -> bool:
        count = await self._throttle.add_failure(
            subject, window=self._limits.window, now=self._clock().timestamp()
        )
        return count > limit

    def _refused(self, actor: Actor, reason: Reason) -> None:
        self._audit.record(
            EventType.PASSWORD_RESET_REQUESTED, "failure", actor=actor, reason=reason
        )


def _address_digest(address: str) -> str:
    """The per-address counter's name for ``address`` (normalised): a digest, so the
    throttle store's keys hold no e-mail addresses."""
    return hashlib.sha256(address.encode()).hexdigest()


def _digest_of(key: str) -> str:
    key = key.strip()
    if not key or len(key) > RESET_KEY_MAX_LENGTH or not storable_text(key):
        return ""
    return reset_key_digest(key)


def _mail_body(login: str, link: str) -> str:
    return (
        f"Hello {login},\n\n"
        "Someone (hopefully you or your administrator) asked for a link to set the "
        "password of your authgate account. Open it within 24 hours:\n\n"
        f"{link}\n\n"
        "The link works once. If you did not ask for it, ignore this message: your "
        "password stays as it is.\n"
    )


def _invitation_body(login: str, link: str, valid_for: timedelta) -> str:
    days = max(1, round(valid_for / timedelta(days=1)))
    return (
        f"Hello {login},\n\n"
        "An administrator created an authgate account for you. Open this link within "
        f"{days} day{'s' if days != 1 else ''} to choose your password:\n\n"
        f"{link}\n\n"
        "The link works once. If you did not expect this, ignore this message.\n"
    )
