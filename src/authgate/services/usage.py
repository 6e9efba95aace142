"""The API key usage log, per-minute rollups and last-used times, written in batches.

An accepted request costs a counter update, not a row: per key and minute, the count by
status class, the first and last time, the distinct client addresses, and the last
address, method and path (``api_key_usage_minutes``, added up across workers with an
upsert), plus a bounded sample of the key's most recent raw requests in the usage log
(``sample_per_key`` per key; older sampled rows are deleted as newer ones land). Every
refusal of a known key is its own row, unless the audit trail counts it in a summary
(repeated past its limits: ``services.audit.aggregation``; the gate then writes none)
or it comes from an address blocked for bad keys (refused before its key is looked at:
no row). With ``log_successes`` every accepted request is a usage-log row as well (the
per-request record of earlier versions).

Recording appends to memory (no I/O on the request path). A background task writes in
batches, like the audit trail's (``batch_writer``), each in one transaction executed in
chunks of ``chunk_size`` rows (each chunk one statement, so the event loop is never held
by one large batch): the rows, the rollups, the sample, and one
``last_used_at``/``last_used_ip`` update per key used (read first for the keys the gate
asks about, ``confirm``: their last use as every process stored it, ``notable_use``).
On a clean shutdown everything
left is written, so nothing accepted is lost. If the database is unavailable everything
is kept and retried, up to ``max_buffered`` rows (then the oldest are dropped and
counted: memory stays bounded; rollups are one object per key and minute).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from authgate.clock import Clock
from authgate.reasons import Reason
from authgate.security.networks import IPAddress
from authgate.services.audit.events import printable
from authgate.services.batch_writer import BatchWriter
from authgate.services.ports import Database
from authgate.storage.api_key_repository import UsageRow
from authgate.storage.errors import refused_value

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
    failure_reason: Reason | None  # None: the key was accepted
    sequence: int = 0  # arrival order in this process (set by the recorder)


class _Minute:
    """One key's accepted requests in one minute, in memory until written."""

    __slots__ = (
        "added_ip",
        "api_key_id",
        "api_key_name",
        "ends",
        "first_at",
        "ips",
        "last_at",
        "last_ip",
        "last_method",
        "last_path",
        "minute",
        "requests",
        "statuses",
        "user_id",
    )

    def __init__(
        self,
        api_key_id: int,
        api_key_name: str,
        user_id: int,
        minute: datetime,
        at: datetime,
        ips: set[IPAddress | None],
    ) -> None:
        self.api_key_id = api_key_id
        self.api_key_name = api_key_name
        self.user_id = user_id
        self.minute = minute
        self.ends = minute + ONE_MINUTE
        self.requests = 0
        self.statuses = [0, 0, 0, 0]  # 2xx (and 1xx), 3xx, 4xx, 5xx
        self.first_at = at
        self.last_at = at
        self.ips = ips  # shared by this process's flushes of the same minute
        self.last_ip: IPAddress | None = None
        # The address last put in ``ips``: the resolver hands out one object per peer, so
        # the same client again is recognised by identity, without hashing the address.
        self.added_ip: object = self
        self.last_method = ""
        self.last_path = ""

    def add(self, at: datetime, status: int, ip: IPAddress | None, method: str, path: str) -> None:
        self.requests += 1
        self.statuses[min(max(status // 100 - 2, 0), 3)] += 1
        if at >= self.last_at:
            self.last_at = at
            self.last_ip = ip  # text only when written
            self.last_method = method
            self.last_path = path
        elif at < self.first_at:
            self.first_at = at
        if ip is not self.added_ip:
            self.added_ip = ip
            if len(self.ips) < MAX_DISTINCT_IPS:
                self.ips.add(ip)

    def merge(self, other: _Minute) -> None:
        """Add ``other`` (the same key and minute, not written) into this one."""
        self.requests += other.requests
        self.statuses = [a + b for a, b in zip(self.statuses, other.statuses, strict=True)]
        self.first_at = min(self.first_at, other.first_at)
        if other.last_at >= self.last_at:
            self.last_at, self.last_ip = other.last_at, other.last_ip
            self.last_method, self.last_path = other.last_method, other.last_path
        if other.ips is not self.ips:
            self.ips |= other.ips

    def row(self) -> dict[str, Any]:
        return {
            "api_key_id": self.api_key_id,
            "minute": self.minute,
            "user_id": self.user_id,
            "api_key_name": self.api_key_name,
            "requests": self.requests,
            "status_2xx": self.statuses[0],
            "status_3xx": self.statuses[1],
            "status_4xx": self.statuses[2],
            "status_5xx": self.statuses[3],
            "first_at": self.first_at,
            "last_at": self.last_at,
            "distinct_ips": len(self.ips),
            "last_ip": str(self.last_ip) if self.last_ip is not None else None,
            "last_method": _printable(self.last_method[:16]),
            "last_path": _printable(self.last_path[:PATH_MAX]),
        }


# Distinct addresses remembered per key and minute (the count saturates there).
MAX_DISTINCT_IPS = 10_000
ONE_MINUTE = timedelta(minutes=1)

# A sampled accepted request, kept as a tuple until written (a ``UsageEvent``'s fields
# in order, without ``failure_reason``; then the arrival ``sequence``): the request path
# builds no object.
_Sampled = tuple[int, str, int, datetime, str, str, int, IPAddress | None, str | None, float, int]

_Minutes = dict[tuple[int, datetime], _Minute]
_LastUse = tuple[datetime, IPAddress | None]
# Called with a key's last use as stored (None: none), read by a flush before it writes
# this process's own (``confirm``); after that flush's commit.
UseCheck = Callable[[datetime | None], None]


@dataclass(slots=True)
class _Batch:
    """What one flush writes: the rows (refusals, sampled or every accepted request), the
    rollups, the samples (kept per key) and the last use of each key."""

    rows: list[UsageEvent]
    minutes: _Minutes
    samples: dict[int, deque[_Sampled]]
    last_used: dict[int, _LastUse]
    use_checks: list[tuple[int, UseCheck]]


class UsageConfig(BaseModel):
    """``Settings.usage``, set by the ``AUTHGATE_USAGE_*`` names
    (``authgate.settings_names``) or a ``[usage]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    log_successes: bool = Field(
        default=False,
        description="Also record every accepted API-key request as its own usage-log row "
        "(default: per-minute rollups and a sample of recent requests per key; refusals "
        "are always rows; last-used times are kept either way).",
    )
    sample_per_key: int = Field(
        default=50,
        ge=0,
        le=10_000,
        description="How many of a key's most recent accepted requests the usage log keeps "
        "as raw rows (without log_successes).",
    )
    flush_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    retention_days: int = Field(default=90, ge=1, le=3650)


class UsageRecorder(BatchWriter[UsageEvent, _Batch]):
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        config: UsageConfig,
        batch_size: int = 1000,
        chunk_size: int = 100,
        max_buffered: int = 100_000,
    ) -> None:
        super().__init__(
            log=log,
            records="API key usage records",
            destination="the API key usage log",
            flush_interval=config.flush_interval_seconds,
            batch_size=batch_size,
            max_buffered=max_buffered,
        )
        self._db = db
        self._log_successes = config.log_successes
        self._sample_size = config.sample_per_key
        self._clock = clock
        self._retention = timedelta(days=config.retention_days)
        self._chunk_size = chunk_size
        self._minutes: _Minutes = {}
        # Each key's newest rollup in ``_minutes`` (a request finds it in one lookup).
        self._current: dict[int, _Minute] = {}
        self._samples: dict[int, deque[_Sampled]] = {}
        # Each key's addresses in the current and the previous minute, kept across
        # flushes so that the count is exact for this process.
        self._minute_ips: dict[tuple[int, datetime], set[IPAddress | None]] = {}
        self._sequence = 0
        self._use_checks: list[tuple[int, UseCheck]] = []
        self._max_checks = max_buffered

    @property
    def pending(self) -> int:
        """Requests recorded and not written yet: each refusal, and each accepted request
        (counted in its rollup, whether sampled or not: a rollup not written loses them
        all)."""
        refusals = len(self._buffer)
        if self._log_successes:  # the accepted requests' rows are in the rollups' counts
            refusals = sum(1 for event in self._buffer if event.failure_reason is not None)
        return refusals + sum(rollup.requests for rollup in self._minutes.values())

    def confirm(self, api_key_id: int, check: UseCheck) -> None:
        """Call ``check`` with the key's last use as stored by every process, read by the
        next flush before it writes this process's own, in the order asked (no I/O here).
        Past ``max_buffered`` waiting checks (the database long unavailable), a check is
        dropped and counted."""
        if len(self._use_checks) >= self._max_checks:
            self._dropped += 1
            return
        self._use_checks.append((api_key_id, check))

    def record(self, event: UsageEvent) -> None:
        """Queue one use, accepted or refused (no I/O, O(1))."""
        if event.failure_reason is None:
            self.accepted(
                event.api_key_id,
                event.api_key_name,
                event.user_id,
                event.occurred_at,
                event.method,
                event.path,
                event.status,
                event.client_ip,
                event.user_agent,
                event.latency_ms,
            )
            return
        self._sequence += 1
        event.sequence = self._sequence
        self._append(event)

    def accepted(
        self,
        api_key_id: int,
        api_key_name: str,
        user_id: int,
        at: datetime,
        method: str,
        path: str,
        status: int,
        client_ip: IPAddress | None,
        user_agent: str | None,
        latency_ms: float,
    ) -> None:
        """Count one accepted request (the request path: no I/O, O(1), one dict lookup
        and a tuple for the sample in the common case)."""
        self._sequence += 1
        rollup = self._current.get(api_key_id)
        if rollup is None or not rollup.minute <= at < rollup.ends:
            rollup = self._rollup(api_key_id, api_key_name, user_id, at)
        rollup.add(at, status, client_ip, method, path)
        if self._log_successes:
            self._append(
                UsageEvent(
                    api_key_id,
                    api_key_name,
                    user_id,
                    at,
                    method,
                    path,
                    status,
                    client_ip,
                    user_agent,
                    latency_ms,
                    None,
                    self._sequence,
                )
            )
        elif self._sample_size:
            sample = self._samples.get(api_key_id)
            if sample is None:
                sample = self._samples[api_key_id] = deque(maxlen=self._sample_size)
            sample.append(
                (
                    api_key_id,
                    api_key_name,
                    user_id,
                    at,
                    method,
                    path,
                    status,
                    client_ip,
                    user_agent,
                    latency_ms,
                    self._sequence,
                )
            )

    def _rollup(self, api_key_id: int, api_key_name: str, user_id: int, at: datetime) -> _Minute:
        """The rollup of ``at``'s minute (made if needed; the key's newest is remembered)."""
        minute = at.replace(second=0, microsecond=0)
        where = (api_key_id, minute)
        rollup = self._minutes.get(where)
        if rollup is None:
            ips = self._minute_ips.get(where)
            if ips is None:
                ips = self._minute_ips[where] = set()
            rollup = self._minutes[where] = _Minute(
                api_key_id, api_key_name, user_id, minute, at, ips
            )
        current = self._current.get(api_key_id)
        if current is None or current.minute <= minute:
            self._current[api_key_id] = rollup
        return rollup

    def _take(self, rows: list[UsageEvent]) -> _Batch | None:
        minutes, samples, use_checks = self._minutes, self._samples, self._use_checks
        if not rows and not minutes and not use_checks:
            return None
        self._minutes, self._samples, self._current = {}, {}, {}
        self._use_checks = []
        self._forget_old_minutes(minutes)
        sampled = [
            UsageEvent(*fields[:10], None, fields[10])
            for sample in samples.values()
            for fields in sample
        ]
        if sampled:  # rows in the order the requests came (ids follow it)
            rows = sorted(rows + sampled, key=_arrival)
        return _Batch(rows, minutes, samples, _last_uses(minutes), use_checks)

    def _give_back(self, batch: _Batch) -> None:
        # Everything is kept for the next attempt (the buffer bounds memory); the sampled
        # rows go back to their samples, not to the buffer.
        rows = batch.rows
        if batch.samples:
            rows = [event for event in rows if event.failure_reason is not None]
        self._put_back(rows)
        self._use_checks[:0] = batch.use_checks
        beyond = len(self._use_checks) - self._max_checks
        if beyond > 0:  # bounded across failed flushes too: the newest are dropped, counted
            del self._use_checks[self._max_checks :]
            self._dropped += beyond
        # The rollups go back (newer counts merged in); each key's newest is found again
        # on its next request.
        self._current = {}
        for where, rollup in batch.minutes.items():
            newer = self._minutes.get(where)
            if newer is not None:
                rollup.merge(newer)
            self._minutes[where] = rollup
        for key_pk, sample in batch.samples.items():
            newer_sample = self._samples.get(key_pk)
            if newer_sample is not None:
                sample.extend(newer_sample)
            self._samples[key_pk] = sample

    def _forget_old_minutes(self, minutes: dict[tuple[int, datetime], _Minute]) -> None:
        """Drop the address sets of minutes before the newest two being written."""
        if not minutes:
            return
        newest = max(minute for _key, minute in minutes)
        cutoff = newest - timedelta(minutes=1)
        for where in [where for where in self._minute_ips if where[1] < cutoff]:
            del self._minute_ips[where]

    async def delete_expired(self) -> int:
        """Retention: forget usage (rows and rollups) older than the configured period."""
        async with self._db.transaction() as session:
            return await self._db.usage(session).delete_before(self._clock() - self._retention)

    async def _write(self, batch: _Batch) -> int:
        chunk, rows = self._chunk_size, batch.rows
        async with self._db.transaction() as session:
            usage = self._db.usage(session)
            for start in range(0, len(rows), chunk):
                await usage.insert_many([_row(event) for event in rows[start : start + chunk]])
            rollups = list(batch.minutes.values())
            for start in range(0, len(rollups), chunk):
                await usage.add_minutes([rollup.row() for rollup in rollups[start : start + chunk]])
            for key_pk in batch.samples:
                await usage.keep_recent_successes(key_pk, self._sample_size)
            stored = await self._write_last_used(session, batch)
        _confirm(batch.use_checks, stored)
        return len(rows)

    async def _write_last_used(self, session: Any, batch: _Batch) -> dict[int, datetime | None]:
        """Move each key's last use forward; returns the stored last use of the keys
        with checks, read before."""
        keys = self._db.api_keys(session)
        stored: dict[int, datetime | None] = {}
        checked = sorted({key for key, _ in batch.use_checks})
        for start in range(0, len(checked), self._chunk_size):  # bounded statements
            stored.update(await keys.last_used_times(checked[start : start + self._chunk_size]))
        uses = [
            (key_pk, at, str(address) if address is not None else None)
            for key_pk, (at, address) in batch.last_used.items()
        ]
        for start in range(0, len(uses), self._chunk_size):
            await keys.record_last_uses(uses[start : start + self._chunk_size])
        return stored

    async def _write_each(self, batch: _Batch) -> tuple[int, int]:
        """As ``_write``, skipping the rows the database refuses (and a rollup refused);
        returns how many rows were written and refused."""
        written = 0
        async with self._db.transaction() as session:
            usage = self._db.usage(session)
            for event in batch.rows:
                try:
                    async with session.begin_nested():
                        await usage.insert_many([_row(event)])
                except Exception as error:
                    if not refused_value(error):
                        raise
                    continue
                written += 1
            for rollup in batch.minutes.values():
                try:
                    async with session.begin_nested():
                        await usage.add_minutes([rollup.row()])
                except Exception as error:
                    if not refused_value(error):
                        raise
            stored = await self._write_last_used(session, batch)
        _confirm(batch.use_checks, stored)
        return written, len(batch.rows) - written


def _confirm(checks: list[tuple[int, UseCheck]], stored: dict[int, datetime | None]) -> None:
    """Call each check (after the flush's commit: one that raised must not make the
    flush count as failed, and be written again)."""
    for key_pk, check in checks:
        try:
            check(stored.get(key_pk))
        except Exception as error:  # noqa: BLE001 - the rest still go; logged, no content
            log.error("confirming a use of API key %d failed: %s", key_pk, type(error).__name__)


def _last_uses(minutes: _Minutes) -> dict[int, _LastUse]:
    """Each key's last accepted use (time and address) among ``minutes``."""
    last: dict[int, _LastUse] = {}
    for (key_pk, _minute), rollup in minutes.items():
        known = last.get(key_pk)
        if known is None or rollup.last_at >= known[0]:
            last[key_pk] = (rollup.last_at, rollup.last_ip)
    return last


def _arrival(event: UsageEvent) -> int:
    return event.sequence


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
        latency_ms=round(event.latency_ms, 3),
        failure_reason=event.failure_reason,
    )


def _printable(text: str) -> str:
    # PostgreSQL refuses NUL in text: control characters become U+FFFD.
    return printable(text) or ""
