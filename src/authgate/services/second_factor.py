"""The second factor: enrolment, checking codes at login, recovery codes, resets.

Methods: TOTP (an authenticator app) and e-mail codes; ten single-use recovery codes
come with either. What makes it safer than UTMStack's:

* TOTP secrets are encrypted at rest (``SecondFactorKey``); codes are stored hashed;
* a login code is accepted once (the TOTP step is taken atomically; a code row is
  marked used); the set-up code does not count, see ``complete_enrolment``;
* five wrong codes for an account within ten minutes lock its second step for ten
  minutes (``SecondFactorLocked``; the HTTP layer also revokes the pre-verification
  token), across workers and nodes through the throttle store; each attempt is counted
  atomically before its code is checked, so codes sent at once get no more than five
  checks between them;
* every failure is audited (``TFA_FAILURE``), which the ``failed_second_factors`` alert
  rule kind counts.

Policy (``AUTHGATE_TFA_REQUIRED``): ``none``, ``admins`` or ``all`` must use one; who
must but has none is taken through enrolment at login. API keys never need one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode

from authgate.clock import Clock
from authgate.exceptions import (
    Conflict,
    FieldError,
    NotFound,
    SecondFactorFailed,
    SecondFactorLocked,
    Throttled,
    Unavailable,
    ValidationFailed,
)
from authgate.reasons import Reason
from authgate.security.principal import ROLE_ADMIN
from authgate.security.second_factor import (
    EMAIL_CHALLENGE_SECONDS,
    EMAIL_CODE_SECONDS,
    TOTP_STEP_SECONDS,
    SecondFactorKey,
    SecretUnreadable,
    matching_totp_step,
    new_numeric_code,
    new_recovery_codes,
    new_totp_secret,
    normalized_recovery_code,
    provisioning_uri,
    usable_totp_secret,
)
from authgate.services.audit.events import Actor, EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.changes import Change, ChangeFeed, ChangeKind
from authgate.services.mail import Mailer, MailNotSent
from authgate.services.ports import (
    Database,
    StorageSession,
)
from authgate.services.throttle_store import ThrottleStore
from authgate.services.user_fields import UserView
from authgate.settings_lists import comma_separated
from authgate.storage.models import OneTimeCode, User

log = logging.getLogger(__name__)

Method = Literal["TOTP", "EMAIL"]
METHODS: Final = ("TOTP", "EMAIL")
Requirement = Literal["none", "admins", "all"]
Unenrolled = Literal["enrol", "email"]


class SecondFactorConfig(BaseModel):
    """``Settings.second_factor``, set by ``AUTHGATE_TFA_REQUIRED``, ``_ISSUER`` and
    ``_BYPASS_HEADER_ADDRESSES`` (``authgate.settings_names``) or a ``[second_factor]``
    table; the key (``AUTHGATE_TFA_KEY``, a secret) is a top-level setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    required: Requirement = Field(
        default="none",
        description="Who must use a second factor: nobody, admins, everyone. Users who must "
        "but have not enrolled are taken through enrolment at their next login.",
    )
    unenrolled: Unenrolled = Field(
        default="enrol",
        description="What a login asks of a user who must use a second factor but has "
        "enrolled none: enrol one (UTMStack v11's flow), or an e-mailed code to the "
        "account's address at every login (email: UTMStack v10's global switch, whose UI "
        "has no enrolment screens; needs an SMTP server).",
    )
    issuer: str = Field(
        default="authgate",
        min_length=1,
        max_length=64,
        pattern=r"^[^:\x00-\x1f]+$",
        description="Issuer shown by authenticator apps (otpauth://totp/<issuer>:<login>).",
    )
    bypass_header_addresses: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="DANGEROUS. Addresses or CIDRs whose X-Bypass-TFA header (UTMStack's) "
        "skips the second factor; ignored from everyone else (the default).",
    )

    @field_validator("bypass_header_addresses", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)


MAX_FAILURES: Final = 5
FAILURE_WINDOW_SECONDS: Final = 600
LOCK_SECONDS: Final = 600
# UTMStack's UI asks for a new e-mail code every 30 s; it refuses within 28 s.
RESEND_COOLDOWN_SECONDS: Final = 28
# An enrolment not completed within this time must start again.
ENROLMENT_SECONDS: Final = 600
# Retry-After of a code that could not be mailed: a hint (the next login tries at once).
CODE_NOT_SENT_RETRY_SECONDS: Final = 30
# UTMStack v12's ErrTfaMailUnavailable: the administrator learns where the fix is.
NO_MAIL_SERVER: Final = "the second factor is sent by email, and no mail server is configured"

RECOVERY: Final = "recovery"
EMAIL_LOGIN: Final = "email_login"
EMAIL_SETUP: Final = "email_setup"


def challenge_seconds(method: str | None) -> int:
    """UTMStack's ``tfaExpiresInSeconds``: 30 for TOTP, 120 for e-mail, else 0 (an
    e-mailed code works longer, ``EMAIL_CODE_SECONDS``)."""
    if method == "TOTP":
        return TOTP_STEP_SECONDS
    if method == "EMAIL":
        return EMAIL_CHALLENGE_SECONDS
    return 0


def parse_method(value: object, *, field: str = "method") -> Method:
    text = str(value).strip().upper() if isinstance(value, str) else ""
    if text == "TOTP":
        return "TOTP"
    if text == "EMAIL":
        return "EMAIL"
    message = "Method must be TOTP or EMAIL."
    raise ValidationFailed(message, field_errors=[FieldError(field, message)])


class CodeNotSent(Unavailable):
    """A login's code could not be e-mailed (no SMTP server, or it failed). UTMStack
    v12's login answers 503 there (``ErrTfaMailUnavailable``): its code page has no
    "send again", and the user would wait for a code that never comes. The v10/v11 login
    goes on (a recovery code works, and ``GET /api/tfa/refresh`` sends again)."""

    code = "mail_not_sent"
    message = "the second factor is sent by email, and the code could not be sent; try again later"


@dataclass(frozen=True, slots=True)
class SecondFactorState:
    method: Method | None
    required: bool
    recovery_codes_left: int
    pending_method: Method | None
    # When the current recovery codes were made (None: never): the Settings page's form
    # for new ones names them by it.
    recovery_codes_made_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ImportedFactor:
    """A second factor brought from elsewhere (UTMStack): the method and, for TOTP, the
    secret in plaintext (in memory only; ``put_in_force`` stores it encrypted)."""

    method: Method
    totp_secret: str | None

    def __repr__(self) -> str:  # never the secret, even in a traceback or a log line
        return f"ImportedFactor(method={self.method!r})"


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A started enrolment, to be verified within ``expires_in_seconds``. For TOTP: the
    secret and its ``otpauth://`` URI (shown as a QR code); for e-mail: where the code
    went (it works for ``EMAIL_CODE_SECONDS``)."""

    method: Method
    expires_in_seconds: int
    secret: str | None = None
    uri: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class EnrolmentCheck:
    """UTMStack's ``TfaVerifyResponse``; ``started`` is False when no enrolment of the
    method was in progress (v12 tells that apart from an expired one)."""

    valid: bool
    expired: bool
    remaining_seconds: int
    message: str
    started: bool = True


class SecondFactorService:
    def __init__(
        self,
        *,
        db: Database,
        feed: ChangeFeed,
        key: SecondFactorKey,
        mailer: Mailer,
        throttle: ThrottleStore,
        audit: AuditLog,
        clock: Clock,
        requirement: Requirement,
        issuer: str,
        unenrolled: Unenrolled = "enrol",
    ) -> None:
        self._db = db
        self._feed = feed
        self._key = key
        self._mailer = mailer
        self._throttle = throttle
        self._audit = audit
        self._clock = clock
        self._requirement = requirement
        self._issuer = issuer
        self._unenrolled = unenrolled

    # -- policy and state ----------------------------------------------------------------

    def required_for(self, user: UserView) -> bool:
        if self._requirement == "all":
            return True
        return self._requirement == "admins" and ROLE_ADMIN in user.authorities

    async def method_of(self, user_id: int) -> Method | None:
        """The user's second factor in force, read now (one statement: a login reads it
        again after the password hash, so that a factor enabled meanwhile is asked for)."""
        return _method(await self._db.second_factor_of(user_id))

    @property
    def key_fingerprint(self) -> str:
        """Names ``AUTHGATE_TFA_KEY`` without revealing it (nodes compare theirs)."""
        return self._key.fingerprint

    async def login_method(self, user: UserView) -> Method | None:
        """What a login of ``user`` must prove: their factor in force or, for a user who
        must use one but has enrolled none, e-mailed codes when ``unenrolled`` is
        ``email`` and a code can reach them (UTMStack v10: nobody enrols). A dated view
        (``read_at`` set: a login's, read again after the password hash, or one a second
        step or a refresh read for itself) holds the factor as it is now; any other
        view's is read anew."""
        if user.read_at is not None:
            method = _method(user.second_factor)
        else:
            method = await self.method_of(user.id)
        if method is None and self.mails_unenrolled(user):
            return "EMAIL"
        return method

    def mails_unenrolled(self, user: UserView) -> bool:
        """Whether a login of ``user``, who has no factor, is verified by e-mailed codes."""
        return (
            self._unenrolled == "email"
            and self.required_for(user)
            and bool(user.email)
            and self._mailer.configured
        )

    async def state(self, user: UserView) -> SecondFactorState:
        async with self._db.session() as session:
            stored = await self._db.users(session).get(user.id)
            row = await self._db.second_factors(session).get(user.id)
            codes = self._db.one_time_codes(session)
            left = await codes.count_unused(user.id, RECOVERY)
            made_at = await codes.latest_created(user.id, RECOVERY)
        if stored is None:
            raise NotFound("User not found", reason=Reason.USER_NOT_FOUND)
        method = _method(stored.second_factor)
        return SecondFactorState(
            method=method,
            required=self.required_for(user),
            recovery_codes_left=left if method else 0,
            pending_method=_method(row.pending_method) if row is not None else None,
            recovery_codes_made_at=made_at,
        )

    # -- enrolment -----------------------------------------------------------------------

    async def start_enrolment(self, user: UserView, method: Method) -> Enrolment:
        """Begin enrolling ``method`` (replacing any enrolment in progress). The factor
        in force, if any, stays until the new one is completed."""
        if method == "EMAIL" and not self._mailer.configured:
            message = "E-mail codes need an SMTP server (AUTHGATE_ALERT_SMTP_HOST)."
            raise ValidationFailed(message, field_errors=[FieldError("method", message)])
        now = self._clock()
        secret = new_totp_secret() if method == "TOTP" else None
        async with self._db.transaction() as session:
            row = await self._db.second_factors(session).get_or_create(user.id, now=now)
            row.pending_method = method
            row.pending_totp_secret = (
                self._key.encrypt(secret, user_id=user.id) if secret is not None else None
            )
            row.pending_started_at = now
            row.pending_verified_at = None
            row.pending_last_step = None
            row.updated_at = now
        if method == "EMAIL":
            await self._send_or_refuse(user, EMAIL_SETUP, subject="Confirm your sign-in codes")
            # The code's own lifetime (UTMStack v11's init says 300 too), not the 120 s
            # a login's code page counts down before offering another code.
            return Enrolment(method, EMAIL_CODE_SECONDS, email=user.email)
        assert secret is not None
        uri = provisioning_uri(secret, login=user.login, issuer=self._issuer)
        return Enrolment(method, ENROLMENT_SECONDS, secret=secret, uri=uri)

    async def verify_enrolment(self, user: UserView, method: Method, code: str) -> EnrolmentCheck:
        """Check a code of the enrolment in progress (counted like login failures)."""
        now = self._clock()
        await self._refuse_if_locked(user)
        async with self._db.session() as session:
            row = await self._db.second_factors(session).get(user.id)
        if row is None or row.pending_method != method or row.pending_started_at is None:
            return EnrolmentCheck(
                False, True, 0, "No enrolment of this method is in progress", started=False
            )
        remaining = _enrolment_seconds_left(row.pending_started_at, now, method)
        if remaining <= 0:
            return EnrolmentCheck(False, True, 0, "The enrolment expired; start again")
        counted = await self._reserve(user)
        try:
            valid = await self._pending_code_matches(user, row.pending_totp_secret, method, code)
        except BaseException:
            await self._refund(user)  # not checked (an error): it must not count
            raise
        if not valid:
            await self._failed(user, Reason.WRONG_ENROLMENT_CODE, counted)
            return EnrolmentCheck(False, False, remaining, "The code is not valid")
        async with self._db.transaction() as session:
            # Only the enrolment whose code was checked: one started again meanwhile (a
            # second init, another node) has a secret or codes nobody has proved.
            marked = await self._db.second_factors(session).mark_pending_verified(
                user.id,
                method=method,
                started_at=row.pending_started_at,
                secret=row.pending_totp_secret,
                now=now,
            )
        if not marked:
            return EnrolmentCheck(
                False, False, remaining, "The enrolment was started again; verify its code"
            )
        await self._throttle.reset_failures(_subject(user.id))
        return EnrolmentCheck(True, False, remaining, "The code is valid")

    async def pending_enrolment(self, user: UserView) -> Enrolment | None:
        """The TOTP enrolment in progress as ``start_enrolment`` began it, to show its QR
        code again after a wrong code; ``None`` when there is none or it expired."""
        async with self._db.session() as session:
            row = await self._db.second_factors(session).get(user.id)
        if row is None or row.pending_method != "TOTP" or row.pending_started_at is None:
            return None
        remaining = _enrolment_seconds_left(row.pending_started_at, self._clock(), "TOTP")
        if remaining <= 0 or row.pending_totp_secret is None:
            return None
        secret = self._totp_secret(row.pending_totp_secret, user.id)
        if secret is None:
            return None
        uri = provisioning_uri(secret, login=user.login, issuer=self._issuer)
        return Enrolment("TOTP", remaining, secret=secret, uri=uri)

    async def complete_enrolment(
        self, user: UserView, method: Method, *, enable: bool, enrolled_by: str | None = None
    ) -> list[str]:
        """Put the verified enrolment in force (``enable``) or drop it. Returns the new
        recovery codes (shown once), or ``[]`` when dropped. ``enrolled_by``: the session
        (token id, or v12 session id) that enrolled, which proved the factor while doing
        so and counts from now on as a session that passed it."""
        now = self._clock()
        async with self._feed.unit_of_work() as work:
            factors = self._db.second_factors(work.session)
            row = await factors.get(user.id)
            if not enable:
                if row is not None:
                    _clear_pending(row)
                return []
            if (
                row is None
                or row.pending_method != method
                or row.pending_verified_at is None
                or row.pending_started_at is None
                or (now - row.pending_started_at).total_seconds() > ENROLMENT_SECONDS
            ):
                message = "Verify a code of this method first."
                raise Conflict(message, reason=Reason.ENROLMENT_NOT_VERIFIED)
            stored = await self._db.users(work.session).get(user.id)
            if stored is None:
                raise NotFound("User not found", reason=Reason.USER_NOT_FOUND)
            row.totp_secret = row.pending_totp_secret if method == "TOTP" else None
            # The set-up code does not spend its step for logins (UTMStack accepts it at
            # once, and scripted clients log in right after enrolling): whoever could
            # observe that code saw the secret itself (the QR code) at the same moment,
            # so refusing it at login protects nothing. Login codes stay single-use.
            row.last_totp_step = None
            _clear_pending(row)
            row.updated_at = now
            stored.second_factor = method
            stored.second_factor_session = enrolled_by
            stored.updated_at = now
            codes = new_recovery_codes()
            await self._db.one_time_codes(work.session).replace(
                user.id, RECOVERY, [self._code_row(user.id, RECOVERY, c, now) for c in codes]
            )
            work.publish(Change(ChangeKind.USER_CHANGED, str(user.id)))
        self._audit.record(
            EventType.TFA_ENABLED, "success", actor=_actor(user), details={"method": method}
        )
        return codes

    # -- login ----------------------------------------------------------------------------

    async def begin_login(self, user: UserView) -> Method | None:
        """The method the user must now prove; for e-mail, a fresh code is sent, unless
        one sent within the resend cooldown still works: each correct password would
        otherwise mail a code (a flood of mail for the user) and replace the one the
        user is typing. Raises ``CodeNotSent`` when the code could not be mailed."""
        method = await self.login_method(user)
        if method == "EMAIL":
            now = self._clock()
            async with self._db.session() as session:
                live = await self._db.one_time_codes(session).latest_created(
                    user.id, EMAIL_LOGIN, live_at=now
                )
            if live is not None and (now - live).total_seconds() < RESEND_COOLDOWN_SECONDS:
                return method
            try:
                await self._send_code(user, EMAIL_LOGIN, subject="Your sign-in code")
            except MailNotSent as error:
                log.warning("could not send a second-factor code: %s", error)
                message = None if self._mailer.configured else NO_MAIL_SERVER
                raise CodeNotSent(
                    message, retry_after=CODE_NOT_SENT_RETRY_SECONDS, reason=Reason.MAIL_NOT_SENT
                ) from None
        return method

    async def resend(self, user: UserView) -> Method | None:
        """Send a new e-mail code (``Throttled`` within the cooldown); nothing for TOTP."""
        method = await self.login_method(user)
        if method != "EMAIL":
            return method
        async with self._db.session() as session:
            latest = await self._db.one_time_codes(session).latest_created(user.id, EMAIL_LOGIN)
        if latest is not None:
            waited = (self._clock() - latest).total_seconds()
            if waited < RESEND_COOLDOWN_SECONDS:
                raise Throttled(
                    "A code was sent moments ago; wait before asking for another",
                    retry_after=int(RESEND_COOLDOWN_SECONDS - waited) + 1,
                    reason=Reason.CODE_RESEND_TOO_SOON,
                )
        await self._send_or_refuse(user, EMAIL_LOGIN, subject="Your sign-in code")
        return method

    async def check_login_code(self, user: UserView, code: str) -> str:
        """Accept a TOTP code, an e-mail code or a recovery code of the user's factor,
        once. Returns what was used (``totp``, ``email``, ``recovery``); raises
        ``SecondFactorFailed`` or ``SecondFactorLocked``. The attempt is counted before
        its code is checked (``_reserve``)."""
        await self._refuse_if_locked(user)
        method = await self.login_method(user)
        counted = await self._reserve(user)
        try:
            used = await self._accept(user, method, code.strip()) if method else None
        except BaseException:
            await self._refund(user)  # not checked (an error): it must not count
            raise
        if used is None:
            reason = Reason.WRONG_CODE if method else Reason.NO_SECOND_FACTOR
            await self._failed(user, reason, counted)
            raise SecondFactorFailed(reason=Reason.WRONG_CODE)
        await self._throttle.reset_failures(_subject(user.id))
        self._audit.record(
            EventType.TFA_SUCCESS, "success", actor=_actor(user), details={"used": used}
        )
        return used

    # -- management -----------------------------------------------------------------------

    async def regenerate_recovery_codes(self, user: UserView) -> list[str]:
        now = self._clock()
        codes = new_recovery_codes()
        async with self._db.transaction() as session:
            stored = await self._db.users(session).get(user.id)
            if stored is None or stored.second_factor is None:
                raise Conflict("No second factor is enabled.", reason=Reason.NO_SECOND_FACTOR)
            await self._db.one_time_codes(session).replace(
                user.id, RECOVERY, [self._code_row(user.id, RECOVERY, c, now) for c in codes]
            )
        self._audit.record(EventType.TFA_RECOVERY_CODES_REGENERATED, "success", actor=_actor(user))
        return codes

    async def disable(self, user: UserView, *, code: str) -> None:
        """The user turns their own factor off; ``code`` must be a current code (the
        caller checks the password first)."""
        await self.check_login_code(user, code)
        await self.turn_off(user)

    async def turn_off(self, user: UserView) -> None:
        """The user turns their own factor off, the caller having checked what it asks
        for (v12: the password, from a session that passed the factor)."""
        await self._remove(user.id)
        self._audit.record(
            EventType.TFA_DISABLED, "success", actor=_actor(user), reason=Reason.DISABLED_BY_USER
        )

    async def reset(self, login: str, *, by: Actor) -> UserView:
        """An admin removes a user's second factor (lost phone): audited, and the user is
        told by e-mail when SMTP is configured."""
        async with self._db.session() as session:
            stored = await self._db.users(session).by_login(login.strip().lower())
        return await self._reset(stored, by=by)

    async def reset_by_public_id(self, public_id: str, *, by: Actor) -> UserView:
        """:meth:`reset` for a user named by their v12 id."""
        async with self._db.session() as session:
            stored = await self._db.users(session).by_public_id(public_id)
        return await self._reset(stored, by=by)

    async def _reset(self, stored: User | None, *, by: Actor) -> UserView:
        if stored is None:
            raise NotFound("User not found", reason=Reason.USER_NOT_FOUND)
        user = UserView.of(stored)
        await self._remove(user.id)  # a pending enrolment goes too
        if user.second_factor is None:  # nothing was in force: no event, no alarming mail
            return user
        self._audit.record(
            EventType.TFA_DISABLED,
            "success",
            actor=by,
            reason=Reason.RESET_BY_ADMIN,
            details={"user": user.login},
        )
        if self._mailer.configured:
            # The reset stands even if the mail fails; the audit record says who did it.
            with contextlib.suppress(MailNotSent):
                await self._mailer.send_text(
                    to=user.email,
                    subject="Your two-factor authentication was reset",
                    body=(
                        f"Hello {user.login},\n\nan administrator ({by.login}) has reset the "
                        "two-factor authentication of your account. If you did not ask for "
                        "this, contact your administrator at once.\n"
                    ),
                    sent_at=self._clock(),
                )
        return user

    async def enrolled(self, user_ids: list[int]) -> dict[int, str]:
        async with self._db.session() as session:
            return await self._db.second_factors(session).enrolled_user_ids(user_ids)

    # -- import (``authgate import utmstack``) --------------------------------------------

    @property
    def mails(self) -> bool:
        """E-mail codes can be sent (an SMTP server is configured)."""
        return self._mailer.configured

    async def factor_in_force(self, session: StorageSession, user: User) -> ImportedFactor | None:
        """The user's factor in force, TOTP secret decrypted, inside the caller's
        transaction: what an import compares UTMStack's factor with. A secret that does
        not decrypt (another key) reads as no secret, so it compares unequal."""
        method = _method(user.second_factor)
        if method is None:
            return None
        if method == "EMAIL":
            return ImportedFactor("EMAIL", None)
        row = await self._db.second_factors(session).get(user.id)
        if row is None or row.totp_secret is None:
            return ImportedFactor("TOTP", None)
        try:
            return ImportedFactor("TOTP", self._key.decrypt(row.totp_secret, user_id=user.id))
        except SecretUnreadable:
            return ImportedFactor("TOTP", None)

    async def put_in_force(
        self, session: StorageSession, user: User, factor: ImportedFactor | None
    ) -> None:
        """Make ``factor`` the user's second factor (``None``: remove it) inside the
        caller's transaction, as a completed enrolment would: the TOTP secret encrypted
        under the second-factor key (as ``usable_totp_secret`` writes it), no step used
        yet. Recovery codes are left as they are (an import has nobody to show new ones
        to); the caller publishes the change.

        Raises:
            ValueError: a TOTP factor without a usable secret (the caller checks first:
                in force, it would refuse every code).
        """
        now = self._clock()
        factors = self._db.second_factors(session)
        if factor is None:
            await factors.delete(user.id)
            await self._db.one_time_codes(session).delete(user.id)
            user.second_factor = None
            user.second_factor_session = None
            return
        secret = None
        if factor.method == "TOTP":
            secret = usable_totp_secret(factor.totp_secret or "")
            if secret is None:
                raise ValueError("a TOTP factor needs a usable secret (base32, 112 bits)")
        row = await factors.get_or_create(user.id, now=now)
        row.totp_secret = self._key.encrypt(secret, user_id=user.id) if secret else None
        row.last_totp_step = None
        _clear_pending(row)
        row.updated_at = now
        user.second_factor = factor.method
        user.second_factor_session = None  # no session of this user enrolled it

    # -- internals ------------------------------------------------------------------------

    async def _remove(self, user_id: int) -> None:
        async with self._feed.unit_of_work() as work:
            stored = await self._db.users(work.session).get(user_id)
            if stored is None:
                raise NotFound("User not found", reason=Reason.USER_NOT_FOUND)
            stored.second_factor = None
            stored.second_factor_session = None
            stored.updated_at = self._clock()
            await self._db.second_factors(work.session).delete(user_id)
            await self._db.one_time_codes(work.session).delete(user_id)
            work.publish(Change(ChangeKind.USER_CHANGED, str(user_id)))

    async def _accept(self, user: UserView, method: Method, code: str) -> str | None:
        now = self._clock()
        if method == "TOTP":
            async with self._db.session() as session:
                row = await self._db.second_factors(session).get(user.id)
            if row is not None and row.totp_secret is not None and code.isdigit():
                secret = self._totp_secret(row.totp_secret, user.id)
                step = (
                    matching_totp_step(
                        secret, code, now=now.timestamp(), after_step=row.last_totp_step
                    )
                    if secret is not None
                    else None
                )
                if step is not None:
                    async with self._db.transaction() as session:
                        if await self._db.second_factors(session).take_totp_step(user.id, step):
                            return "totp"
        elif code.isdigit() and await self._use_code(user.id, EMAIL_LOGIN, code):
            return "email"
        recovery = normalized_recovery_code(code)
        if recovery is not None and await self._use_code(user.id, RECOVERY, recovery):
            return "recovery"
        return None

    async def _pending_code_matches(
        self, user: UserView, encrypted: str | None, method: Method, code: str
    ) -> bool:
        code = code.strip()
        if method == "EMAIL":
            return await self._use_code(user.id, EMAIL_SETUP, code)
        if encrypted is None:
            return False
        secret = self._totp_secret(encrypted, user.id)
        if secret is None:
            return False
        step = matching_totp_step(secret, code, now=self._clock().timestamp(), after_step=None)
        if step is None:
            return False
        async with self._db.transaction() as session:
            return await self._db.second_factors(session).take_pending_step(user.id, step)

    async def _use_code(self, user_id: int, purpose: str, code: str) -> bool:
        code_hash = self._key.code_hash(code, user_id=user_id, purpose=purpose)
        async with self._db.transaction() as session:
            return await self._db.one_time_codes(session).use(
                user_id, purpose, code_hash, now=self._clock()
            )

    async def _send_code(self, user: UserView, purpose: str, *, subject: str) -> None:
        now = self._clock()
        code = new_numeric_code()
        row = self._code_row(user.id, purpose, code, now)
        row.expires_at = now + timedelta(seconds=EMAIL_CODE_SECONDS)
        async with self._db.transaction() as session:
            # One live code at a time: a new one replaces the last.
            await self._db.one_time_codes(session).replace(user.id, purpose, [row])
        try:
            await self._send_mail(user, code, subject=subject, now=now)
        except MailNotSent:
            # Never delivered: it must not hold back the next login's code (the resend
            # cooldown counts codes that still work) nor be left to be guessed.
            async with self._db.transaction() as session:
                await self._db.one_time_codes(session).replace(user.id, purpose, [])
            raise

    async def _send_mail(self, user: UserView, code: str, *, subject: str, now: datetime) -> None:
        await self._mailer.send_text(
            to=user.email,
            subject=subject,
            body=(
                f"Your authgate code is {code}\n\nIt is valid for "
                f"{EMAIL_CODE_SECONDS // 60} minutes and works once. If you did not try to "
                "sign in, change your password.\n"
            ),
            sent_at=now,
        )

    async def _send_or_refuse(self, user: UserView, purpose: str, *, subject: str) -> None:
        try:
            await self._send_code(user, purpose, subject=subject)
        except MailNotSent as error:
            log.warning("could not send a second-factor code: %s", error)
            raise Conflict(
                "The code could not be sent; try again later.", reason=Reason.MAIL_NOT_SENT
            ) from None

    def _code_row(self, user_id: int, purpose: str, code: str, now: datetime) -> OneTimeCode:
        return OneTimeCode(
            user_id=user_id,
            purpose=purpose,
            code_hash=self._key.code_hash(code, user_id=user_id, purpose=purpose),
            created_at=now,
        )

    def _totp_secret(self, encrypted: str, user_id: int) -> str | None:
        """The stored TOTP secret, or None when it cannot be read: it does not decrypt
        (a wrong AUTHGATE_TFA_KEY, a tampered row) or no code can be computed from it
        (not base32: put in force by an import before imports checked secrets)."""
        try:
            secret = usable_totp_secret(self._key.decrypt(encrypted, user_id=user_id))
            why = (
                "is not base32 of 112 bits or more: reset the user's second factor "
                "(authgate users reset-tfa)"
            )
        except SecretUnreadable:
            secret = None
            why = "does not decrypt under this AUTHGATE_TFA_KEY (another key, or a tampered row)"
        if secret is None:
            # Nobody can pass, and the operator must know (never the secret itself);
            # callers see only a refused code (no secret to match), never pyotp's error.
            log.warning("the TOTP secret of user %d %s; its codes are refused", user_id, why)
            self._audit.record(
                EventType.TFA_FAILURE,
                "failure",
                actor=Actor(user_id=user_id),
                reason=Reason.SECRET_UNREADABLE,
            )
        return secret

    async def _refuse_if_locked(self, user: UserView) -> None:
        block = await self._throttle.get_block(_subject(user.id))
        now = self._clock().timestamp()
        if block is not None and block.until > now:
            self._audit.record(
                EventType.TFA_FAILURE,
                "failure",
                actor=_actor(user),
                reason=Reason.SECOND_FACTOR_LOCKED,
            )
            raise SecondFactorLocked(retry_after=int(block.until - now) + 1)

    async def _reserve(self, user: UserView) -> float:
        """Count this attempt before its code is checked; the failures counted with it.

        The count is one atomic increment in the throttle store (the database's upsert,
        or Redis's HINCRBY), shared by every worker and node, so codes sent at once are
        numbered one by one: only those numbered up to ``MAX_FAILURES`` are checked, the
        rest are refused as locked without a look at their code (before, each checked
        the lock, then its code, and was counted after: 46 of 60 codes sent at once
        were checked). A wrong code stays counted (``_failed`` adds nothing); a right
        one clears the count, as it always did."""
        now = self._clock().timestamp()
        subject = _subject(user.id)
        counted = await self._throttle.add_failure(subject, window=FAILURE_WINDOW_SECONDS, now=now)
        block = await self._throttle.get_block(subject)
        locked = block is not None and block.until > now
        if locked or counted >= MAX_FAILURES + 1:  # locked, or the window's attempts taken
            # Refused unchecked, the attempt takes its count back. Under a lock set since
            # the caller looked (which forgot the count), it would still count when the
            # lock ends, and a burst refused so would lock the account anew; with the
            # window's attempts taken and no lock (the fifth ended in an error, say),
            # every refused attempt would renew the refusal for good.
            await self._refund(user)
            self._audit.record(
                EventType.TFA_FAILURE,
                "failure",
                actor=_actor(user),
                reason=Reason.SECOND_FACTOR_LOCKED,
            )
            wait = block.until - now if block is not None and locked else LOCK_SECONDS
            raise SecondFactorLocked(retry_after=int(wait) + 1)
        return counted

    async def _refund(self, user: UserView) -> None:
        """Give back the count ``_reserve`` took for an attempt that was not checked."""
        now = self._clock().timestamp()
        await asyncio.shield(
            self._throttle.refund_failure(_subject(user.id), window=FAILURE_WINDOW_SECONDS, now=now)
        )

    async def _failed(self, user: UserView, reason: Reason, counted: float) -> None:
        """A wrong code, counted already by ``_reserve`` (``counted``: the failures with
        it); the attempt that reached ``MAX_FAILURES`` locks the second step."""
        now = self._clock().timestamp()
        subject = _subject(user.id)
        self._audit.record(EventType.TFA_FAILURE, "failure", actor=_actor(user), reason=reason)
        if counted >= MAX_FAILURES:
            await self._throttle.forget_and_block(
                (subject,), subject, until=now + LOCK_SECONDS, strikes=1, now=now
            )
            self._audit.record(
                EventType.AUTH_LOCKOUT,
                "failure",
                actor=_actor(user),
                reason=Reason.SECOND_FACTOR_LOCKED,
                details={"failures": MAX_FAILURES, "lockedSeconds": LOCK_SECONDS},
            )
            raise SecondFactorLocked(retry_after=LOCK_SECONDS, reason=Reason.SECOND_FACTOR_LOCKED)


def _subject(user_id: int) -> str:
    return f"tfa:{user_id}"


def _actor(user: UserView) -> Actor:
    return Actor(login=user.login, user_id=user.id)


def _method(value: str | None) -> Method | None:
    if value == "TOTP":
        return "TOTP"
    if value == "EMAIL":
        return "EMAIL"
    return None


def _clear_pending(row: object) -> None:
    for name in (
        "pending_method",
        "pending_totp_secret",
        "pending_started_at",
        "pending_verified_at",
        "pending_last_step",
    ):
        setattr(row, name, None)


def _enrolment_seconds_left(started_at: datetime, now: datetime, method: Method) -> int:
    """How long a code of the enrolment begun at ``started_at`` may still be checked: an
    e-mail enrolment's one code lives ``EMAIL_CODE_SECONDS`` (what its start answered;
    the time review: it counted down from ``ENROLMENT_SECONDS`` and took the dead code
    for a wrong one), a TOTP enrolment's codes come from the app until
    ``ENROLMENT_SECONDS``."""
    window = EMAIL_CODE_SECONDS if method == "EMAIL" else ENROLMENT_SECONDS
    return window - int((now - started_at).total_seconds())
