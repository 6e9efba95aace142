"""TOTP codes (RFC 6238: HMAC-SHA1, 6 digits, 30 s), for automation that keeps a
second-factor secret. Standard library only: the SDK adds no dependency for it.

Keeping the secret next to the password makes the second factor a second copy of the
first: do it only for service accounts that cannot avoid password logins, and prefer an
API key, which needs no second factor at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time

__all__ = ["totp_now"]


def totp_now(secret: str, *, at: float | None = None, digits: int = 6, step: int = 30) -> str:
    """The current code of a base32 secret (as an authenticator app shows it)."""
    key = base64.b32decode(_padded(secret), casefold=True)
    counter = int((time.time() if at is None else at) // step)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 10**digits:0{digits}d}"


def _padded(secret: str) -> str:
    cleaned = "".join(secret.split()).upper()
    return cleaned + "=" * (-len(cleaned) % 8)
