"""Reading a signed checkpoint: what a reader is told for each way a JWS is refused.

The service and the command line show these messages as they are (they hold no
secret), so each is pinned here; the service-level tests are in
tests/services/test_audit_checkpoints.py.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from authgate.security import audit_checkpoints, tokens
from authgate.security.audit_checkpoints import (
    CHECKPOINT_TYPE,
    Checkpoint,
    CheckpointInvalid,
    read_checkpoint,
    sign_checkpoint,
)
from authgate.security.signing_keys import (
    JwsFault,
    KeyRing,
    generate_signing_key,
    hmac_signing_key,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
RING = KeyRing([generate_signing_key("ES256", now=NOW)])
STATEMENT = Checkpoint(position=7, hash="a" * 64, time=NOW, node="n1")
CLAIMS = STATEMENT.claims(issuer="authgate")


def signed(
    claims: dict[str, Any], *, ring: KeyRing = RING, headers: dict[str, Any] | None = None
) -> str:
    key = ring.active
    header = {"kid": key.kid, "typ": CHECKPOINT_TYPE, **(headers or {})}
    return jwt.encode(claims, key.private, algorithm=key.algorithm, headers=header)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _with_header(token: str, header: dict[str, Any]) -> str:
    _, payload, signature = token.split(".")
    return f"{_b64(json.dumps(header).encode())}.{payload}.{signature}"


def _cases() -> dict[str, tuple[str, str]]:
    token = sign_checkpoint(RING, STATEMENT, issuer="authgate")
    header, payload, signature = token.split(".")
    other = KeyRing([generate_signing_key("ES256", now=NOW)])
    return {
        "too long": ("a" * 5000, "not an audit checkpoint"),
        "not ascii": ("é" + token, "not an audit checkpoint"),
        "garbage": ("not-a-jws", "not an audit checkpoint"),
        "wrong typ": (
            signed(CLAIMS, headers={"typ": "JWT", "kid": "nobody"}),
            "not an audit checkpoint (wrong typ)",
        ),
        "unknown key": (
            sign_checkpoint(other, STATEMENT, issuer="authgate"),
            "the checkpoint's signing key is not in this deployment's key ring",
        ),
        "algorithm of another key": (
            _with_header(token, {"alg": "EdDSA", "kid": RING.active.kid, "typ": CHECKPOINT_TYPE}),
            "the checkpoint's algorithm does not match its key",
        ),
        "changed signature": (
            f"{header}.{payload}.{signature[:-4]}AAAA",
            "the checkpoint's signature does not verify",
        ),
        "other issuer": (
            sign_checkpoint(RING, STATEMENT, issuer="elsewhere"),
            "the checkpoint is of another issuer or audience",
        ),
        "other audience": (
            signed({**CLAIMS, "aud": "authgate-api"}),
            "the checkpoint is of another issuer or audience",
        ),
        "missing claim": (
            signed({k: v for k, v in CLAIMS.items() if k != "node"}),
            "the checkpoint's claims are invalid",
        ),
        "mistyped claim": (
            signed({**CLAIMS, "position": "7"}),
            "the checkpoint's claims are invalid",
        ),
        # A checkpoint carries no nbf; one that does is read as PyJWT always read it.
        "nbf ahead": (
            signed({**CLAIMS, "nbf": int(datetime.now(UTC).timestamp()) + 3600}),
            "the checkpoint's claims are invalid",
        ),
        "nbf not a number": (
            signed({**CLAIMS, "nbf": "x"}),
            "the checkpoint's claims are invalid",
        ),
    }


CASES = _cases()


@pytest.mark.parametrize(("token", "message"), CASES.values(), ids=CASES.keys())
def test_each_refusal_says_why(token: str, message: str) -> None:
    """Each way a checkpoint is refused has its own message, and only that one."""
    with pytest.raises(CheckpointInvalid) as caught:
        read_checkpoint(RING, token, issuer="authgate")
    assert str(caught.value) == message


def test_a_checkpoint_reads_back_as_signed() -> None:
    """A checkpoint of this ring reads back as the statement it was signed from."""
    token = sign_checkpoint(RING, STATEMENT, issuer="authgate")
    assert read_checkpoint(RING, token, issuer="authgate") == STATEMENT


def test_a_checkpoint_without_kid_verifies_only_with_a_shared_secret_ring() -> None:
    """As for access tokens, a missing ``kid`` names the HS512 ring's one key, and no
    key of an asymmetric ring."""
    shared = KeyRing([hmac_signing_key(bytes(range(64)), now=NOW)])
    token = jwt.encode(
        CLAIMS, shared.active.private, algorithm="HS512", headers={"typ": CHECKPOINT_TYPE}
    )
    assert read_checkpoint(shared, token, issuer="authgate") == STATEMENT
    without_kid = _with_header(signed(CLAIMS), {"alg": "ES256", "typ": CHECKPOINT_TYPE})
    with pytest.raises(CheckpointInvalid, match="signing key is not in"):
        read_checkpoint(RING, without_kid, issuer="authgate")


def test_every_refusal_of_the_signature_layer_has_a_message() -> None:
    """Each ``JwsFault`` of ``verify_jws`` is worded for checkpoint readers (and given a
    reason for access tokens): a new fault cannot surface as a KeyError."""
    assert set(audit_checkpoints._REFUSALS) == set(JwsFault)
    assert set(tokens._REASONS) == set(JwsFault)
