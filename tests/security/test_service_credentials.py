"""The service credential format (``ags_<id>_<secret>``) and its keyed hash."""

from __future__ import annotations

import re
import secrets

from authgate.security import keys
from authgate.security.service_credentials import (
    SCANNER_REGEX,
    adopted_secret_problem,
    apparent_entropy_bits,
    credential_digest,
    credential_id_of,
    generate_credential,
    generate_secret_for,
    may_be_adopted,
)

PEPPER = b"p" * 32


def test_a_new_credential_has_the_documented_shape_and_is_found_by_its_id() -> None:
    made = generate_credential()
    assert len(made.plaintext) == 60
    assert re.fullmatch(SCANNER_REGEX, made.plaintext)
    assert credential_id_of(made.plaintext) == made.credential_id
    assert made.plaintext not in repr(made)


def test_rotation_keeps_the_id_and_draws_a_new_secret() -> None:
    made = generate_credential()
    rotated = generate_secret_for(made.credential_id)
    assert rotated.credential_id == made.credential_id
    assert rotated.plaintext != made.plaintext


def test_anything_else_has_no_id() -> None:
    """API keys, JWTs, blanks and near misses are refused without a lookup."""
    made = generate_credential().plaintext
    for other in (
        keys.generate_key().plaintext,
        "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
        "",
        made[:-1],
        made + "x",
        made.replace("ags_", "agk_"),
        made[:20] + "-" + made[21:],
        f" {made}",
    ):
        assert credential_id_of(other) is None, other


def test_the_digest_is_keyed() -> None:
    made = generate_credential().plaintext
    assert credential_digest(PEPPER, made) == credential_digest(PEPPER, made)
    assert credential_digest(PEPPER, made) != credential_digest(b"q" * 32, made)
    assert len(credential_digest(PEPPER, made)) == 64


# -- adopted secrets ---------------------------------------------------------------------


def test_secrets_like_utmstacks_and_other_random_ones_may_be_adopted() -> None:
    """UTMStack's installer draws INTERNAL_KEY as 32 characters of [A-Za-z0-9]
    (installer/utils/secret.go GenerateSecret(32)); 32 random hex digits (128 bits) and
    token_urlsafe pass too, every time."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    for _ in range(2000):
        for secret in (
            "".join(secrets.choice(alphabet) for _ in range(32)),
            secrets.token_hex(16),
            secrets.token_urlsafe(32),
        ):
            assert adopted_secret_problem(secret) is None, secret
            assert may_be_adopted(secret)


def test_weak_or_unfit_secrets_are_refused_with_a_message_that_does_not_repeat_them() -> None:
    made = generate_credential().plaintext
    for secret in (
        "",
        "Zx81QmT0aB3c4fGq7Lk2",  # 20 characters
        "a" * 40,
        "ab" * 20,
        "0123456789" * 4,
        "Passw0rd!" * 4,
        "Passw0rd!" * 4 + "P",
        # A repeat with a tail, two letters, runs (diff review: all of these passed).
        "Passw0rd!" * 4 + "x",
        "a" * 63 + "b",
        "abc" * 40 + "d",
        "abcdefghijklmnopqrstuvwxyzABCDEF",
        "0123456789abcdef0123456789abcdeg",
        "x" * 257,
        "Zx81QmT0aB3c4fGq 7Lk2Np9RsTuVwXyZ01",  # a space
        "Zx81QmT0aB3c4fGq\u00e97Lk2Np9RsTuVwXyZ01",  # not ASCII
        made,  # an authgate credential: take it as it is
        made.replace("ags_", "agk_"),
        keys.generate_key().plaintext,
    ):
        problem = adopted_secret_problem(secret)
        assert problem is not None, secret
        assert not secret or secret not in problem


def test_values_that_start_with_ags_are_never_looked_up_by_hash() -> None:
    """An ``ags_`` value takes the id path only (a malformed one is refused without a
    lookup): an adopted secret can never stand for a generated credential."""
    made = generate_credential().plaintext
    for presented in (made, made[:-1], "ags_" + "Zx81QmT0aB3c4fGq7Lk2Np9RsTuVwXyZ01"):
        assert not may_be_adopted(presented)
    assert not may_be_adopted("short")
    assert not may_be_adopted("Zx81QmT0aB3c4fGq\u00e97Lk2Np9RsTuVwXyZ01")
    assert (
        apparent_entropy_bits("Passw0rd!" * 4)
        < 128
        <= apparent_entropy_bits("Zx81QmT0aB3c4fGq7Lk2Np9RsTuVwXyZ")
    )
