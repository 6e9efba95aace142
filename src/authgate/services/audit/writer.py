"""The audit log: recording security events on the request path, writing them to the
chain in batches (``batch_writer``: no I/O on the request path; a clean shutdown
writes what is left), and reading them back. Repeated refusals beyond a few a minute
are counted in summary records (``aggregation``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from authgate.clock import Clock
from authgate.reasons import AlertKindName, Reason
from authgate.security.audit_chain import AuditKey
from authgate.security.audit_checkpoints import Checkpoint
from authgate.services.audit.aggregation import REFUSALS, RefusalAggregator
from authgate.services.audit.chain import AuditChain
from authgate.services.audit.events import (
    PATH_MAX,
    USER_AGENT_MAX,
    Actor,
    AuditEntry,
    EventType,
    Outcome,
    clipped,
    current_request,
    printable,
)
from authgate.services.audit_verification import VERIFY_CHUNK, ChainVerification
from authgate.services.batch_writer import BatchWriter
from authgate.services.ports import Database
from authgate.services.sorting import require_sortable
from authgate.storage.audit_repository import AuditFilter, AuditRow
from authgate.storage.paging import Page, PageRequest

log = logging.getLogger(__name__)

Listener = Callable[[AuditRow], None]


class AuditConfig(BaseModel):
    """``Settings.audit``: the trail's retention and writing, its checkpoints
    (``audit_checkpoints``) and which API-key requests the gate records (``gate``); set by
    the ``AUTHGATE_AUDIT_*`` names (``authgate.settings_names``) or an ``[audit]`` table.
    The audit key itself is a secret setting of its own (``AUTHGATE_AUDIT_KEY``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retention_days: int = Field(default=365, ge=1, le=36500)
    flush_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    checkpoint_interval_seconds: float = Field(
        default=900.0,
        ge=1,
        le=86_400,
        description="How often each server process publishes a signed checkpoint of the "
        "audit chain (to the log and the alert sinks) when the chain has grown; also at "
        "shutdown.",
    )
    api_key_successes: bool = Field(
        default=False,
        description="Record every accepted API-key request in the audit trail (default: "
        "only its security events: first use, first use from an address, use after "
        "key_idle_seconds).",
    )
    key_idle_seconds: int = Field(
        default=3600,
        ge=60,
        le=366 * 86_400,
        description="An accepted API-key request after this long without use is audited "
        "(the key_after_inactivity alert rules see idle periods from this length up).",
    )

    refusals_per_minute: int = Field(
        default=100,
        ge=0,
        le=100_000,
        description="Refusals of one kind (event type and reason) from one client network "
        "(an IPv4 address, an IPv6 /64) written as records of their own per minute; "
        "further ones that minute are counted in one summary record.",
    )
    refusals_per_minute_total: int = Field(
        default=600,
        ge=0,
        le=1_000_000,
        description="Refusals each server process writes as records of their own per "
        "minute, whatever their address; past it, refusals are counted in one summary "
        "record per event type and reason.",
    )

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)


class AuditLog(BatchWriter[AuditRow, list[AuditRow]]):
    def __init__(
        self,
        *,
        db: Database,
        key: AuditKey,
        clock: Clock,
        flush_interval: float,
        retention: timedelta,
        batch_size: int = 1000,
        max_buffered: int = 100_000,
        refusals_per_minute: int = 100,
        refusals_per_minute_total: int = 600,
    ) -> None:
        super().__init__(
            log=log,
            records="audit records",
            destination="the audit trail",
            flush_interval=flush_interval,
            batch_size=batch_size,
            max_buffered=max_buffered,
        )
        self._db = db
        self._clock = clock
        self._chain = AuditChain(db=db, key=key, clock=clock, retention=retention)
        self._listeners: list[Listener] = []
        self._refusals = RefusalAggregator(
            per_group=refusals_per_minute, per_minute=refusals_per_minute_total
        )

    @property
    def key(self) -> AuditKey:
        return self._chain.key

    @property
    def introduced(self) -> bool:
        """Whether this process writes the chain keyed."""
        return self._chain.introduced

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every event as it is recorded (metrics, counters)."""
        self._listeners.append(listener)

    def record(
        self,
        event_type: EventType,
        outcome: Outcome,
        *,
        actor: Actor | None = None,
        reason: Reason | AlertKindName | None = None,
        details: Mapping[str, Any] | None = None,
        occurred_at: datetime | None = None,
    ) -> bool:
        """Queue one event; the current request's address, agent, path and correlation
        id are added. Without ``actor``, the request's caller is the actor (the operator
        outside requests). O(1), no I/O.

        Returns whether the event is a record of its own: a refusal repeated past the
        limits (``AuditConfig.refusals_per_minute``) is counted in a summary record
        instead (``aggregation``), written once its minute is over."""
        request = current_request.get()
        if actor is None:
            caller = request.principal if request else None
            actor = Actor.of(caller) if caller is not None or request is None else None
        key = actor.key if actor else None
        row = AuditRow(
            occurred_at=occurred_at or self._clock(),
            event_type=event_type.value,
            outcome=outcome,
            actor_login=printable(actor.login) if actor else None,
            actor_user_id=actor.user_id if actor else None,
            api_key_id=key.key_pk if key else None,
            api_key_name=printable(key.name) if key else None,
            client_ip=request.client_ip if request else None,
            user_agent=clipped(request.user_agent, USER_AGENT_MAX) if request else None,
            request_path=clipped(request.path, PATH_MAX) if request else None,
            reason=reason,
            correlation_id=request.correlation_id if request else None,
            details=json.dumps(dict(details), sort_keys=True, default=str) if details else None,
        )
        for listener in self._listeners:
            listener(row)  # every refusal is counted in the metrics, summarized or not
        if outcome == "failure" and row.event_type in REFUSALS:
            # The summaries of a minute that is over go first: the chain keeps time order.
            for summary in self._refusals.closed(row.occurred_at):
                self._append(summary)
            if not self._refusals.admit(row):
                return False
        self._append(row)
        return True

    async def flush(self) -> int:
        """Write everything waiting, with the summaries of the minutes that are over;
        returns how many records were written."""
        for summary in self._refusals.closed(self._clock()):
            self._append(summary)
        return await super().flush()

    def close_summaries(self) -> int:
        """Queue every summary of repeated refusals, the current minute's too (at
        shutdown, before the last flush: nothing counted is lost); returns how many."""
        summaries = self._refusals.close_all()
        for summary in summaries:
            self._append(summary)
        return len(summaries)

    @property
    def summarized(self) -> int:
        """Refusals counted in summaries that are not queued yet."""
        return self._refusals.counting

    def _take(self, rows: list[AuditRow]) -> list[AuditRow] | None:
        return rows or None

    def _give_back(self, batch: list[AuditRow]) -> None:
        self._put_back(batch)

    async def _write(self, batch: list[AuditRow]) -> int:
        return await self._chain.append(batch)

    async def _write_each(self, batch: list[AuditRow]) -> tuple[int, int]:
        return await self._chain.append_each(batch)

    # -- the chain ------------------------------------------------------------------------

    async def check_key(self) -> None:
        """Refuse to run with an audit key other than the chain's (``AuditChain``)."""
        await self._chain.check_key()

    async def introduce_key(self, *, node: str) -> int | None:
        """Key the chain from now on, once per deployment (``AuditChain``)."""
        return await self._chain.introduce_key(node=node)

    async def verify(
        self, *, checkpoint: Checkpoint | None = None, chunk: int = VERIFY_CHUNK
    ) -> ChainVerification:
        """Check the whole chain under the audit key, and against ``checkpoint`` if given."""
        return await self._chain.verify(checkpoint=checkpoint, chunk=chunk)

    async def delete_expired(self) -> int:
        """Retention: drop the records older than the configured period (``AuditChain``)."""
        return await self._chain.delete_expired()

    # -- reading --------------------------------------------------------------------------

    async def search(self, where: AuditFilter, request: PageRequest) -> Page[AuditEntry]:
        require_sortable(request, self._db.audit.SORT_COLUMNS)
        async with self._db.session() as session:
            repository = self._db.audit(session)
            total = await repository.count(where)
            rows = await repository.page(where, request)
        return Page(items=[AuditEntry.of(*row) for row in rows], total=total, request=request)

    async def stream(
        self, where: AuditFilter, *, after: int = 0, chunk: int = 1000
    ) -> AsyncIterator[AuditEntry]:
        """Every matching record with an id above ``after``, oldest first, in chunks."""
        while True:
            async with self._db.session() as session:
                rows = await self._db.audit(session).after(after, where, limit=chunk)
            for row in rows:
                yield AuditEntry.of(*row)
            if len(rows) < chunk:
                return
            after = rows[-1][0].id
