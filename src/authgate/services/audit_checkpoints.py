"""Signed checkpoints of the audit chain: taken, published outside the database, listed,
and read back for ``verify``.

Each server process publishes one every ``interval`` seconds when the chain has grown
since the newest checkpoint, one when it introduces the audit key, and one when it
shuts down: to the log and to the webhook and syslog sinks (through the alert
dispatcher, so a sink that is down never delays anything), and into
``audit_checkpoints`` for the API's listing. Only the copies outside the database add
security: someone who can rewrite the database can rewrite that table too.

A checkpoint is signed only for a head that is signed with the audit key and names a
record with that hash: authgate never certifies a chain it can see was tampered with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from authgate.clock import Clock
from authgate.exceptions import FieldError, ValidationFailed
from authgate.security.audit_checkpoints import (
    Checkpoint,
    CheckpointInvalid,
    checkpoint_token,
    read_checkpoint,
    sign_checkpoint,
)
from authgate.security.signing_keys import KeyRing
from authgate.services.alerts.dispatch import AlertDispatcher
from authgate.services.alerts.messages import CheckpointNotice
from authgate.services.audit.writer import AuditLog
from authgate.services.pause import pause
from authgate.services.ports import Database
from authgate.services.sorting import require_sortable
from authgate.storage.audit_repository import SignedLink
from authgate.storage.models import AuditCheckpoint
from authgate.storage.paging import Page, PageRequest

log = logging.getLogger(__name__)

CheckpointReason = Literal["interval", "shutdown", "key_introduced", "command_line"]


@dataclass(frozen=True, slots=True)
class PublishedCheckpoint:
    """A checkpoint as stored and listed."""

    id: int
    time: datetime
    node: str
    position: int
    hash: str
    reason: str
    checkpoint: str  # the compact JWS

    def notice(self) -> CheckpointNotice:
        return CheckpointNotice(
            checkpoint=self.checkpoint,
            position=self.position,
            hash=self.hash,
            time=self.time,
            node=self.node,
            reason=self.reason,
        )


class AuditCheckpoints:
    def __init__(
        self,
        *,
        db: Database,
        audit: AuditLog,
        keyring: Callable[[], KeyRing],
        issuer: str,
        dispatcher: AlertDispatcher,
        clock: Clock,
        node: Callable[[], str],
        interval: float,
        retention: timedelta,
    ) -> None:
        self._db = db
        self._audit = audit
        self._keyring = keyring
        self._issuer = issuer
        self._dispatcher = dispatcher
        self._clock = clock
        self._node = node
        self._interval = interval
        self._retention = retention

    async def publish(
        self, reason: CheckpointReason, *, unless_unchanged: bool = False
    ) -> PublishedCheckpoint | None:
        """Sign a checkpoint of the current head, store it and hand it to the sinks.

        None when there is nothing to certify: the key is not introduced yet, the head
        does not hold (logged as an error), or, with ``unless_unchanged``, the newest
        checkpoint already names this head.
        """
        async with self._db.session() as session:
            head = await self._db.audit(session).chain_head()
            newest = await self._db.audit_checkpoints(session).newest()
        if head is None or not await self._certifiable(head):
            return None
        if (
            unless_unchanged
            and newest is not None
            and (newest.position, newest.head_hash)
            == (
                head.id,
                head.hash,
            )
        ):
            return None
        statement = Checkpoint(
            position=head.id, hash=head.hash, time=self._clock(), node=self._node()
        )
        token = sign_checkpoint(self._keyring(), statement, issuer=self._issuer)
        row = AuditCheckpoint(
            created_at=statement.time,
            node=statement.node[:100],
            position=statement.position,
            head_hash=statement.hash,
            reason=reason,
            token=token,
        )
        async with self._db.transaction() as session:
            self._db.audit_checkpoints(session).add(row)
            await session.flush()
            published = _published(row)
        self._dispatcher.submit_checkpoint(published.notice())
        return published

    async def _certifiable(self, head: SignedLink) -> bool:
        key = self._audit.key
        if not key.signs_link("head", head.id, head.hash, head.mac):
            if head.mac is not None or self._audit.introduced:
                log.error(
                    "no audit checkpoint: the chain head is not signed with the audit key; "
                    "run `authgate audit verify`"
                )
            return False
        if head.id == 0:
            return True
        async with self._db.session() as session:
            repository = self._db.audit(session)
            record = await repository.record(head.id)
            anchor = await repository.retention_anchor()
        if record is not None and record.hash == head.hash:
            return True
        if record is None and anchor is not None and anchor.link == head.link:
            return True  # retention removed every record; the anchor is the last one
        log.error(
            "no audit checkpoint: the record the chain head names does not match it; "
            "run `authgate audit verify`"
        )
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Publish every ``interval`` seconds (when the chain has grown) until ``stop``.
        The checkpoint at shutdown is the caller's (after the last audit flush)."""
        while not await pause(stop, self._interval):
            try:
                await self.publish("interval", unless_unchanged=True)
            except Exception as error:  # noqa: BLE001 - retried at the next interval
                log.warning("publishing an audit checkpoint failed: %s", type(error).__name__)

    def read(self, text: str, *, location: str = "body") -> Checkpoint:
        """A checkpoint given by a verifier (the JWS, or the JSON as published), with its
        signature checked against the current key ring; ``ValidationFailed`` otherwise."""
        try:
            return read_checkpoint(self._keyring(), checkpoint_token(text), issuer=self._issuer)
        except CheckpointInvalid as error:
            message = f"Not a valid audit checkpoint: {error}."
            raise ValidationFailed(
                message, field_errors=[FieldError("checkpoint", message, location)]
            ) from None

    async def search(self, request: PageRequest) -> Page[PublishedCheckpoint]:
        require_sortable(request, self._db.audit_checkpoints.SORT_COLUMNS)
        async with self._db.session() as session:
            repository = self._db.audit_checkpoints(session)
            total = await repository.count()
            rows = await repository.page(request)
        return Page(items=[_published(row) for row in rows], total=total, request=request)

    async def delete_expired(self) -> int:
        """Stored checkpoints older than the audit retention go with the records."""
        async with self._db.transaction() as session:
            cutoff = self._clock() - self._retention
            return await self._db.audit_checkpoints(session).delete_before(cutoff)


def _published(row: AuditCheckpoint) -> PublishedCheckpoint:
    return PublishedCheckpoint(
        id=row.id,
        time=row.created_at,
        node=row.node,
        position=row.position,
        hash=row.head_hash,
        reason=row.reason,
        checkpoint=row.token,
    )
