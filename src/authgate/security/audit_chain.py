"""The audit trail's hashes: plain SHA-256 (trails written before the audit key) and
HMAC-SHA256 under the audit key, which lives outside the database.

A plain SHA-256 chain only shows accidents: anyone who can write the database can
recompute every hash after an edit. Under the audit key, a record's hash and the
signatures of the chain's two end points (the head, the retention anchor) can only
be made by a holder of the key, so a database writer can no longer forge, rewrite,
or cut the chain at either end without ``verify`` noticing.

Purpose-specific keys are derived from the audit key (records, links), so no MAC of
one kind can be passed off as one of another. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

GENESIS_HASH = "0" * 64
MIN_AUDIT_KEY_BYTES = 32

# The two links of the chain kept in ``audit_chain_head``.
LinkKind = Literal["head", "retention"]


def plain_hash(previous: str, canonical: str) -> str:
    """SHA-256 of ``previous|canonical`` (records written before the key was introduced)."""
    # UTF-8, not ASCII: equal bytes for what authgate writes (hex and ASCII JSON), and a
    # stored value edited to hold other characters is a mismatch, never an exception.
    return hashlib.sha256(_utf8(f"{previous}|{canonical}")).hexdigest()


class AuditKey:
    """The secret keying the audit chain. Never printed, logged or stored in the database."""

    __slots__ = ("_links", "_records", "fingerprint")

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_AUDIT_KEY_BYTES:
            raise ValueError(f"the audit key must be at least {MIN_AUDIT_KEY_BYTES} bytes")
        self._records = hmac.new(
            _derive(secret, b"authgate audit records v1"), digestmod=hashlib.sha256
        )
        self._links = _derive(secret, b"authgate audit links v1")
        # Identifies the key (nodes compare it; the database keeps it) without revealing it.
        self.fingerprint = _derive(secret, b"authgate audit key fingerprint v1").hex()[:32]

    def __repr__(self) -> str:
        return f"AuditKey(fingerprint={self.fingerprint[:12]!r})"

    def record_hash(self, previous: str, canonical: str) -> str:
        """HMAC-SHA256 of ``previous|canonical``: a record's hash in a keyed chain.

        Copies a prepared HMAC (the key's two pad blocks are hashed once, not per record).
        """
        digest = self._records.copy()
        digest.update(_utf8(f"{previous}|{canonical}"))
        return digest.hexdigest()

    def link_mac(self, kind: LinkKind, record_id: int, record_hash: str) -> str:
        """The signature of a chain end point: which record the head (or the retention
        anchor) names, so it cannot be moved by someone without the key."""
        message = _utf8(f"{kind}|{record_id}|{record_hash}")
        return hmac.new(self._links, message, hashlib.sha256).hexdigest()

    def signs_link(self, kind: LinkKind, record_id: int, record_hash: str, mac: str | None) -> bool:
        """Whether ``mac`` is this key's signature of the link (constant-time)."""
        if mac is None:
            return False
        expected = self.link_mac(kind, record_id, record_hash).encode()
        return hmac.compare_digest(expected, _utf8(mac))


def _derive(secret: bytes, label: bytes) -> bytes:
    return hmac.new(secret, label, hashlib.sha256).digest()


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
