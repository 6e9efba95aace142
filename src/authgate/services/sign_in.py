"""Signing in with a second factor: what a correct password leads to, and the step after.

After the password (``AccountService.authenticate``) a user either gets an access token
at once, or, when they have a second factor or must enrol one, a pre-verification token
that only the second-factor endpoints accept. The second step trades it for an access
token (marked as having passed the second factor) and revokes it: it works once.

UTMStack's ``X-Bypass-TFA`` header skips the second factor for anyone who sends it;
here it is honoured only from the addresses of ``AUTHGATE_TFA_BYPASS_HEADER_ADDRESSES``
(empty by default: ignored).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

from authgate.exceptions import Conflict
from authgate.reasons import Reason
from authgate.security.networks import AllowList, IPAddress
from authgate.security.tokens import IssuedPending, IssuedToken, PendingClaims
from authgate.services.access_tokens import AccessTokenService
from authgate.services.accounts import AccountService
from authgate.services.audit.events import Actor, EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.second_factor import (
    CodeNotSent,
    Method,
    SecondFactorService,
    challenge_seconds,
)
from authgate.services.user_fields import UserView


@dataclass(frozen=True, slots=True, kw_only=True)
class SignInResult:
    """A login answer, in the terms of UTMStack's ``LoginResponseDTO`` and ``JWTToken``."""

    token: str
    authenticated: bool  # False: ``token`` is a pre-verification token
    issued_at: datetime
    expires_at: datetime
    tfa_configured: bool
    force_tfa: bool
    method: Method | None
    first_login: bool

    @classmethod
    def of(
        cls,
        issued: IssuedToken | IssuedPending,
        user: UserView,
        *,
        method: Method | None,
        authenticated: bool,
    ) -> SignInResult:
        """The answer carrying ``issued``: an access token (``authenticated``), or a
        pre-verification token that the second step (or an enrolment) must follow."""
        return cls(
            token=issued.token,
            authenticated=authenticated,
            issued_at=issued.claims.issued_at,
            expires_at=issued.claims.expires_at,
            tfa_configured=method is not None,
            force_tfa=not authenticated,
            method=method,
            first_login=user.initial_password or user.password_change_required,
        )

    @property
    def tfa_expires_in_seconds(self) -> int:
        return challenge_seconds(self.method) if not self.authenticated else 0


class SignIn:
    def __init__(
        self,
        *,
        tokens: AccessTokenService,
        second_factor: SecondFactorService,
        accounts: AccountService,
        audit: AuditLog,
        bypass_addresses: AllowList,
    ) -> None:
        self._tokens = tokens
        self._second_factor = second_factor
        self._accounts = accounts
        self._audit = audit
        self._bypass = bypass_addresses

    async def after_password(
        self,
        user: UserView,
        *,
        remember_me: bool,
        client_ip: IPAddress | None,
        bypass_requested: bool,
    ) -> SignInResult:
        """The answer to a correct password: a token, or the second step."""
        method = await self._second_factor.login_method(user)
        must_enrol = method is None and self._second_factor.required_for(user)
        needed = method is not None or must_enrol
        if needed and bypass_requested and self._bypass_allowed(client_ip):
            self._audit.record(
                EventType.TFA_SUCCESS,
                "success",
                actor=Actor(login=user.login, user_id=user.id),
                reason=Reason.BYPASS_HEADER,
            )
            return self._full(user, remember_me=remember_me, second_factor=False, method=method)
        if method is None and not must_enrol:
            return self._full(user, remember_me=remember_me, second_factor=False, method=None)
        if method is not None:
            # The login goes on if the code could not be mailed: a recovery code works,
            # and "send a new code" (GET /api/tfa/refresh) tries again.
            with contextlib.suppress(CodeNotSent):
                await self._second_factor.begin_login(user)
        pending = self._tokens.issue_pre_verification(user, remember_me=remember_me)
        return SignInResult.of(pending, user, method=method, authenticated=False)

    async def after_code(self, pending: PendingClaims, code: str) -> SignInResult:
        """Trade a pre-verification token and a code for an access token. The token is
        claimed before the code is checked (``AccessTokenService.claim``): a request
        carrying a token another one holds or spent raises ``TokenRevoked``
        (``token_used``) without its code being looked at. A wrong code raises
        ``SecondFactorFailed`` and gives the token back; the fifth in ten minutes
        ``SecondFactorLocked``, and the token stays spent (the login starts again).

        The token issued is dated from the step's read of the user, which must still
        accept the pre-verification token (``confirm_pending``): a password reset or
        change, or "log out everywhere", committing while the code is checked ends it
        (stamped with the time it is issued, it outlived them: the race review)."""
        user = await self._accounts.dated_account(pending.user_id)
        self._tokens.confirm_pending(pending, user)
        async with self._tokens.claimed(pending):
            await self._second_factor.check_login_code(user, code)
        await self._tokens.spent(pending)
        method = await self._second_factor.login_method(user)
        return self._full(user, remember_me=pending.remember_me, second_factor=True, method=method)

    async def after_enrolment(
        self, pending: PendingClaims, method: Method
    ) -> tuple[SignInResult, list[str]]:
        """Complete a forced enrolment: the factor is in force, the pre-verification
        token is spent (claimed first, as by ``after_code``), and an access token (the
        code was just proved) is issued, dated as by ``after_code``."""
        user = await self.enrolling_user(pending)
        async with self._tokens.claimed(pending):
            codes = await self._second_factor.complete_enrolment(user, method, enable=True)
        await self._tokens.spent(pending)
        result = self._full(
            user, remember_me=pending.remember_me, second_factor=True, method=method
        )
        return result, codes

    async def enrolling_user(self, pending: PendingClaims) -> UserView:
        """The user of a pre-verification token who may enrol with it: one whose login
        asks for no code. Someone who knows only the password of an account that has a
        factor must never replace it; nor skip the code mailed to a user without one
        (``AUTHGATE_TFA_UNENROLLED=email``): enrolling would pass the second step
        without it, and leave the account to the enroller's authenticator. The user is
        read (and dated: ``read_at``) anew, and must still accept the token."""
        user = await self._accounts.dated_account(pending.user_id)
        self._tokens.confirm_pending(pending, user)
        if await self._second_factor.method_of(user.id) is not None:
            raise Conflict(
                "A second factor is already enabled; verify a code instead.",
                reason=Reason.SECOND_FACTOR_ENABLED,
            )
        if self._second_factor.mails_unenrolled(user):
            raise Conflict(
                "This login is verified by a code sent by e-mail; verify it first, then "
                "enrol a factor from the account.",
                reason=Reason.SECOND_FACTOR_ENABLED,
            )
        return user

    def _bypass_allowed(self, client_ip: IPAddress | None) -> bool:
        return (
            not self._bypass.is_unrestricted
            and client_ip is not None
            and self._bypass.permits(client_ip)
        )

    def _full(
        self, user: UserView, *, remember_me: bool, second_factor: bool, method: Method | None
    ) -> SignInResult:
        issued = self._tokens.issue(user, remember_me=remember_me, second_factor=second_factor)
        return SignInResult.of(issued, user, method=method, authenticated=True)
