"""The API key usage log and last-used times, written in batches.

Recording a use appends to an in-memory buffer and notes the key's latest use (no I/O
on the request path). A background task writes both every ``flush_interval`` seconds,
or as soon as ``batch_size`` records wait (which keeps each write, and the pause it
costs the event loop, small), in one transaction: the usage rows, and one
``last_used_at``/``last_used_ip`` update per key used. On a clean shutdown everything
left is written, so nothing accepted is lost. If the database is unavailable the batch
is kept and retried, up to ``max_buffered`` records (then the oldest are dropped and
counted: memory stays bounded).

With ``log_successes`` off, accepted requests only move last-used times; refusals of a
known key are always recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from authgate.clock import Clock
from authgate.security.networks import IPAddress
from authgate.services.audit import printable
from authgate.storage.api_key_repository import ApiKeyRepository, UsageRepository, UsageRow
from authgate.storage.audit_repository import refused_value
from authgate.storage.db import Database

log = logging.getLogger(__name__)

USER_AGENT_MAX = 512
PATH_MAX = 2048


@dataclass(slots=True)  # not frozen: built on the request path, and frozen __init__ is slow
class UsageEvent:
    api_key_id: int
    api_key_name: str
    user_id: int
    occurred_at: datetime
    method: str
    path: str
    status: int
    client_ip: IPAddress | None
    user_agent: str | None
    latency_ms: float
    failure_reason: str | None  # None: the key was accepted


class UsageRecorder:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        flush_interval: float,
        retention: timedelta,
        log_successes: bool = True,
        batch_size: int = 1000,
        max_buffered: int = 100_000,
    ) -> None:
        self._db = db
        self._log_successes = log_successes
        self._clock = clock
        self._flush_interval = flush_interval
        self._retention = retention
        self._batch_size = batch_size
        self._buffer: deque[UsageEvent] = deque(maxlen=max_buffered)
        self._last_used: dict[int, UsageEvent] = {}
        self._dropped = 0
        self._lock = asyncio.Lock()
        self._batch_ready = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    @property
    def dropped(self) -> int:
        return self._dropped

    def record(self, event: UsageEvent) -> None:
        """Queue one use (called on the request path: no I/O, O(1))."""
        if event.failure_reason is None:
            self._last_used[event.api_key_id] = event
            if not self._log_successes:
                return
        if len(self._buffer) == self._buffer.maxlen:
            self._dropped += 1
        self._buffer.append(event)
        if len(self._buffer) >= self._batch_size:
            self._batch_ready.set()

    async def flush(self) -> int:
        """Write everything waiting; returns how many usage records were written."""
        async with self._lock:
            batch = list(self._buffer)
            last_used = self._last_used
            if not batch and not last_used:
                return 0
            self._buffer.clear()
            self._last_used = {}
            self._batch_ready.clear()
            try:
                try:
                    await self._write(batch, last_used)
                except Exception as error:
                    if not refused_value(error):
                        raise
                    # One row the database refuses must not block the log for good (the
                    # batch would be retried forever): write the rows one by one instead.
                    batch = await self._write_each(batch, last_used)
            except Exception:
                # Keep everything for the next attempt (the deque bounds memory).
                self._buffer.extendleft(reversed(batch))
                for key_id, event in last_used.items():
                    self._last_used.setdefault(key_id, event)
                raise
            return len(batch)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every interval, or when a batch is ready, until ``stop``; then once more."""
        failing = False
        while not stop.is_set():
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wait_batch())]
            await asyncio.wait(waits, timeout=self._flush_interval, return_when="FIRST_COMPLETED")
            for waiting in waits:
                waiting.cancel()
            try:
                await self.flush()
                failing = False
            except Exception as error:  # noqa: BLE001 - retried at the next tick
                if not failing:
                    log.warning("writing the API key usage log failed: %s", type(error).__name__)
                failing = True

    async def delete_expired(self) -> int:
        """Retention: forget usage older than the configured period."""
        async with self._db.transaction() as session:
            return await UsageRepository(session).delete_before(self._clock() - self._retention)

    async def _wait_batch(self) -> None:
        await self._batch_ready.wait()

    async def _write(self, batch: list[UsageEvent], last_used: dict[int, UsageEvent]) -> None:
        async with self._db.transaction() as session:
            await UsageRepository(session).insert_many([_row(event) for event in batch])
            keys = ApiKeyRepository(session)
            for key_id, event in last_used.items():
                ip = str(event.client_ip) if event.client_ip is not None else None
                await keys.record_last_used(key_id, at=event.occurred_at, ip=ip)

    async def _write_each(
        self, batch: list[UsageEvent], last_used: dict[int, UsageEvent]
    ) -> list[UsageEvent]:
        """As ``_write``, dropping (and counting) the rows the database refuses; returns
        the events written."""
        written = []
        async with self._db.transaction() as session:
            usage = UsageRepository(session)
            for event in batch:
                try:
                    async with session.begin_nested():
                        await usage.insert_many([_row(event)])
                except Exception as error:
                    if not refused_value(error):
                        raise
                    continue
                written.append(event)
            keys = ApiKeyRepository(session)
            for key_id, event in last_used.items():
                ip = str(event.client_ip) if event.client_ip is not None else None
                await keys.record_last_used(key_id, at=event.occurred_at, ip=ip)
        refused = len(batch) - len(written)
        # The count only: the refused content may be anything a caller sent.
        log.error("the database refused %d API key usage records; they were dropped", refused)
        self._dropped += refused
        return written


def _row(event: UsageEvent) -> UsageRow:
    return UsageRow(
        api_key_id=event.api_key_id,
        api_key_name=event.api_key_name,
        user_id=event.user_id,
        occurred_at=event.occurred_at,
        method=_printable(event.method[:16]),
        path=_printable(event.path[:PATH_MAX]),
        status=event.status,
        client_ip=str(event.client_ip) if event.client_ip is not None else None,
        user_agent=_printable(event.user_agent[:USER_AGENT_MAX]) if event.user_agent else None,
        latency_ms=event.latency_ms,
        failure_reason=event.failure_reason,
    )


def _printable(text: str) -> str:
    # PostgreSQL refuses NUL in text: control characters become U+FFFD.
    return printable(text) or ""
