"""Records kept in memory on the request path and written to the database in batches:
what the audit trail and the API key usage log share.

Appending is O(1) with no I/O. A background task (``run``) writes every
``flush_interval`` seconds, or as soon as ``batch_size`` records wait, and once more
at shutdown. The buffer is bounded: past ``max_buffered`` records the oldest are
dropped and counted, so a database that is down never exhausts memory; what a failed
write took is kept (put back in front) and retried. One record the database refuses
(``refused_value``) must not block the rest for good, the batch would be retried
forever: the batch is then written record by record, dropping (and counting) the
records refused.

A writer says what a batch is (``_take``, ``_give_back``: the usage log's carries its
rollups too) and how it is written (``_write``, ``_write_each``).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from typing import Generic, TypeVar

from authgate.storage.errors import refused_value

Row = TypeVar("Row")
Batch = TypeVar("Batch")


class BatchWriter(ABC, Generic[Row, Batch]):
    def __init__(
        self,
        *,
        log: logging.Logger,
        records: str,
        destination: str,
        flush_interval: float,
        batch_size: int,
        max_buffered: int,
    ) -> None:
        self._log = log
        self._records = records  # in messages: "the database refused 2 <records>"
        self._destination = destination  # "writing <destination> failed"
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._buffer: deque[Row] = deque(maxlen=max_buffered)
        self._dropped = 0
        self._lock = asyncio.Lock()
        self._batch_ready = asyncio.Event()

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self._buffer)

    @property
    def records(self) -> str:
        """What it writes, for messages: "API key usage records", "audit records"."""
        return self._records

    @property
    def dropped(self) -> int:
        """Records lost: pushed out of a full buffer, or refused by the database."""
        return self._dropped

    def _append(self, row: Row) -> None:
        """Queue ``row`` (on the request path: O(1), no I/O)."""
        if len(self._buffer) == self._buffer.maxlen:
            self._dropped += 1
        self._buffer.append(row)
        if len(self._buffer) >= self._batch_size:
            self._batch_ready.set()

    async def flush(self) -> int:
        """Write everything waiting; returns how many records were written."""
        async with self._lock:
            rows = list(self._buffer)
            self._buffer.clear()
            self._batch_ready.clear()
            batch = self._take(rows)
            if batch is None:
                return 0
            try:
                try:
                    return await self._write(batch)
                except Exception as error:
                    if not refused_value(error):
                        raise
                    written, refused = await self._write_each(batch)
            except BaseException:  # cancelled too (a deadline at shutdown): kept, counted
                self._give_back(batch)
                raise
            if refused:
                # The count only: the refused content may be anything a caller sent.
                self._log.error(
                    "the database refused %d %s; they were dropped", refused, self._records
                )
                self._dropped += refused
            return written

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every interval, or when a batch is ready, until ``stop``; then once more."""
        failing = False
        while not stop.is_set():
            waits = [
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(self._batch_ready.wait()),
            ]
            await asyncio.wait(waits, timeout=self._flush_interval, return_when="FIRST_COMPLETED")
            for waiting in waits:
                waiting.cancel()
            try:
                await self.flush()
                failing = False
            except Exception as error:  # noqa: BLE001 - retried at the next tick
                if not failing:
                    self._log.warning(
                        "writing %s failed: %s", self._destination, type(error).__name__
                    )
                failing = True

    def _put_back(self, rows: list[Row]) -> None:
        """Return ``rows`` to the front of the buffer, ahead of what came since."""
        self._buffer.extendleft(reversed(rows))

    @abstractmethod
    def _take(self, rows: list[Row]) -> Batch | None:
        """The batch to write, of ``rows`` taken from the buffer (None: nothing to write)."""

    @abstractmethod
    def _give_back(self, batch: Batch) -> None:
        """Keep what a failed write took for the next attempt."""

    @abstractmethod
    async def _write(self, batch: Batch) -> int:
        """Write ``batch`` in one transaction; returns how many records were written."""

    @abstractmethod
    async def _write_each(self, batch: Batch) -> tuple[int, int]:
        """Write ``batch`` record by record, skipping those the database refuses; returns
        how many records were written and how many were refused."""
