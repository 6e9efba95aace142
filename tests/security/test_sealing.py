"""Sealing small secrets (UTMStack's TOTP secrets) under a key derived from the pepper."""

from __future__ import annotations

import base64

import pytest

from authgate.security.sealing import SealError, seal, unseal

SECRET = b"p" * 32


def test_sealed_value_opens_only_with_the_same_secret_and_purpose() -> None:
    """A round trip works; another server secret, another purpose or a flipped byte fail
    with SealError, and the sealed text does not contain the plaintext."""
    sealed = seal(SECRET, "second factor", "JBSWY3DPEHPK3PXP")
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert unseal(SECRET, "second factor", sealed) == "JBSWY3DPEHPK3PXP"
    # Flip one bit of the decoded bytes: flipping a base64 character can be a no-op when
    # it only changes the final character's unused padding bits.
    raw = bytearray(base64.urlsafe_b64decode(sealed[3:]))
    raw[len(raw) // 2] ^= 0x01
    flipped = "v1." + base64.urlsafe_b64encode(bytes(raw)).decode()
    for secret, purpose, value in (
        (b"q" * 32, "second factor", sealed),
        (SECRET, "other purpose", sealed),
        (SECRET, "second factor", flipped),
        (SECRET, "second factor", "v2." + sealed[3:]),
        (SECRET, "second factor", "v1.***"),
    ):
        with pytest.raises(SealError):
            unseal(secret, purpose, value)


def test_sealing_twice_gives_different_texts() -> None:
    assert seal(SECRET, "p", "same") != seal(SECRET, "p", "same")
