"""The claim checks every verifier of authgate's access tokens makes, once.

``security/tokens.py`` (the server) and ``guard/_jwt.py`` (the SDK's guard) both verify
authgate's JWTs; after the signature, issuer and audience, both read the same claims
the same way. The verdict is neutral (``ClaimsVerdict``): each caller turns it
into its own error (the server's ``Reason``, the guard's 401).

Ships in the SDK (authgate-sdk) with the guard: standard library only, nothing else of
authgate.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "LATEST_TIMESTAMP",
    "ClaimsVerdict",
    "check_claims",
    "is_canonical_compact_jws",
    "is_time",
]

# Time claims outside [1970, 9999] are absurd; refusing them early also keeps huge JSON
# integers away from float arithmetic and datetime conversion.
LATEST_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z


# What :func:`check_claims` found, the first that applies in this order: "invalid" (a
# claim is missing its type or value), "expired" (``exp`` is more than the leeway in the
# past), "not_yet_valid" (``nbf`` or ``iat`` is more than the leeway ahead). Strings, not
# an Enum: this runs on every verification, and an Enum member costs a lookup of ~0.1 µs
# on Python 3.11 each time it is named; mypy still refuses a comparison with a typo.
ClaimsVerdict = Literal["valid", "invalid", "expired", "not_yet_valid"]


def is_time(value: object) -> bool:
    """A NumericDate authgate accepts: a number (not a bool) within [1970, 9999]."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 <= value <= LATEST_TIMESTAMP
    )


def check_claims(payload: Mapping[str, Any], *, now: float, leeway: float) -> ClaimsVerdict:
    """Check the claims of a signed, well-addressed access token against ``now``.

    ``payload`` holds ``sub``, ``uid``, ``auth``, ``exp`` and ``iat`` (PyJWT's
    ``require`` saw to it); ``nbf`` defaults to ``iat``. "invalid" for a mistyped
    claim, an empty subject, a bool ``uid`` (JSON's ``true`` is an int to Python) or
    ``authenticated`` other than true; then "expired", then "not_yet_valid", each
    within ``leeway`` seconds; else "valid". Types come first: a mistyped token that
    has also expired is "invalid", so only a well-formed token learns that it expired.
    """
    exp, iat = payload["exp"], payload["iat"]
    nbf = payload.get("nbf", iat)
    subject, user_id = payload["sub"], payload["uid"]
    if not (
        is_time(exp)
        and is_time(iat)
        and is_time(nbf)
        and isinstance(subject, str)
        and subject
        and isinstance(payload["auth"], str)
        and isinstance(user_id, int)
        and not isinstance(user_id, bool)
        and payload.get("authenticated", True) is True
    ):
        return "invalid"
    if now - leeway > exp:
        return "expired"
    if now + leeway < nbf or now + leeway < iat:
        return "not_yet_valid"
    return "valid"


_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def is_canonical_compact_jws(token: str) -> bool:
    """Three unpadded base64url parts (the signature may be empty: ``alg: none`` is
    refused by name later), each the one encoding of its bytes. PyJWT also
    decodes padding (``sig==``) and ignores the unused low bits of a part's last
    character, so one genuine token would have many spellings: each verified afresh
    (no cache hit), each a different string to whatever logs or compares tokens."""
    if not _COMPACT_JWS.fullmatch(token):
        return False
    for part in token.split("."):
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):  # a length no encoding has (4n + 1)
            return False
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != part:
            return False
    return True
