"""Reading credentials from request headers (no I/O, no framework types)."""

from __future__ import annotations


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
