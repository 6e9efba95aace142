"""Single-use password-reset keys: what a reset link carries.

A key is 32 random bytes (base64url, 43 characters), far beyond guessing, so a fast
unsalted SHA-256 is the right way to store it (as for API keys, never for passwords):
the database holds only the digest, a leaked row opens nothing. A key is valid for
:data:`RESET_KEY_TTL` (24 h, UTMStack's rule) and only once: finishing the reset
clears it, and issuing a new key for the user replaces the old one.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import quote

from authgate.storage.models import User

RESET_KEY_TTL: Final = timedelta(hours=24)
# An invitation (v12's create-user without a password) waits longer: 7 days, as in v12.
INVITATION_TTL: Final = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class IssuedResetKey:
    """A new reset key: the plaintext for the link (shown or mailed once) and what is
    stored."""

    key: str = field(repr=False)
    digest: str
    expires_at: datetime

    def link(self, page: str) -> str:
        """The link that finishes the reset: ``page`` (``HttpConfig.reset_page``: the
        Settings UI's, or UTMStack's /reset/finish) with the key."""
        return f"{page}?key={quote(self.key, safe='')}"


def reset_key_digest(key: str) -> str:
    """The stored form of a key (hex SHA-256)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def issue_reset_key(now: datetime, *, valid_for: timedelta = RESET_KEY_TTL) -> IssuedResetKey:
    key = secrets.token_urlsafe(32)
    return IssuedResetKey(key=key, digest=reset_key_digest(key), expires_at=now + valid_for)


def cancel_reset_link(user: User) -> None:
    """End the user's pending reset link, if any: a password set some other way, a new
    e-mail address or a deactivation must not leave a link (24 h, perhaps leaked or
    mailed to the old address) that sets the password afterwards."""
    user.reset_key_hash = None
    user.reset_key_expires_at = None
