"""The service credential format (``ags_<id>_<secret>``) and its keyed hash."""

from __future__ import annotations

import re

from authgate.security import keys
from authgate.security.service_credentials import (
    SCANNER_REGEX,
    credential_digest,
    credential_id_of,
    generate_credential,
    generate_secret_for,
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
