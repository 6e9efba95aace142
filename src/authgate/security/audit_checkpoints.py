"""Signed checkpoints of the audit chain: "at ``time``, the chain's newest record was
``position`` with hash ``hash``", as a compact JWS signed with the token signing key ring.

A checkpoint kept outside the database (a log, a SIEM, a webhook receiver, a file) is
what catches a database writer who rolls the whole trail back to an earlier state of
itself, which no key stored beside the data can. With ES256/EdDSA anyone holding the
JWK Set (``/.well-known/jwks.json``) can check one; with HS512 it is an HMAC under the
shared JWT secret.

A checkpoint is never an access token: it carries its own ``typ`` header and audience,
and none of ``sub``, ``uid``, ``auth``, ``jti`` or ``exp``, which every token verifier
of authgate requires. Pure: no I/O; times come from the caller.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from authgate.security.jwt_claims import LATEST_TIMESTAMP
from authgate.security.signing_keys import JwsFault, JwsRefused, KeyRing, verify_jws

CHECKPOINT_TYPE = "authgate-audit-checkpoint+jwt"
CHECKPOINT_AUDIENCE = "authgate-audit-checkpoint"
MAX_CHECKPOINT_LENGTH = 4096
MAX_NODE_LENGTH = 100

_REQUIRED_CLAIMS = ["iss", "aud", "iat", "position", "hash", "node"]
_HASH = re.compile(r"[0-9a-f]{64}")
# What a reader is told for each way the signature layer refuses a checkpoint.
_REFUSALS = {
    JwsFault.MALFORMED: "not an audit checkpoint",
    JwsFault.WRONG_TYPE: "not an audit checkpoint (wrong typ)",
    JwsFault.UNKNOWN_KEY: "the checkpoint's signing key is not in this deployment's key ring",
    JwsFault.ALGORITHM_MISMATCH: "the checkpoint's algorithm does not match its key",
    JwsFault.BAD_SIGNATURE: "the checkpoint's signature does not verify",
    JwsFault.WRONG_ISSUER_OR_AUDIENCE: "the checkpoint is of another issuer or audience",
    JwsFault.INVALID_CLAIMS: "the checkpoint's claims are invalid",
}


class CheckpointInvalid(ValueError):
    """Not a checkpoint signed by this deployment; the message says why (no secret)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a checkpoint states: record ``position`` (its id; 0 before the first record)
    had hash ``hash`` and was the chain's newest at ``time``, as seen by ``node``."""

    position: int
    hash: str
    time: datetime
    node: str

    def claims(self, *, issuer: str) -> dict[str, Any]:
        return {
            "iss": issuer,
            "aud": CHECKPOINT_AUDIENCE,
            "iat": int(self.time.timestamp()),
            "position": self.position,
            "hash": self.hash,
            "node": self.node[:MAX_NODE_LENGTH],
        }


def sign_checkpoint(ring: KeyRing, checkpoint: Checkpoint, *, issuer: str) -> str:
    """The checkpoint as a compact JWS signed with the ring's active key."""
    key = ring.active
    return jwt.encode(
        checkpoint.claims(issuer=issuer),
        key.private,
        algorithm=key.algorithm,
        headers={"kid": key.kid, "typ": CHECKPOINT_TYPE},
    )


def read_checkpoint(ring: KeyRing, token: str, *, issuer: str) -> Checkpoint:
    """Verify ``token``'s signature with ``ring`` and return what it states.

    Raises ``CheckpointInvalid`` for anything else: not a JWS, another ``typ``, an
    unknown key, a bad signature, another issuer or audience, missing or mistyped claims.
    """
    if len(token) > MAX_CHECKPOINT_LENGTH or not token.isascii():
        raise CheckpointInvalid("not an audit checkpoint")
    try:
        claims = verify_jws(
            ring,
            token,
            audience=CHECKPOINT_AUDIENCE,
            issuer=issuer,
            required=_REQUIRED_CLAIMS,
            typ=CHECKPOINT_TYPE,
            check_nbf=True,
        )
    except JwsRefused as refused:
        raise CheckpointInvalid(_REFUSALS[refused.fault]) from None
    return _checkpoint_from(claims)


def checkpoint_token(text: str) -> str:
    """The JWS in ``text``: the JWS itself, or a JSON object as published (webhook body,
    log line's JSON, API listing) whose ``checkpoint`` member holds it. Only the JWS is
    ever trusted; the other members are a convenience for people."""
    text = text.strip()
    if not text.startswith("{"):
        return text
    try:
        document = json.loads(text)
    except ValueError:
        raise CheckpointInvalid("not a JWS nor a JSON object with a checkpoint") from None
    token = document.get("checkpoint") if isinstance(document, dict) else None
    if not isinstance(token, str):
        raise CheckpointInvalid('the JSON object has no "checkpoint" member')
    return token.strip()


def _checkpoint_from(claims: dict[str, Any]) -> Checkpoint:
    position, digest, node, issued = (
        claims["position"],
        claims["hash"],
        claims["node"],
        claims["iat"],
    )
    if (
        not isinstance(position, int)
        or isinstance(position, bool)
        or not 0 <= position < 2**63
        or not isinstance(digest, str)
        or not _HASH.fullmatch(digest)
        or not isinstance(node, str)
        or len(node) > MAX_NODE_LENGTH
        or not isinstance(issued, int)
        or isinstance(issued, bool)
        or not 0 <= issued <= LATEST_TIMESTAMP
    ):
        raise CheckpointInvalid("the checkpoint's claims are invalid")
    return Checkpoint(
        position=position, hash=digest, time=datetime.fromtimestamp(issued, UTC), node=node
    )
