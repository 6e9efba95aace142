"""Verifying the audit chain: every link, every hash under the audit key, both end
points' signatures, and optionally a checkpoint kept outside the database.

What each finding means (``Verdict``):

* ``forged``: a record's hash is not what the audit key gives for its content (an edited
  field, a record written without the key, hashes recomputed with plain SHA-256 or a
  wrong key), or a record lies past the head;
* ``rewritten``: a link does not hold (a record removed or replaced in the middle), or the
  checkpoint's record now has another hash;
* ``truncated``: records are missing at either end: the newest (the head names a later
  record, the head was moved without the key, or the chain ends before the checkpoint's
  position), or the oldest (a retention anchor authgate did not sign);
* ``unkeyed``: the head is not signed at all; the chain holds only what plain SHA-256
  proves, which anyone who can write the database can recompute.

A trail written before the key was introduced keeps its plain SHA-256 prefix: it is
checked as before up to the ``AUDIT_KEY_INTRODUCED`` record, which is keyed and links to
the prefix's last hash, so the prefix cannot be rewritten afterwards either. Every
record from the keyed one on must be keyed (``keyed_from`` reports where that starts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from authgate.security.audit_chain import GENESIS_HASH, AuditKey, plain_hash
from authgate.security.audit_checkpoints import Checkpoint
from authgate.services.ports import Database
from authgate.storage.audit_repository import AuditRow, ChainLink, SignedLink
from authgate.storage.models import AuditEvent

# The chain's own event types (members of ``EventType`` in services.audit.events).
KEY_INTRODUCED = "AUDIT_KEY_INTRODUCED"
CHAIN_TAMPERED = "AUDIT_CHAIN_TAMPERED"
# The deployment setting holding the fingerprint of the key the chain is keyed with.
KEY_FINGERPRINT_SETTING = "audit_key_fingerprint"

Verdict = Literal["intact", "unkeyed", "truncated", "rewritten", "forged"]
CheckpointStatus = Literal["matches", "truncated", "rewritten", "removed_by_retention"]


@dataclass(frozen=True, slots=True)
class CheckpointComparison:
    """How the chain compares with a checkpoint the verifier holds."""

    checkpoint: Checkpoint
    status: CheckpointStatus
    detail: str

    @property
    def consistent(self) -> bool:
        return self.status in ("matches", "removed_by_retention")


@dataclass(frozen=True, slots=True)
class ChainVerification:
    """The first problem found (in chain order), or none."""

    checked: int
    first_broken_id: int | None
    problem: str | None
    verdict: Verdict = "intact"
    keyed_from: int | None = None  # the first record hashed under the audit key
    checkpoint: CheckpointComparison | None = None

    @property
    def intact(self) -> bool:
        return self.verdict == "intact"


@dataclass(slots=True)
class _Walk:
    """Where the walk is: the last good link and what it has seen."""

    start: ChainLink
    previous: ChainLink
    keyed_trail: bool  # the head was signed when the walk began: the key is introduced
    first_id: int | None = None
    checked: int = 0
    keyed_from: int | None = None
    plain_seen: bool = False


# Records read and checked at a time: the event loop is given back between chunks, each
# ~0.1 s of work on a busy host (5,000 at a time held it ~0.4 s: the scale review).
VERIFY_CHUNK = 1000


class ChainVerifier:
    def __init__(self, db: Database, key: AuditKey) -> None:
        self._db = db
        self._key = key

    async def verify(
        self, *, checkpoint: Checkpoint | None = None, chunk: int = VERIFY_CHUNK
    ) -> ChainVerification:
        """Walk the chain from the oldest record to the chain head; report the first
        problem, then compare with ``checkpoint`` if given.

        The head is read first and only the records up to it are walked, so records
        other workers or nodes append meanwhile are not taken for tampering. The oldest
        record links to the genesis hash, or to the last record retention deleted.
        """
        async with self._db.session() as session:
            repository = self._db.audit(session)
            head = await repository.chain_head()
            anchor = await repository.retention_anchor()
        found = await self._walk(head, anchor, chunk)
        comparison = None
        if checkpoint is not None:
            comparison = await self._compare(checkpoint, head)
        if found.intact and comparison is not None and not comparison.consistent:
            return ChainVerification(
                found.checked,
                _first_missing(comparison, head),
                comparison.detail,
                "rewritten" if comparison.status == "rewritten" else "truncated",
                found.keyed_from,
                comparison,
            )
        return ChainVerification(
            found.checked,
            found.first_broken_id,
            found.problem,
            found.verdict,
            found.keyed_from,
            comparison,
        )

    # -- the walk -------------------------------------------------------------------------

    async def _walk(
        self, head: SignedLink | None, anchor: SignedLink | None, chunk: int
    ) -> ChainVerification:
        # Since the key's introduction, retention signs its anchor: one it did not sign
        # means the oldest records were deleted by hand (an unsigned one is fine only in
        # a chain that is not keyed at all yet).
        if (
            anchor is not None
            and (head is None or head.mac is not None or anchor.mac is not None)
            and not self._key.signs_link("retention", anchor.id, anchor.hash, anchor.mac)
        ):
            return ChainVerification(
                0,
                anchor.id + 1,
                "the retention anchor is not signed with the audit key: "
                "the oldest records were deleted by hand",
                "truncated",
            )
        start = anchor.link if anchor is not None else ChainLink(0, GENESIS_HASH)
        walk = _Walk(start=start, previous=start, keyed_trail=bool(head and head.mac))
        # From the lowest id stored, not from 0: ids need not be positive, and a record
        # older than the anchor (or put below the first id) is foreign.
        after: int | None = None
        while head is not None:
            async with self._db.session() as session:
                rows = await self._db.audit(session).chain(after, head.id, limit=chunk)
            for stored in rows:
                broken = await self._step(walk, stored)
                if broken is not None:
                    return broken
            if len(rows) < chunk:
                break
            after = rows[-1].id
        return await self._ends(walk, head)

    async def _step(self, walk: _Walk, stored: AuditEvent) -> ChainVerification | None:
        """Check one record against the walk so far; a finding, or None and advance."""
        if stored.prev_hash != walk.previous.hash:
            if not await self._cut_by_retention(walk, stored):
                return self._finding(
                    walk, stored.id, "the previous record is missing or was changed", "rewritten"
                )
            walk.plain_seen = False  # the walk goes on from retention's new anchor
        canonical = AuditRow.of_model(stored).canonical()
        keyed = self._key.record_hash(stored.prev_hash, canonical) == stored.hash
        if walk.keyed_from is None and not keyed:
            if plain_hash(stored.prev_hash, canonical) != stored.hash:
                return self._finding(walk, stored.id, "this record was changed", "forged")
            walk.plain_seen = True  # written before the audit key was introduced
        elif walk.keyed_from is None:
            # The keyed part starts at the chain's first record (a trail keyed from its
            # start, or one whose plain part retention removed), or at the record that
            # introduced the key: nowhere else may plain records give way to keyed ones.
            if walk.plain_seen and stored.event_type != KEY_INTRODUCED:
                return self._finding(walk, stored.id, "this record was changed", "forged")
            walk.keyed_from = stored.id
        elif not keyed:
            return self._finding(
                walk,
                stored.id,
                "this record was changed, or written without the audit key",
                "forged",
            )
        if keyed and stored.event_type == CHAIN_TAMPERED:
            return self._finding(
                walk,
                stored.id,
                "authgate found the chain head moved without the audit key when it wrote "
                "this record: records before it were deleted or replaced",
                "truncated",
            )
        walk.previous = ChainLink(stored.id, stored.hash)
        walk.first_id = walk.first_id or stored.id
        walk.checked += 1
        return None

    async def _ends(self, walk: _Walk, head: SignedLink | None) -> ChainVerification:
        """The checks after the last record: the head names it and is signed; nothing
        lies past it."""
        previous = walk.previous
        if head is not None and previous.hash != head.hash:
            async with self._db.session() as session:
                anchor = await self._db.audit(session).retention_anchor()
            # Unless retention removed them meanwhile, the head names a later record
            # than the last one left: the newest were removed.
            if (
                anchor is None
                or anchor.link == walk.start
                or anchor.link != head.link
                or not self._anchor_acceptable(walk, anchor)
            ):
                return self._finding(
                    walk, previous.id + 1, "the newest records were deleted", "truncated"
                )
        if head is not None and head.mac is None:
            return await self._unsigned_head(walk, head)
        if walk.checked and walk.keyed_from is None:
            problem = "no record is hashed with the audit key: the chain was rewritten"
            return self._finding(walk, walk.first_id, problem, "forged")
        if head is not None and not self._key.signs_link("head", head.id, head.hash, head.mac):
            return self._finding(
                walk,
                head.id + 1,
                "the chain head was moved without the audit key: the newest records were "
                "deleted or replaced",
                "truncated",
            )
        async with self._db.session() as session:
            extra = await self._db.audit(session).first_after_head()
        if extra is not None:
            return self._finding(
                walk, extra, "a record after the newest one was not written by authgate", "forged"
            )
        return ChainVerification(walk.checked, None, None, "intact", walk.keyed_from)

    async def _unsigned_head(self, walk: _Walk, head: SignedLink) -> ChainVerification:
        """A head without signature: the key not introduced yet, or the signature removed."""
        if walk.keyed_from is not None:
            return self._finding(
                walk,
                head.id + 1,
                "the chain head's signature was removed: the newest records were deleted "
                "or replaced",
                "truncated",
            )
        async with self._db.session() as session:
            introduced = await self._db.cluster(session).setting(KEY_FINGERPRINT_SETTING)
        if introduced is not None:
            return self._finding(
                walk,
                walk.first_id,
                "the audit key was introduced, yet no record is hashed with it and the "
                "chain head is not signed: the chain was rewritten",
                "forged",
            )
        return self._finding(
            walk,
            None,
            "the chain is not keyed: the audit key has not been introduced yet (a node of "
            "an older version is still running); plain SHA-256 proves nothing against "
            "someone who can write the database",
            "unkeyed",
        )

    async def _cut_by_retention(self, walk: _Walk, stored: AuditEvent) -> bool:
        """Whether retention, running on some node while ``verify`` walks, deleted the
        records between the last good one and ``stored`` (its signed anchor moved to right
        before ``stored``); a gap the anchor already named at the start is tampering."""
        async with self._db.session() as session:
            anchor = await self._db.audit(session).retention_anchor()
        return (
            anchor is not None
            and anchor.link != walk.start
            and anchor.hash == stored.prev_hash
            and walk.previous.id <= anchor.id < stored.id
            and self._anchor_acceptable(walk, anchor)
        )

    def _anchor_acceptable(self, walk: _Walk, anchor: SignedLink) -> bool:
        """A retention anchor written meanwhile is signed with the key (unsigned only
        while the key is not introduced, as the walk's start showed)."""
        if anchor.mac is None:
            return not walk.keyed_trail
        return self._key.signs_link("retention", anchor.id, anchor.hash, anchor.mac)

    @staticmethod
    def _finding(
        walk: _Walk, record_id: int | None, problem: str, verdict: Verdict
    ) -> ChainVerification:
        return ChainVerification(walk.checked, record_id, problem, verdict, walk.keyed_from)

    # -- a checkpoint ---------------------------------------------------------------------

    async def _compare(
        self, checkpoint: Checkpoint, head: SignedLink | None
    ) -> CheckpointComparison:
        """The chain (as of the head read first) against what ``checkpoint`` states."""
        position = checkpoint.position

        def result(status: CheckpointStatus, detail: str) -> CheckpointComparison:
            return CheckpointComparison(checkpoint, status, detail)

        if position == 0:
            if checkpoint.hash == GENESIS_HASH:
                return result("matches", "the checkpoint was taken before the first record")
            return result("rewritten", "the checkpoint names no record but a hash")
        end = head.id if head is not None else 0
        if end < position:
            return result(
                "truncated",
                f"the chain ends at record {end}, before the checkpoint's record {position}",
            )
        async with self._db.session() as session:
            repository = self._db.audit(session)
            record = await repository.record(position)
            anchor = await repository.retention_anchor()
        if record is not None:
            if record.hash == checkpoint.hash:
                return result("matches", f"record {position} is the checkpoint's")
            return result(
                "rewritten",
                f"record {position} is not the one the checkpoint names: the chain was rewritten",
            )
        if anchor is not None and anchor.id >= position:
            if anchor.id == position and anchor.hash != checkpoint.hash:
                return result(
                    "rewritten",
                    f"record {position} is not the one the checkpoint names: "
                    "the chain was rewritten",
                )
            return result(
                "removed_by_retention",
                f"record {position} was removed by retention; the records after it verify",
            )
        return result(
            "truncated", f"the checkpoint's record {position} is missing: records were deleted"
        )


def _first_missing(comparison: CheckpointComparison, head: SignedLink | None) -> int:
    position = comparison.checkpoint.position
    if comparison.status == "truncated" and head is not None and head.id < position:
        return head.id + 1
    return position
