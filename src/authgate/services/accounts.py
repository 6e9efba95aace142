"""A user's own account: logging in, changing the password, logging out everywhere."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from authgate.clock import Clock
from authgate.exceptions import (
    BadCredentials,
    Conflict,
    FieldError,
    NotFound,
    Throttled,
    ValidationFailed,
)
from authgate.reasons import Reason
from authgate.security.passwords import PasswordPolicy, rehash_allowed
from authgate.services.audit.events import Actor, EventType, current_request, printable
from authgate.services.audit.writer import AuditLog
from authgate.services.changes import Change, ChangeFeed, ChangeKind
from authgate.services.login_protection import LoginProtection
from authgate.services.owner_keys import audit_owner_keys, revoke_owner_keys
from authgate.services.password_hashing import AsyncPasswordHasher
from authgate.services.ports import Database, UserColumns
from authgate.services.reset_keys import cancel_reset_link
from authgate.services.user_fields import UserView
from authgate.storage.models import User

Checked = TypeVar("Checked", bound=UserColumns)


class AccountService:
    def __init__(
        self,
        *,
        db: Database,
        feed: ChangeFeed,
        hasher: AsyncPasswordHasher,
        policy: PasswordPolicy,
        clock: Clock,
        audit: AuditLog,
        protection: LoginProtection,
    ) -> None:
        self._db = db
        self._feed = feed
        self._hasher = hasher
        self._policy = policy
        self._clock = clock
        self._audit = audit
        self._protection = protection

    def close(self) -> None:
        """Stop the password-hashing threads."""
        self._hasher.close()

    async def authenticate(self, username: str, password: str) -> UserView:
        """The active user with this login or e-mail and password.

        Raises ``BadCredentials`` for an unknown user, a wrong password and a
        deactivated user alike, after the same amount of work, so neither the answer
        nor its timing tells which accounts exist; ``Throttled`` (or ``ClientBlocked``)
        when brute-force protection refuses to evaluate the attempt. Every outcome is
        audited.
        """
        identifier = username.strip().lower()[:254]
        read_at = self._clock()
        user = await self._db.login_row(identifier)
        # Counters are keyed by the name as typed, for real and unknown users alike:
        # keying a real user by its login would link an e-mail to its login (failures
        # as the e-mail throttling the login reveals that the account exists). The
        # cost is that the e-mail and the login of one account count separately.
        # Control characters (which no login or e-mail holds, and which PostgreSQL
        # refuses in a counter's key when NUL) are replaced.
        account = printable(identifier) or identifier
        actor = Actor(
            login=user.login if user is not None else identifier,
            user_id=user.id if user is not None else None,
        )
        verified = await self._checked(
            account, actor, lambda known: self._verify(user, password, known_address=known)
        )
        current = await self._db.login_row(identifier)
        if current is None or not _unchanged(verified, current):
            # A reset, a deactivation or "log out everywhere" committed while the password
            # was hashed (queued up to seconds under load): the password checked may no
            # longer be the account's. Dating the token from the first read refuses it
            # only when that read came before the change was stamped (the diff review).
            reason = Reason.PASSWORD_CHANGED_MEANWHILE
            self._audit.record(EventType.AUTH_FAILURE, "failure", actor=actor, reason=reason)
            raise BadCredentials(reason=reason)
        self._audit.record(EventType.AUTH_SUCCESS, "success", actor=actor)
        stored_hash = verified.password_hash
        if self._hasher.needs_rehash(stored_hash) and rehash_allowed(stored_hash, password):
            await self._rehash(verified, password)
        # As read after the hash (its second factor too: one enabled meanwhile is asked
        # for), dated from the first read.
        return UserView.of(current, read_at=read_at)

    async def _checked(
        self, account: str, actor: Actor, verify: Callable[[bool], Awaitable[Checked]]
    ) -> Checked:
        """``verify()`` under brute-force protection, as a login of ``account`` from the
        current request's address: refused unevaluated while throttled, a failure
        counted and audited (``AUTH_FAILURE``) like a failed login, a success clearing
        the pair and making the address known. Every place that checks a password
        goes through here. ``verify`` is told whether the address is known to the
        account (its hash may then use the queue's places kept for such checks)."""
        request = current_request.get()
        client_ip = request.client_ip if request else None
        try:
            async with self._protection.evaluation(client_ip):
                attempt = await self._protection.check(account, client_ip)
                try:
                    verified = await verify(attempt.from_known_address)
                except BadCredentials as failure:
                    await self._protection.failed(attempt)
                    self._audit.record(
                        EventType.AUTH_FAILURE, "failure", actor=actor, reason=failure.reason
                    )
                    raise
                except BaseException:
                    # Neither a failure nor a success (the hash refused as overloaded,
                    # an error): its place among the account's evaluations is given back.
                    self._protection.release(attempt)
                    raise
                await self._protection.succeeded(attempt)
                return verified
        except Throttled as refusal:
            self._audit.record(
                EventType.AUTH_FAILURE, "failure", actor=actor, reason=refusal.reason
            )
            raise

    async def _verify(
        self, user: UserColumns | None, password: str, *, known_address: bool
    ) -> UserColumns:
        # Whether the address is known depends on the name as typed and the address
        # alone (a mark only a success makes), never on whether the account exists: an
        # unknown user is hashed in the same part of the queue as a real one would be.
        if user is None:
            await self._hasher.spend_equal_time(password, known_address=known_address)
            raise BadCredentials(reason=Reason.UNKNOWN_USER)
        await self._hasher.verify(user.password_hash, password, known_address=known_address)
        if not user.activated:
            raise BadCredentials(reason=Reason.USER_DEACTIVATED)
        return user

    async def check_password(self, user_id: int, password: str) -> bool:
        """Whether ``password`` is the user's, checked like a login of the account
        (throttled, a wrong one counted and audited as a failed login). Raises
        ``Throttled``/``ClientBlocked`` while refused."""
        user = await self._stored(user_id)

        async def verify(known: bool) -> User:
            await self._hasher.verify(user.password_hash, password, known_address=known)
            return user

        try:
            await self._checked(user.login, Actor(login=user.login, user_id=user_id), verify)
        except BadCredentials:
            return False
        return True

    async def account(self, user_id: int) -> UserView:
        return UserView.of(await self._stored(user_id))

    async def dated_account(self, user_id: int) -> UserView:
        """``account`` dated from this read (``read_at``): what is issued on it (a login's
        second step) is no later than the state it rests on was read, so a reset, a
        deactivation or "log out everywhere" committing after the read ends it too."""
        read_at = self._clock()
        return UserView.of(await self._stored(user_id), read_at=read_at)

    async def change_password(
        self,
        user_id: int,
        *,
        current_password: str,
        new_password: str,
        keep_token_id: str | None = None,
    ) -> None:
        """Change the caller's password; every token of theirs stops working except the
        one with id ``keep_token_id`` (the session that made the change, as GitHub and
        Google do: UTMStack's UI keeps using its token after a change).

        The current password is checked like a login of the account from the caller's
        address (same counters, throttles and audit), so a stolen token is no way to
        guess the password: a wrong one counts as a failed login, and while throttled
        the password is not even looked at (429/423).
        """
        user = await self._stored(user_id)
        await self._confirm(user, current_password, field="currentPassword")
        self._policy.check(new_password, login=user.login, email=user.email, field="newPassword")
        if new_password == current_password:
            message = "New password must differ from the current one."
            raise ValidationFailed(message, field_errors=[FieldError("newPassword", message)])
        password_hash = await self._hasher.hash(new_password)
        async with self._feed.unit_of_work() as work:
            stored = await self._db.users(work.session).locked(user_id)
            if stored is None:
                raise NotFound("User not found", reason=Reason.USER_NOT_FOUND)
            if stored.tokens_valid_after != user.tokens_valid_after:
                # Changed while this one was hashing (another session's change, an
                # admin's reset: each stamps tokens_valid_after; a login's upgrade of the
                # hash does not): the password checked may no longer be the current
                # one, and the last change must not silently undo the first.
                raise Conflict(
                    "The password was changed meanwhile; sign in with the new one.",
                    reason=Reason.PASSWORD_CHANGED_MEANWHILE,
                )
            now = self._clock()
            stored.password_hash = password_hash
            stored.password_changed_at = now
            stored.password_change_required = False
            stored.tokens_valid_after = now
            stored.kept_session_jti = keep_token_id
            stored.kept_session_cutoff = now if keep_token_id is not None else None
            stored.initial_password = False
            cancel_reset_link(stored)
            stored.updated_at = now
            stored.last_modified_by = user.login
            work.publish(Change(ChangeKind.USER_CHANGED, str(user_id)))
        self._audit.record(
            EventType.PASSWORD_CHANGED, "success", actor=Actor(login=user.login, user_id=user_id)
        )

    async def confirm_password(self, user_id: int, password: str) -> UserView:
        """Check the caller's password before a sensitive change (turning off the second
        factor): counted, throttled and audited like a login; a wrong one is a 400 on
        ``password``, since the caller's token is fine."""
        user = await self._stored(user_id)
        await self._confirm(user, password, field="password")
        return UserView.of(user)

    async def _stored(self, user_id: int) -> User:
        """The user's row, read on its own; ``NotFound`` when there is none."""
        async with self._db.session() as session:
            user = await self._db.users(session).get(user_id)
        if user is None:
            raise NotFound("User not found", reason=Reason.USER_NOT_FOUND)
        return user

    async def _confirm(self, user: User, password: str, *, field: str) -> None:
        actor = Actor(login=user.login, user_id=user.id)

        async def verify_current(known: bool) -> User:
            try:
                await self._hasher.verify(user.password_hash, password, known_address=known)
            except BadCredentials as failure:
                if failure.reason is Reason.WRONG_PASSWORD:
                    failure.reason = Reason.WRONG_CURRENT_PASSWORD
                raise
            return user

        try:
            await self._checked(user.login, actor, verify_current)
        except BadCredentials:
            if field == "currentPassword":
                self._audit.record(
                    EventType.PASSWORD_CHANGED,
                    "failure",
                    actor=actor,
                    reason=Reason.WRONG_CURRENT_PASSWORD,
                )
            # 400, not 401: the caller's token is fine, only this field is wrong. UTMStack's
            # getting-started dialog looks for "Incorrect password" in the error's detail.
            message = "Incorrect password: the current password does not match."
            raise ValidationFailed(
                message,
                field_errors=[FieldError(field, message)],
                reason=Reason.WRONG_CURRENT_PASSWORD,
            ) from None

    async def log_out_everywhere(self, user_id: int, *, revoke_api_keys: bool = False) -> None:
        """Revoke every token issued to the user until now, and with ``revoke_api_keys``
        every API key of theirs too (same transaction, every worker and node)."""
        async with self._feed.unit_of_work() as work:
            # Locked, as a key creation locks it: a key stored meanwhile is revoked too.
            user = await self._db.users(work.session).locked(user_id)
            if user is None:
                raise NotFound("User not found", reason=Reason.USER_NOT_FOUND)
            now = self._clock()
            user.tokens_valid_after = now
            user.kept_session_jti = user.kept_session_cutoff = None
            revoked = (
                await revoke_owner_keys(work, self._db.api_keys(work.session), user_id, now=now)
                if revoke_api_keys
                else []
            )
            work.publish(Change(ChangeKind.USER_CHANGED, str(user_id)))
        details: dict[str, object] | None = (
            {"revokedApiKeys": len(revoked)} if revoke_api_keys else None
        )
        self._audit.record(
            EventType.LOGOUT_ALL,
            "success",
            actor=Actor(login=user.login, user_id=user_id),
            details=details,
        )
        audit_owner_keys(self._audit, EventType.API_KEY_REVOKED, revoked, cause="logout_all")

    async def _rehash(self, user: UserColumns, password: str) -> None:
        """Upgrade a hash made with old Argon2 parameters, unless it changed meanwhile."""
        new_hash = await self._hasher.hash(password)
        async with self._db.transaction() as session:
            stored = await self._db.users(session).get(user.id)
            if stored is not None and stored.password_hash == user.password_hash:
                stored.password_hash = new_hash


def _unchanged(checked: UserColumns, now: UserColumns) -> bool:
    """Whether the account a login checked the password of still stands as it was read:
    the same user, active, and no end of its sessions since (a password change or
    reset, "log out everywhere" and a deactivation all stamp ``tokens_valid_after``).
    Not the hash itself: another login's upgrade of it (a UTMStack bcrypt hash, old
    Argon2 parameters) changes it without changing the password."""
    return (
        now.id == checked.id
        and now.activated
        and now.tokens_valid_after == checked.tokens_valid_after
    )
