"""Sealing a small secret for storage: AES-256-GCM under a key derived from the server's
secret (the API key pepper, kept outside the database).

Used for UTMStack's TOTP secrets, which UTMStack stored in plaintext: an import keeps
them sealed until authgate's own second factor takes them over, so a stolen database
holds no usable second factor. The purpose label is bound into the key and the
ciphertext (associated data), so a sealed value cannot be replayed for another purpose.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = "v1"
_NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed value is corrupt, or was sealed under another secret or purpose."""


def seal(server_secret: bytes, purpose: str, plaintext: str) -> str:
    """``v1.<base64 nonce + ciphertext>``; never the same twice (random nonce)."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _cipher(server_secret, purpose).encrypt(nonce, plaintext.encode(), purpose.encode())
    return f"{_VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def unseal(server_secret: bytes, purpose: str, sealed: str) -> str:
    """The plaintext of :func:`seal`; raises ``SealError`` (without details) otherwise."""
    version, _, body = sealed.partition(".")
    if version != _VERSION:
        raise SealError("unknown sealed value version")
    try:
        raw = base64.urlsafe_b64decode(body.encode())
        opened = _cipher(server_secret, purpose).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], purpose.encode()
        )
    except (binascii.Error, InvalidTag, ValueError):
        raise SealError("cannot open the sealed value") from None
    return opened.decode()


def _cipher(server_secret: bytes, purpose: str) -> AESGCM:
    key = hmac.new(server_secret, b"authgate sealing v1 " + purpose.encode(), hashlib.sha256)
    return AESGCM(key.digest())
