"""Issuing and verifying JWT access tokens.

UTMStack's claims (``sub``, ``auth``, ``authenticated``, ``exp``) plus ``iat``,
``nbf``, ``jti``, ``iss``, ``aud``, ``uid``, and v12's ``roles`` and ``permissions``.
Verification pins each key's algorithm (``none`` and algorithm confusion are refused
before any signature check), requires every claim authgate relies on, and checks times
against the caller's clock instead of PyJWT's wall clock, so expiry is testable
without sleeping.

``iat`` carries milliseconds: "log out everywhere" refuses tokens whose ``iat`` is not
after the moment of revocation, and a whole-second ``iat`` would refuse tokens issued
up to a second after it.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from authgate.exceptions import TokenExpired, TokenInvalid
from authgate.reasons import Reason
from authgate.security.jwt_claims import check_claims, is_canonical_compact_jws
from authgate.security.permissions import permissions_of
from authgate.security.principal import join_authorities, parse_authorities
from authgate.security.signing_keys import JwsFault, JwsRefused, KeyRing, verify_jws

# Longer tokens are refused before parsing (ours are well under 1 KB).
MAX_TOKEN_LENGTH = 4096

_REQUIRED_CLAIMS = ["sub", "uid", "auth", "exp", "iat", "jti", "iss", "aud"]
# The audit trail's reason for each way the signature layer refuses a token.
_REASONS = {
    JwsFault.MALFORMED: Reason.MALFORMED_TOKEN,
    JwsFault.WRONG_TYPE: Reason.MALFORMED_TOKEN,  # not raised: access tokens name no typ
    JwsFault.UNKNOWN_KEY: Reason.UNKNOWN_SIGNING_KEY,
    JwsFault.ALGORITHM_MISMATCH: Reason.ALGORITHM_NOT_ALLOWED,
    JwsFault.BAD_SIGNATURE: Reason.BAD_SIGNATURE,
    JwsFault.WRONG_ISSUER_OR_AUDIENCE: Reason.WRONG_ISSUER_OR_AUDIENCE,
    JwsFault.INVALID_CLAIMS: Reason.INVALID_CLAIMS,
}

# UTMStack's authority of a token that has passed the password but not the second factor.
ROLE_PRE_VERIFICATION_USER = "ROLE_PRE_VERIFICATION_USER"
# Pre-verification tokens are issued for their own audience, so no verifier of access
# tokens (routes, forward-auth, the Settings UI, the guard) can ever accept one.
PRE_VERIFICATION_AUDIENCE_SUFFIX = "#pre-verification"
# UTMStack v12's pre-auth tokens (``/api/v1/auth/tfa/verify-code``) have an audience of
# their own too: neither an access-token verifier nor the v10/v11 second step takes one,
# and a v10/v11 pre-verification token is no v12 pre-auth token. v12 checked no audience.
PRE_AUTH_AUDIENCE_SUFFIX = "#pre-auth"
# RFC 8176 authentication method references: password, and a one-time password.
_AMR_PASSWORD = ["pwd"]
_AMR_SECOND_FACTOR = ["pwd", "otp"]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The verified content of an access token."""

    subject: str
    user_id: int
    authorities: frozenset[str]
    token_id: str
    issued_at: datetime
    expires_at: datetime
    # The v12 session (``sid``) the token belongs to; None for a v10/v11 login token.
    session_id: str | None = None
    # The login passed a second factor (``amr`` holds ``otp``).
    second_factor: bool = False


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    claims: TokenClaims


@dataclass(frozen=True, slots=True)
class PendingClaims:
    """A verified pre-verification token: the password was right, the second factor is
    still to come. ``remember_me`` is carried to the final token."""

    subject: str
    user_id: int
    token_id: str
    issued_at: datetime
    expires_at: datetime
    remember_me: bool


@dataclass(frozen=True, slots=True)
class IssuedPending:
    token: str
    claims: PendingClaims


class JwtCodec:
    """Signs tokens with the key ring's active key and verifies them with any ring key."""

    def __init__(self, keyring: KeyRing, *, issuer: str, audience: str, leeway: timedelta) -> None:
        self._keyring = keyring
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway.total_seconds()

    @property
    def keyring(self) -> KeyRing:
        return self._keyring

    @property
    def leeway(self) -> timedelta:
        """How long past its ``exp`` a token is still accepted (clock skew)."""
        return timedelta(seconds=self._leeway)

    def with_keyring(self, keyring: KeyRing) -> JwtCodec:
        """A codec identical to this one but for its keys (after a rotation)."""
        return JwtCodec(
            keyring,
            issuer=self._issuer,
            audience=self._audience,
            leeway=timedelta(seconds=self._leeway),
        )

    def issue(
        self,
        *,
        subject: str,
        user_id: int,
        authorities: frozenset[str],
        now: datetime,
        ttl: timedelta,
        session_id: str | None = None,
        email: str | None = None,
        tenant_id: str | None = None,
        platform: bool = False,
        second_factor: bool = False,
    ) -> IssuedToken:
        """A signed token. Every token carries ``roles`` and ``permissions`` (what the
        roles grant, for clients and the guard; authgate itself re-derives them from the
        roles the user still holds). With ``session_id`` (UTMStack v12's login), v12's
        other claims are added: ``sid``, ``email``, ``tid`` (``tenant_id``, when given)
        and ``platform`` (v12's UI shows the instance operator's screens by it). Like
        the roles, these only shape a UI: what a caller may do is decided from the
        roles the user holds when the token is used."""
        payload: dict[str, Any] = {
            "sub": subject,
            "auth": join_authorities(authorities),
            "authenticated": True,
            "uid": user_id,
            **self._registered_claims(audience=self._audience, now=now, ttl=ttl),
            "amr": _AMR_SECOND_FACTOR if second_factor else _AMR_PASSWORD,
            "roles": sorted(authorities),
            "permissions": sorted(permissions_of(authorities)),
        }
        if session_id is not None:
            payload.update(sid=session_id, email=email, platform=platform)
            if tenant_id is not None:
                payload["tid"] = tenant_id
        claims = TokenClaims(
            subject=subject,
            user_id=user_id,
            authorities=authorities,
            token_id=payload["jti"],
            issued_at=datetime.fromtimestamp(payload["iat"], UTC),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            session_id=session_id,
            second_factor=second_factor,
        )
        return IssuedToken(token=self._sign(payload), claims=claims)

    def issue_pre_verification(
        self,
        *,
        subject: str,
        user_id: int,
        now: datetime,
        ttl: timedelta,
        remember_me: bool,
        audience_suffix: str = PRE_VERIFICATION_AUDIENCE_SUFFIX,
    ) -> IssuedPending:
        """A token that only the second-factor endpoints accept (UTMStack's shape:
        ``auth`` = ROLE_PRE_VERIFICATION_USER, ``authenticated`` false), for a separate
        audience (v10/v11's, or v12's ``PRE_AUTH_AUDIENCE_SUFFIX``) so that :meth:`verify`
        refuses it everywhere else."""
        payload: dict[str, Any] = {
            "sub": subject,
            "auth": ROLE_PRE_VERIFICATION_USER,
            "authenticated": False,
            "uid": user_id,
            **self._registered_claims(audience=self._audience + audience_suffix, now=now, ttl=ttl),
            "rme": remember_me,
        }
        claims = PendingClaims(
            subject=subject,
            user_id=user_id,
            token_id=payload["jti"],
            issued_at=datetime.fromtimestamp(payload["iat"], UTC),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            remember_me=remember_me,
        )
        return IssuedPending(token=self._sign(payload), claims=claims)

    def verify_pre_verification(
        self, token: str, *, now: datetime, audience_suffix: str = PRE_VERIFICATION_AUDIENCE_SUFFIX
    ) -> PendingClaims:
        """Verify a pre-verification token of the audience ``audience_suffix`` names (and
        nothing else: any other token has the wrong audience). Raises like :meth:`verify`."""
        payload = self._decode(token, audience=self._audience + audience_suffix)
        if (
            payload.get("authenticated") is not False
            or payload.get("auth") != ROLE_PRE_VERIFICATION_USER
            or not isinstance(payload.get("rme", False), bool)
        ):
            raise TokenInvalid(reason=Reason.INVALID_CLAIMS)
        claims = self._claims_from({**payload, "authenticated": True}, now=now.timestamp())
        return PendingClaims(
            subject=claims.subject,
            user_id=claims.user_id,
            token_id=claims.token_id,
            issued_at=claims.issued_at,
            expires_at=claims.expires_at,
            remember_me=bool(payload.get("rme", False)),
        )

    def _registered_claims(self, *, audience: str, now: datetime, ttl: timedelta) -> dict[str, Any]:
        """``iss``, ``aud``, ``iat``, ``nbf``, ``exp`` and a fresh ``jti`` for a token
        issued at ``now`` for ``ttl``."""
        # Floored, never rounded up: ``iat`` must not claim a later instant than the
        # real one, or a token issued just before a revocation could pass as issued after.
        issued_at = math.floor(now.timestamp() * 1000) / 1000
        return {
            "iss": self._issuer,
            "aud": audience,
            "iat": issued_at,
            "nbf": int(issued_at),
            "exp": int((now + ttl).timestamp()),
            "jti": secrets.token_urlsafe(16),
        }

    def _sign(self, payload: dict[str, Any]) -> str:
        key = self._keyring.active
        return jwt.encode(payload, key.private, algorithm=key.algorithm, headers={"kid": key.kid})

    def verify(self, token: str, *, now: datetime) -> TokenClaims:
        """Verify ``token`` completely and return its claims.

        Raises:
            TokenInvalid: malformed, wrong algorithm, unknown key, bad signature,
                wrong issuer/audience, missing or mistyped claims, not yet valid.
            TokenExpired: a genuine token whose ``exp`` has passed.
        """
        return self._claims_from(self._decode(token, audience=self._audience), now=now.timestamp())

    def _decode(self, token: str, *, audience: str) -> dict[str, Any]:
        """The signed payload of ``token`` for ``audience`` (times unchecked)."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid(reason=Reason.TOKEN_TOO_LONG)
        if not is_canonical_compact_jws(token):
            raise TokenInvalid(reason=Reason.MALFORMED_TOKEN)
        try:
            return verify_jws(
                self._keyring,
                token,
                audience=audience,
                issuer=self._issuer,
                required=_REQUIRED_CLAIMS,
            )
        except JwsRefused as refused:
            raise TokenInvalid(reason=_REASONS[refused.fault]) from None

    def _claims_from(self, payload: dict[str, Any], *, now: float) -> TokenClaims:
        token_id = payload["jti"]
        session_id = payload.get("sid")
        # The guard's checks plus the claims only authgate reads (``jti``, ``sid``);
        # every malformed claim is refused before the times are looked at.
        if not (
            isinstance(token_id, str)
            and token_id
            and (session_id is None or (isinstance(session_id, str) and session_id))
        ):
            raise TokenInvalid(reason=Reason.INVALID_CLAIMS)
        verdict = check_claims(payload, now=now, leeway=self._leeway)
        if verdict != "valid":
            if verdict == "expired":
                raise TokenExpired(reason=Reason.TOKEN_EXPIRED)
            if verdict == "not_yet_valid":
                raise TokenInvalid(reason=Reason.TOKEN_NOT_YET_VALID)
            raise TokenInvalid(reason=Reason.INVALID_CLAIMS)
        return TokenClaims(
            subject=payload["sub"],
            user_id=payload["uid"],
            authorities=parse_authorities(payload["auth"]),
            token_id=token_id,
            issued_at=datetime.fromtimestamp(payload["iat"], UTC),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            session_id=session_id,
            second_factor=isinstance(amr := payload.get("amr"), list) and "otp" in amr,
        )
