"""The audit trail's tamper evidence: a keyed hash chain, appended to in batches.

Every record carries ``hash = HMAC-SHA256(audit key, prev_hash | canonical content)``
where ``prev_hash`` is the previous record's hash (by id), and the chain's two end
points, the head (newest record) and the retention anchor (last record retention
deleted), are signed under the same key. The key lives outside the database
(``AUTHGATE_AUDIT_KEY`` / ``_FILE``, or generated into the data dir), so someone who can
write the database can neither recompute hashes after an edit, nor move either end of
the chain: ``verify`` (``services.audit_verification``) reports every such change.
Signed checkpoints kept outside the database (``services.audit_checkpoints``) catch
the one thing left, a rollback of the whole trail to an earlier state of itself.

Appends take a row lock on ``audit_chain_head`` (PostgreSQL) or the write lock (SQLite)
first, so several workers and nodes extend one chain, never fork it. Retention deletes
a prefix of the chain (never a hole) and remembers, signed, the last record it deleted.

Trails written before the key: at the first start with a key, the chain is re-anchored
by an ``AUDIT_KEY_INTRODUCED`` record, hashed with the key and linked to the last plain
SHA-256 hash; records before it stay plain, every record after it is keyed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from authgate.clock import Clock
from authgate.exceptions import ConfigurationError
from authgate.reasons import Reason
from authgate.security.audit_chain import GENESIS_HASH, AuditKey, LinkKind, plain_hash
from authgate.security.audit_checkpoints import Checkpoint
from authgate.services.audit.events import EventType, Outcome, printable
from authgate.services.audit_verification import (
    KEY_FINGERPRINT_SETTING,
    VERIFY_CHUNK,
    ChainVerification,
    ChainVerifier,
)
from authgate.services.ports import AuditRepo, Database, StorageSession
from authgate.storage.audit_repository import AuditRow, LinkSigner, SignedLink
from authgate.storage.errors import refused_value

log = logging.getLogger(__name__)

AUDIT_KEY_FINGERPRINT = KEY_FINGERPRINT_SETTING

# Records per INSERT statement when the buffer is written.
FLUSH_CHUNK = 100


@dataclass(frozen=True, slots=True)
class _ChainEnd:
    """The locked end of the chain one transaction appends to."""

    session: StorageSession
    repository: AuditRepo
    head: SignedLink
    rows: list[AuditRow]  # what to append: the batch, after a record of tampering if found
    hashed: Callable[[str, str], str]  # keyed, or plain before the key is introduced
    sign: LinkSigner  # the new head's signature


class AuditChain:
    """The chain in the database: appending, the audit key, retention and verification."""

    def __init__(self, *, db: Database, key: AuditKey, clock: Clock, retention: timedelta) -> None:
        self._db = db
        self._key = key
        # Whether this process knows the chain is keyed (it introduced the key, or saw the
        # head signed): from then on an unsigned head is tampering, never "not yet keyed".
        self._introduced = False
        self._clock = clock
        self._retention = retention

    @property
    def key(self) -> AuditKey:
        return self._key

    @property
    def introduced(self) -> bool:
        """Whether this process writes the chain keyed."""
        return self._introduced

    async def append(self, batch: list[AuditRow]) -> int:
        """Append ``batch`` in one transaction; returns how many records were written
        (a record of tampering found on the way is not counted)."""
        async with self._extending(batch) as end:
            previous = end.head.hash
            # Hashed and inserted in chunks, each one statement: a large batch never
            # holds the event loop for long (a record costs tens of microseconds).
            for start in range(0, len(end.rows), FLUSH_CHUNK):
                chained = []
                for row in end.rows[start : start + FLUSH_CHUNK]:
                    own = end.hashed(previous, row.canonical())
                    chained.append((row, previous, own))
                    previous = own
                await end.repository.insert(chained)
            await end.repository.move_head(previous, sign=end.sign)
        return len(batch)

    async def append_each(self, batch: list[AuditRow]) -> tuple[int, int]:
        """Append record by record, skipping those the database refuses; the chain links
        the records that were written. Returns how many were written and refused (as
        ``append``, a record of tampering found on the way is not counted)."""
        refused = 0
        async with self._extending(batch) as end:
            previous = end.head.hash
            for row in end.rows:
                own = end.hashed(previous, row.canonical())
                try:
                    async with end.session.begin_nested():
                        await end.repository.insert([(row, previous, own)])
                except Exception as error:
                    if not refused_value(error):
                        raise
                    refused += 1
                    continue
                previous = own
            if previous != end.head.hash:
                await end.repository.move_head(previous, sign=end.sign)
        return len(batch) - refused, refused

    @asynccontextmanager
    async def _extending(self, batch: list[AuditRow]) -> AsyncIterator[_ChainEnd]:
        """A transaction with the chain head locked and judged: the end ``batch`` is
        appended to, committed when the block ends."""
        async with self._db.transaction() as session:
            repository = self._db.audit(session)
            head = await repository.lock_chain_head(GENESIS_HASH)
            keyed, rows = self._judge(head, batch)
            yield _ChainEnd(
                session=session,
                repository=repository,
                head=head,
                rows=rows,
                hashed=self._hasher(keyed),
                sign=self._signer(keyed),
            )

    def _judge(self, head: SignedLink, batch: list[AuditRow]) -> tuple[bool, list[AuditRow]]:
        """Whether to write keyed, and the records to write (with a tampering record
        first when the head was moved by something without the key)."""
        if self._key.signs_link("head", head.id, head.hash, head.mac):
            self._introduced = True
            return True, batch
        if head.mac is None and not self._introduced:
            return False, batch  # the key is not introduced yet: plain, like older nodes
        # Signing this head now would bless whatever was done to the chain: the finding
        # goes into the chain itself, under the key, where verify reports it.
        problem = Reason.HEAD_NOT_SIGNED if head.mac is None else Reason.HEAD_SIGNATURE_MISMATCH
        log.error(
            "the audit chain head (record %d) is not signed with the audit key (%s): "
            "records were deleted or replaced by something without the key; recorded as "
            "AUDIT_CHAIN_TAMPERED, run `authgate audit verify`",
            head.id,
            problem,
        )
        self._introduced = True
        tampered = self._system_row(
            EventType.AUDIT_CHAIN_TAMPERED,
            "failure",
            reason=problem,
            details={"headId": head.id, "headHash": printable(head.hash[:64])},
        )
        return True, [tampered, *batch]

    def _hasher(self, keyed: bool) -> Callable[[str, str], str]:
        return self._key.record_hash if keyed else plain_hash

    def _signer(self, keyed: bool, *, kind: LinkKind = "head") -> LinkSigner:
        if not keyed:
            return lambda _id, _hash: None
        return lambda record_id, record_hash: self._key.link_mac(kind, record_id, record_hash)

    def _system_row(
        self,
        event_type: EventType,
        outcome: Outcome,
        *,
        reason: Reason | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditRow:
        """A record authgate writes about the chain itself (no request, no actor)."""
        return AuditRow(
            occurred_at=self._clock(),
            event_type=event_type.value,
            outcome=outcome,
            actor_login=None,
            actor_user_id=None,
            api_key_id=None,
            api_key_name=None,
            client_ip=None,
            user_agent=None,
            request_path=None,
            reason=reason,
            correlation_id=None,
            details=json.dumps(dict(details), sort_keys=True) if details else None,
        )

    # -- the audit key --------------------------------------------------------------------

    async def check_key(self) -> None:
        """Refuse to run with an audit key other than the one the chain is keyed with:
        every record this process wrote would read as forged.

        The fingerprint stored in the database says which key that is; should it
        disagree while the chain head is signed with this very key, the stored value is
        what is wrong (it is corrected).
        """
        async with self._db.session() as session:
            stored = await self._db.cluster(session).setting(AUDIT_KEY_FINGERPRINT)
            head = await self._db.audit(session).chain_head()
        mine = self._key.fingerprint
        if stored is None or stored == mine:
            return
        if head is not None and self._key.signs_link("head", head.id, head.hash, head.mac):
            log.warning("the stored audit key fingerprint was wrong; corrected")
            async with self._db.transaction() as session:
                await self._db.cluster(session).put_setting(
                    AUDIT_KEY_FINGERPRINT, mine, now=self._clock()
                )
            return
        raise ConfigurationError(
            "this process's audit key is not the one the audit trail is keyed with, so "
            "every record it wrote would read as forged: give every node (and the CLI) the "
            "same AUTHGATE_AUDIT_KEY_FILE or AUTHGATE_AUDIT_KEY (audit key fingerprints: "
            f"database {stored[:12]}, this process {mine[:12]})"
        )

    async def introduce_key(self, *, node: str) -> int | None:
        """Key the chain from now on, once per deployment: sign a new trail's head, or
        re-anchor an existing plain SHA-256 chain with an ``AUDIT_KEY_INTRODUCED`` record
        hashed with the key (and sign its retention anchor). Returns that record's id.

        Call only when no node of an older version is running (it would go on writing
        plain records). Never introduces twice: a chain that was keyed once and whose
        head lost its signature is tampering (the next write records it), not a trail
        to re-anchor as it now stands.
        """
        async with self._db.transaction() as session:
            repository = self._db.audit(session)
            deployment = self._db.cluster(session)
            head = await repository.lock_chain_head(GENESIS_HASH)
            if head.mac is not None:
                self._introduced = True  # signed (or tampered with: the writer reports it)
                return None
            if await deployment.setting(AUDIT_KEY_FINGERPRINT) is not None or (
                await self._keyed_record(repository, head.id)
            ):
                log.error(
                    "the audit chain was keyed before but its head is no longer signed: "
                    "not introducing the key again; run `authgate audit verify`"
                )
                self._introduced = True
                return None
            introduced = await self._re_anchor(repository, head, node)
            await deployment.put_setting(
                AUDIT_KEY_FINGERPRINT, self._key.fingerprint, now=self._clock()
            )
        self._introduced = True
        if introduced is not None:
            log.warning(
                "audit key introduced: records up to %d stay plain SHA-256, record %d and "
                "every later one are keyed",
                introduced - 1,
                introduced,
            )
        return introduced

    async def _re_anchor(self, repository: AuditRepo, head: SignedLink, node: str) -> int | None:
        anchor = await repository.retention_anchor()
        if head.id == 0 and anchor is None and not await repository.any_record():
            # A new trail: keyed from its first record.
            await repository.sign_head(self._key.link_mac("head", head.id, head.hash))
            return None
        if anchor is not None:
            mac = self._key.link_mac("retention", anchor.id, anchor.hash)
            await repository.sign_retention_anchor(mac)
        row = self._system_row(
            EventType.AUDIT_KEY_INTRODUCED,
            "success",
            details={
                "keyFingerprint": self._key.fingerprint[:12],
                "lastPlainRecord": head.id,
                "node": node,
            },
        )
        own = self._key.record_hash(head.hash, row.canonical())
        await repository.append([(row, head.hash, own)], sign=self._signer(True))
        introduced = await repository.chain_head()
        return introduced.id if introduced is not None else None

    async def _keyed_record(self, repository: AuditRepo, record_id: int) -> bool:
        """Whether record ``record_id`` is hashed with the key (a keyed chain's head)."""
        stored = await repository.record(record_id) if record_id else None
        if stored is None:
            return False
        canonical = AuditRow.of_model(stored).canonical()
        return self._key.record_hash(stored.prev_hash, canonical) == stored.hash

    async def verify(
        self, *, checkpoint: Checkpoint | None = None, chunk: int = VERIFY_CHUNK
    ) -> ChainVerification:
        """Check the whole chain under the audit key, and against ``checkpoint`` if
        given (see ``services.audit_verification``)."""
        return await ChainVerifier(self._db, self._key).verify(checkpoint=checkpoint, chunk=chunk)

    async def delete_expired(self) -> int:
        """Retention: drop the oldest records, up to the first one within the configured
        period; the last one dropped becomes the chain's (signed) retention anchor.

        Skipped, and logged, when an end of the chain is not signed as it should be:
        retention would otherwise sign a new anchor past the evidence.
        """
        async with self._db.transaction() as session:
            repository = self._db.audit(session)
            head = await repository.lock_existing_head()
            if head is None:
                return 0  # nothing was ever written
            sign: LinkSigner
            if self._key.signs_link("head", head.id, head.hash, head.mac):
                anchor = await repository.retention_anchor()
                if anchor is not None and not self._key.signs_link(
                    "retention", anchor.id, anchor.hash, anchor.mac
                ):
                    log.error(
                        "audit retention skipped: the retention anchor is not signed with "
                        "the audit key; run `authgate audit verify`"
                    )
                    return 0
                sign = self._signer(True, kind="retention")
            elif head.mac is None and not self._introduced:
                sign = self._signer(False)
            else:
                log.error(
                    "audit retention skipped: the chain head is not signed with the audit "
                    "key; run `authgate audit verify`"
                )
                return 0
            cutoff = self._clock() - self._retention
            return await repository.delete_before(cutoff, head, sign=sign)


def chain_hash(previous: str, row: AuditRow) -> str:
    """The plain SHA-256 hash a record had before the audit key (and still has in the
    plain prefix of a re-anchored chain)."""
    return plain_hash(previous, row.canonical())
