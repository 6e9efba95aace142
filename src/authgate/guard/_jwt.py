"""Verifying authgate's JWTs locally, against the keys of its JWKS.

The checks of authgate's own ``security/tokens.py``: the header's ``kid`` names a
published key and its ``alg`` is that key's algorithm; the signature; ``iss`` and
``aud``; every claim authgate relies on is present and well typed; ``exp``, ``nbf`` and
``iat`` against the guard's clock (not PyJWT's wall clock) with a small leeway. The
claims are checked by the very code the server runs (``security/jwt_claims.py``).

What a local check cannot see: a logout or "log out everywhere", a deactivated user or
a removed role. So a token passes on its local checks alone only while it is younger
than ``local_jwt_max_age`` (its ``iat`` against the guard's clock); the guard sends an
older one to authgate as well (``_guard``), and ``verify_jwt_locally=False`` sends every
token there.

Only a caller holding a validly signed token learns that it expired; anything else
(malformed, forged, unknown key, wrong issuer) gets the same "Invalid token".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from authgate.guard._errors import REALM, NotAuthenticated
from authgate.guard._jwks import JwksCache
from authgate.guard._principal import GuardPrincipal
from authgate.security.jwt_claims import check_claims, is_canonical_compact_jws
from authgate.security.principal import parse_authorities

__all__ = ["JwtVerifier", "VerifiedToken"]

# authgate's tokens are well under 1 KB; longer ones are refused before parsing.
MAX_TOKEN_LENGTH = 4096
_REQUIRED_CLAIMS = ["sub", "uid", "auth", "exp", "iat", "iss"]


def _invalid() -> NotAuthenticated:
    return NotAuthenticated(
        "Invalid token",
        code="invalid_token",
        headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
    )


def _expired() -> NotAuthenticated:
    return NotAuthenticated(
        "Token expired",
        code="token_expired",
        headers={
            "WWW-Authenticate": f'{REALM}, error="invalid_token", error_description="Token expired"'
        },
    )


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token that passed every local check: its caller, and its age in seconds (now
    minus ``iat``; below 0 for a token issued within the leeway ahead of the clock)."""

    principal: GuardPrincipal
    age: float


class JwtVerifier:
    """Turns a bearer JWT into a :class:`VerifiedToken`, or raises ``NotAuthenticated``."""

    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str,
        audience: str | None,
        leeway: float,
        clock: Callable[[], float],
    ) -> None:
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._clock = clock
        self._required = [*_REQUIRED_CLAIMS, *(["aud"] if audience is not None else [])]

    async def verify(self, token: str) -> VerifiedToken:
        """Raises:
        NotAuthenticated: the token is not valid (401).
        AuthgateUnavailable: the keys to check it cannot be fetched (503).
        """
        if len(token) > MAX_TOKEN_LENGTH or not is_canonical_compact_jws(token):
            # As authgate: one spelling per token (PyJWT also takes ``sig==`` and a
            # last character's unused bits), so a denylist or a log matching token
            # strings sees the same token alike here and there.
            raise _invalid()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _invalid() from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid()
        key = await self._jwks.key_for(kid)
        # Each key verifies with its own algorithm only.
        if key is None or header.get("alg") != key.algorithm:
            raise _invalid()
        try:
            payload = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                issuer=self._issuer,
                audience=self._audience,
                options={
                    "require": self._required,
                    "verify_aud": self._audience is not None,
                    # Times are checked below against the injected clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError:
            raise _invalid() from None
        return self._verified(payload)

    def _verified(self, payload: dict[str, Any]) -> VerifiedToken:
        now = self._clock()
        verdict = check_claims(payload, now=now, leeway=self._leeway)
        if verdict == "expired":
            raise _expired()
        if verdict != "valid":
            raise _invalid()
        principal = GuardPrincipal(
            login=payload["sub"],
            user_id=payload["uid"],
            roles=parse_authorities(payload["auth"]),
            method="jwt",
            permissions=_names(payload.get("permissions")),
        )
        return VerifiedToken(principal, age=now - payload["iat"])


def _names(claim: object) -> frozenset[str]:
    """A list-of-names claim (``permissions``); anything else grants nothing."""
    if not isinstance(claim, list):
        return frozenset()
    return frozenset(name for name in claim if isinstance(name, str))
