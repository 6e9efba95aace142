"""The service credential format (``X-Internal-Key``), and its keyed hash.

A service credential looks like ``ags_<id>_<secret>`` (60 characters)::

    ags_Zx81QmT0aB3c_4fG...(43 characters of secret)

* ``ags_`` (authgate service) tells it apart from an API key (``agk_``) and a JWT at a
  glance, for people and secret scanners;
* ``<id>``: 12 base62 characters, public: how the credential is looked up and shown;
* ``<secret>``: 43 base62 characters (256 random bits).

It is stored like an API key (``keys.py``): only ``HMAC-SHA256(pepper, credential)``,
compared in constant time. No checksum: a service credential is pasted into one
configuration file by an administrator, not typed by people in many places, and the
shape check already refuses anything else before a lookup.

An **adopted** secret is one a service already has (UTMStack's installation-wide
``INTERNAL_KEY``, which its installer gives log-input, agent-manager and the backend
alike), taken on by ``authgate service-credentials create|rotate --secret-stdin`` so the
service needs no new configuration. It has no public id in it, so it is stored the same
way (the same HMAC, never the secret) and found by that keyed hash, which has an index.
It must look strong (:func:`adopted_secret_problem`) and may never start with ``ags_``
(nor ``agk_``): a value that starts with ``ags_`` is only ever looked up by its id, so
an adopted secret can neither collide with nor shadow a generated credential.
"""

from __future__ import annotations

import itertools
import math
import re
import secrets
import zlib
from dataclasses import dataclass
from typing import Final

from authgate.security.keys import KEY_PREFIX, key_digest, new_key_id

CREDENTIAL_PREFIX: Final = "ags_"
SECRET_LENGTH: Final = 43  # 62**43 > 2**256
SCANNER_REGEX: Final = r"\bags_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}\b"

_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SHAPE = re.compile(r"ags_([0-9A-Za-z]{12})_[0-9A-Za-z]{43}")


@dataclass(frozen=True, slots=True)
class ServiceSecret:
    credential_id: str
    plaintext: str

    def __repr__(self) -> str:  # never print the secret
        return f"ServiceSecret(credential_id={self.credential_id!r})"


def generate_credential() -> ServiceSecret:
    """A new credential with a new public id."""
    return generate_secret_for(new_key_id())


def generate_secret_for(credential_id: str) -> ServiceSecret:
    """A new secret for an existing credential id (rotation keeps the id)."""
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return ServiceSecret(credential_id, f"{CREDENTIAL_PREFIX}{credential_id}_{secret}")


def credential_id_of(presented: str) -> str | None:
    """The public id of a well-formed credential, ``None`` for anything else (an API key,
    a JWT, random text): refused without a lookup."""
    match = _SHAPE.fullmatch(presented)
    return match.group(1) if match else None


def credential_digest(pepper: bytes, plaintext: str) -> str:
    """HMAC-SHA256 of the whole credential under the server's pepper, hex-encoded."""
    return key_digest(pepper, plaintext)


# -- adopted secrets ---------------------------------------------------------------------

ADOPTED_MIN_LENGTH: Final = 32
ADOPTED_MAX_LENGTH: Final = 256
ADOPTED_MIN_BITS: Final = 128
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
_CLASSES: Final = (
    (str.isdigit, 10),
    (str.islower, 26),
    (str.isupper, 26),
)
_OTHER_VISIBLE = 94 - 10 - 26 - 26


def apparent_entropy_bits(secret: str) -> float:
    """A rough upper estimate of a secret's randomness, to refuse the obviously weak: the
    least of three readings.

    * The character classes it uses (digits, lower case, upper case, other), the
      alphabet counted as at most three times the number of distinct characters (one character
      32 times is not 32 random letters), per character; a character that continues a
      run of four or more, each one code point above the one before, or each one below,
      or each the same (``abcd``, ``4321``, ``aaaa``), counts one bit.
    * The same per character, times the length of its shortest repeating unit
      (``Passw0rd!Passw0rd!`` counts 9).
    * What zlib makes of it, in bits: a pattern repeated with a tail (``abc...abcd``) or
      any other redundancy shrinks it.

    UTMStack's installer draws 32 characters from [A-Za-z0-9] (about 190 bits): this
    says 160 or more; 32 random hex digits, 130 or more. Words are not recognised."""
    pool = 0
    for test, size in _CLASSES:
        if any(test(character) for character in secret):
            pool += size
    if any(not character.isalnum() for character in secret):
        pool += _OTHER_VISIBLE
    alphabet = min(pool, 3 * len(set(secret)))
    if alphabet <= 1:
        return 0.0
    per_character = math.log2(alphabet)
    predictable = _in_runs(secret)
    by_classes = (len(secret) - predictable) * per_character + predictable
    repeated = _period(secret) * per_character
    compressed = 8.0 * max(0, len(zlib.compress(secret.encode(), 9)) - _ZLIB_OVERHEAD)
    return min(by_classes, repeated, compressed)


# zlib's own bytes around the compressed data: a 2-byte header and a 4-byte checksum.
_ZLIB_OVERHEAD: Final = 6
_RUN: Final = 4


def _in_runs(text: str) -> int:
    """The characters that continue a run of at least ``_RUN`` characters each one code
    point above the one before it, or each one below, or each the same (``abcd``,
    ``4321``, ``aaaa``; the first of a run is not counted)."""
    counted = 0
    length = 1
    step = None
    for before, character in itertools.pairwise(text):
        difference = ord(character) - ord(before)
        if abs(difference) <= 1 and (length == 1 or difference == step):
            length += 1
            if length == _RUN:
                counted += _RUN - 1
            elif length > _RUN:
                counted += 1
        else:
            length = 2 if abs(difference) <= 1 else 1
        step = difference
    return counted


def _period(text: str) -> int:
    """The length of the shortest unit ``text`` repeats at least twice (its own length
    when none): the longest proper prefix that is also a suffix (Knuth-Morris-Pratt)."""
    border = [0] * len(text)
    for index in range(1, len(text)):
        length = border[index - 1]
        while length and text[index] != text[length]:
            length = border[length - 1]
        border[index] = length + 1 if text[index] == text[length] else 0
    period = len(text) - border[-1] if text else 0
    return period if 2 * period <= len(text) else len(text)  # repeated at least twice


def adopted_secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot be adopted (a message that never repeats it), or None."""
    if len(secret) < ADOPTED_MIN_LENGTH:
        return f"The secret must be at least {ADOPTED_MIN_LENGTH} characters long."
    if len(secret) > ADOPTED_MAX_LENGTH:
        return f"The secret must be at most {ADOPTED_MAX_LENGTH} characters long."
    if not secret.isascii() or _VISIBLE_ASCII.fullmatch(secret) is None:
        return (
            "The secret may hold only visible ASCII characters (no spaces, no control or "
            "non-ASCII characters): it is sent in an HTTP header."
        )
    if secret.startswith((CREDENTIAL_PREFIX, KEY_PREFIX)):
        return (
            "The secret starts like an authgate credential or API key (ags_, agk_): adopt "
            "only a service's own secret; authgate's credentials are made by create or rotate."
        )
    if apparent_entropy_bits(secret) < ADOPTED_MIN_BITS:
        return (
            f"The secret looks too weak (less than {ADOPTED_MIN_BITS} bits of apparent "
            "randomness: too few different characters, or a repeated pattern). Use a "
            "random secret, e.g. 32 random letters and digits."
        )
    return None


def may_be_adopted(presented: str) -> bool:
    """Whether ``presented`` could be an adopted secret, so is worth a lookup by its keyed
    hash: anything that starts with ``ags_`` takes the id path only."""
    return (
        ADOPTED_MIN_LENGTH <= len(presented) <= ADOPTED_MAX_LENGTH
        and presented.isascii()
        and _VISIBLE_ASCII.fullmatch(presented) is not None
        and not presented.startswith((CREDENTIAL_PREFIX, KEY_PREFIX))
    )
