"""Second-factor primitives: TOTP (RFC 6238), one-time codes, the secret box.

Pure values and functions, no I/O:

* TOTP codes are 6 digits over 30-second steps (what every authenticator app speaks);
  a code is accepted for the step before, the current one and the next (clock drift),
  and only for a step later than the last one accepted, so a code is never accepted
  twice (no replay within its window).
* Recovery and e-mail codes are random, shown or sent once, and stored only as an
  HMAC under the second-factor key: a database dump reveals none of them.
* TOTP secrets are stored encrypted (AES-256-GCM under a key derived from the
  second-factor key, the user id bound as associated data so a ciphertext copied to
  another user's row does not decrypt). UTMStack stores them in plaintext.
* A secret brought from elsewhere (an import) is read as authenticator apps read a
  typed one, and refused when no code can be computed from it (``usable_totp_secret``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from typing import Final

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOTP_DIGITS: Final = 6
TOTP_STEP_SECONDS: Final = 30
# Steps accepted either side of the current one (RFC 6238 section 5.2 drift).
TOTP_DRIFT_STEPS: Final = 1
# An e-mailed code works for 5 minutes: UTMStack v10's code page counts down from 4:59
# (its codes come from 300-second windows), and a user may take that long to find the
# mail. Six digits and the lock after five wrong codes bound guessing, not the lifetime.
EMAIL_CODE_SECONDS: Final = 300
# What UTMStack v11 reports as an e-mailed code's ``tfaExpiresInSeconds`` (its UI counts
# down from it before offering to send another).
EMAIL_CHALLENGE_SECONDS: Final = 120
RECOVERY_CODE_COUNT: Final = 10
# 10 characters of a 32-letter alphabet without look-alikes: 50 bits, shown as xxxxx-xxxxx.
_RECOVERY_ALPHABET: Final = "abcdefghjkmnpqrstuvwxyz23456789"
_RECOVERY_LENGTH: Final = 10
_NONCE_BYTES: Final = 12
# 112 bits: NIST SP 800-63B's minimum for an OTP key, which pyotp (from 2.10) enforces
# when it computes a code; checked here too, so that a shorter secret is refused the
# same way whichever pyotp is installed.
_MIN_TOTP_SECRET_BYTES: Final = 14


class SecretUnreadable(Exception):
    """A stored secret does not decrypt under the configured key (wrong key, or a row
    that was tampered with or copied between users). Never shown to a caller."""


def new_totp_secret() -> str:
    """A fresh base32 TOTP secret (160 bits, RFC 4226's recommendation)."""
    return pyotp.random_base32(32)


def usable_totp_secret(secret: str) -> str | None:
    """``secret`` as authenticator apps take a typed one (spaces and hyphens dropped,
    upper case, ``=`` padding left to the decoder, which adds what base32 needs), or
    ``None`` when codes cannot be computed from it: not base32, or under 112 bits."""
    raw = "".join(secret.split()).replace("-", "")
    if not raw.isascii():  # before upper(): "ß".upper() is "SS", two base32 letters
        return None
    raw = raw.upper().rstrip("=")
    try:
        key = base64.b32decode(raw + "=" * (-len(raw) % 8))
    except binascii.Error:
        return None
    return raw if len(key) >= _MIN_TOTP_SECRET_BYTES else None


def totp_step(timestamp: float) -> int:
    return int(timestamp // TOTP_STEP_SECONDS)


def totp_code(secret: str, step: int) -> str:
    """The code of ``step`` (tests compute codes with it too)."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP_SECONDS).at(
        step * TOTP_STEP_SECONDS
    )


def matching_totp_step(secret: str, code: str, *, now: float, after_step: int | None) -> int | None:
    """The step whose code ``code`` is, within the drift window and later than
    ``after_step`` (the last step accepted), or ``None``. Comparisons are constant-time."""
    if not is_numeric_code(code):
        return None
    current = totp_step(now)
    matched = None
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if after_step is not None and step <= after_step:
            continue
        if hmac.compare_digest(totp_code(secret, step), code) and matched is None:
            matched = step
    return matched


def provisioning_uri(secret: str, *, login: str, issuer: str) -> str:
    """``otpauth://totp/<issuer>:<login>?secret=...&issuer=<issuer>`` for QR codes."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP_SECONDS).provisioning_uri(
        name=login, issuer_name=issuer
    )


def is_numeric_code(code: str) -> bool:
    return len(code) == TOTP_DIGITS and code.isascii() and code.isdigit()


def new_numeric_code() -> str:
    """A random 6-digit code (e-mail codes)."""
    return f"{secrets.randbelow(10**TOTP_DIGITS):0{TOTP_DIGITS}d}"


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """``count`` recovery codes shaped ``abcde-fghjk``."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def normalized_recovery_code(code: str) -> str | None:
    """A typed recovery code in its canonical form (case, spaces and dashes forgiven),
    or ``None`` when it cannot be one."""
    raw = "".join(code.split()).replace("-", "").lower()
    if len(raw) != _RECOVERY_LENGTH or any(c not in _RECOVERY_ALPHABET for c in raw):
        return None
    return f"{raw[:5]}-{raw[5:]}"


class SecondFactorKey:
    """The deployment's second-factor key (outside the database, shared by all nodes):
    it encrypts TOTP secrets and keys the hashes of one-time codes. Purpose-specific
    subkeys are derived from it, so the two uses never share a key."""

    __slots__ = ("_codes", "_fingerprint", "_secrets")

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the second-factor key must be at least 32 bytes")
        self._secrets = AESGCM(_derive(key, b"authgate tfa totp secrets v1"))
        self._codes = _derive(key, b"authgate tfa one-time codes v1")
        self._fingerprint = _derive(key, b"authgate tfa key fingerprint v1").hex()[:16]

    def __repr__(self) -> str:
        return f"SecondFactorKey(fingerprint={self._fingerprint})"

    @property
    def fingerprint(self) -> str:
        """Identifies the key without revealing it."""
        return self._fingerprint

    def encrypt(self, secret: str, *, user_id: int) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._secrets.encrypt(nonce, secret.encode("ascii"), _bound_to(user_id))
        return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, stored: str, *, user_id: int) -> str:
        version, _, body = stored.partition(".")
        if version != "v1":
            raise SecretUnreadable("unknown secret format")
        try:
            raw = base64.urlsafe_b64decode(body.encode("ascii"))
            plain = self._secrets.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _bound_to(user_id)
            )
        except (InvalidTag, ValueError):
            raise SecretUnreadable("the secret does not decrypt under this key") from None
        return plain.decode("ascii")

    def code_hash(self, code: str, *, user_id: int, purpose: str) -> str:
        """HMAC-SHA256 of a one-time code, bound to its user and purpose (hex)."""
        message = f"{purpose}\x00{user_id}\x00{code}".encode()
        return hmac.new(self._codes, message, hashlib.sha256).hexdigest()


def _derive(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, label, hashlib.sha256).digest()


def _bound_to(user_id: int) -> bytes:
    return f"user:{user_id}".encode("ascii")
