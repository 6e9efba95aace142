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
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Final

from authgate.security.keys import key_digest, new_key_id

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
