"""Reading credentials from request headers (no I/O, no framework types)."""

from __future__ import annotations

import hmac


def bearer_credential(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <credential>`` header value.

    The scheme is matched case-insensitively (RFC 7235), unlike UTMStack. Returns
    ``None`` when there is no header or it uses another scheme, and ``""`` for a
    ``Bearer`` header without a credential (which callers must reject, not ignore).
    """
    if not authorization:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip()


def secrets_equal(presented: str, expected: str) -> bool:
    """Whether ``presented`` equals ``expected``, in time independent of where they differ.

    Compares the UTF-8 bytes: ``hmac.compare_digest`` refuses ``str`` arguments with
    non-ASCII characters (``TypeError``), and what a client presents (a header decoded
    as latin-1, a form field) may hold any character. Characters UTF-8 cannot encode
    (lone surrogates) are replaced first, which can only make a match impossible.
    """
    return hmac.compare_digest(
        presented.encode("utf-8", "replace"), expected.encode("utf-8", "replace")
    )
