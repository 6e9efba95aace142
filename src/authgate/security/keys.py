"""The API key format, and keyed hashing of keys.

A key looks like ``agk_<id>_<secret><checksum>`` (66 characters)::

    agk_Zx81QmT0aB3c_4fG...(43 characters of secret)...k2LmQ9

* ``agk_`` names the product, so people and secret scanners recognise a leaked key;
* ``<id>``: 12 base62 characters, public, unique: how a key is looked up and shown;
* ``<secret>``: 43 base62 characters = 256 random bits;
* ``<checksum>``: 6 base62 characters of CRC32 over everything before it, so typos and
  random strings are refused before any lookup (the idea of GitHub's token format).

Only ``HMAC-SHA256(pepper, key)`` is stored. A fast keyed hash suits keys: they carry
256 bits of entropy, so there is nothing to brute-force, and without the pepper (kept
outside the database) a stolen database cannot even test a guessed key. Passwords, which
are guessable, get Argon2 instead (``passwords.py``).

Keys imported from UTMStack (``authgate import utmstack``) keep working unchanged: a
**legacy key** is 43 characters of unpadded URL-safe base64 (32 random bytes). Its
format is told by shape alone, never by trying a lookup: exactly 43 characters of
``[A-Za-z0-9_-]``, where an ``agk_`` key has 66 and a JWT has dots. A legacy key has no
key id, so it is looked up by its keyed hash (the same HMAC), which has an index.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass
from typing import AnyStr, Final

from authgate.exceptions import ApiKeyInvalid
from authgate.reasons import Reason

KEY_PREFIX: Final = "agk_"
KEY_ID_LENGTH: Final = 12
SECRET_LENGTH: Final = 43  # 62**43 > 2**256
CHECKSUM_LENGTH: Final = 6  # 62**6 > 2**32
KEY_LENGTH: Final = len(KEY_PREFIX) + KEY_ID_LENGTH + 1 + SECRET_LENGTH + CHECKSUM_LENGTH

# For secret scanners (gitleaks, GitHub custom patterns); documented in the README.
SCANNER_REGEX: Final = r"\bagk_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}\b"

_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SHAPE = re.compile(r"agk_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}")
_CHECKED_LENGTH = KEY_LENGTH - CHECKSUM_LENGTH

LEGACY_KEY_LENGTH: Final = 43  # UTMStack: 32 bytes as unpadded URL-safe base64
_LEGACY_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    plaintext: str

    def __repr__(self) -> str:  # never print the secret
        return f"ParsedKey(key_id={self.key_id!r})"


def looks_like_api_key(credential: str) -> bool:
    """Tells a key (``agk_`` or legacy) from a JWT by format alone: a JWT starts with
    ``eyJ`` and has two dots, which neither kind of key has."""
    return is_legacy_key(credential) or credential.startswith(KEY_PREFIX)


def is_legacy_key(credential: str) -> bool:
    """Whether ``credential`` has the shape of a key imported from UTMStack.

    Checked before the ``agk_`` prefix: the length alone tells the two kinds apart, so
    a legacy key that happens to begin with ``agk_`` is still a legacy key.
    """
    return len(credential) == LEGACY_KEY_LENGTH and _LEGACY_SHAPE.fullmatch(credential) is not None


def check_key_shape(credential: str) -> None:
    """Raise ``ApiKeyInvalid`` unless ``credential`` is a well-formed key of either kind
    (an ``agk_`` key's checksum included). What a client can check without a lookup."""
    if not is_legacy_key(credential):
        parse_key(credential)


def key_id_of(credential: str) -> str:
    """The key id (``agk_<key_id>_...``) of a well-formed key (no validation: a cache
    probe only)."""
    return credential[len(KEY_PREFIX) : len(KEY_PREFIX) + KEY_ID_LENGTH]


def generate_key() -> ParsedKey:
    """A new random key (its plaintext is shown to the user once, then only hashed)."""
    return generate_secret_for(new_key_id())


def new_key_id() -> str:
    """A new random key id, the public part of a key (a key imported from UTMStack gets
    one too, for display, caches, and the ``agk_`` key its rotation gives)."""
    return _base62(secrets.randbelow(62**KEY_ID_LENGTH), KEY_ID_LENGTH)


def generate_secret_for(key_id: str) -> ParsedKey:
    """A new secret for an existing key id (rotation keeps the id)."""
    secret = _base62(secrets.randbelow(62**SECRET_LENGTH), SECRET_LENGTH)  # ~256 bits
    body = f"{KEY_PREFIX}{key_id}_{secret}"
    return ParsedKey(key_id=key_id, plaintext=body + _checksum(body))


def parse_key(credential: str) -> ParsedKey:
    """Check shape and checksum; raises ``ApiKeyInvalid`` for anything else."""
    if len(credential) != KEY_LENGTH or not _SHAPE.fullmatch(credential):
        raise ApiKeyInvalid(reason=Reason.MALFORMED_KEY)
    body = credential[:_CHECKED_LENGTH]
    if not hmac.compare_digest(credential[_CHECKED_LENGTH:], _checksum(body)):
        raise ApiKeyInvalid(reason=Reason.BAD_CHECKSUM)
    return ParsedKey(key_id=key_id_of(credential), plaintext=credential)


def display_prefix(key_id: str, plaintext_tail: str) -> str:
    """The masked form shown in lists: id and the last 4 characters (checksum only)."""
    return f"{KEY_PREFIX}{key_id}_…{plaintext_tail[-4:]}"


def legacy_display_prefix(key_id: str) -> str:
    """The masked form of a legacy key: no character of it (it has no public part),
    only the id its row was given at import (a rotation makes it ``agk_<id>_...``)."""
    return f"legacy:{key_id}"


def key_digest(pepper: bytes, plaintext: str) -> str:
    """HMAC-SHA256 of the whole key under the server's pepper, hex-encoded."""
    return hmac.new(pepper, plaintext.encode("ascii"), hashlib.sha256).hexdigest()


def raw_key_digest(pepper: bytes, plaintext: str) -> bytes:
    """:func:`key_digest` as raw bytes (what the verification cache holds)."""
    return hmac.new(pepper, plaintext.encode("ascii"), hashlib.sha256).digest()


def digests_match(expected: AnyStr, actual: AnyStr) -> bool:
    return hmac.compare_digest(expected, actual)


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(_ALPHABET[remainder])
    if number:
        raise ValueError("number does not fit the width")
    return "".join(reversed(digits))
