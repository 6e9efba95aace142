"""Delivering fired alerts (and audit checkpoints) to every sink at once, each independently.

Every sink has its own bounded queue and worker, so a webhook that is down (retrying
with exponential backoff) never delays syslog or e-mail, and never the caller:
``submit`` is O(1) and never raises; a full queue drops and counts. Checkpoints go to
the sinks that keep them (``submit_checkpoint``) through a queue and worker of their
own per sink: alerts that fill a sink's queue never drop a signed checkpoint, nor
delay it behind their retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict, cast

from authgate.services.alerts.messages import (
    Alert,
    AlertSink,
    CheckpointNotice,
    CheckpointSink,
    DeliveryError,
    keeps_checkpoints,
)

log = logging.getLogger(__name__)

Message = Alert | CheckpointNotice

MAX_BACKOFF_SECONDS = 300.0


class SinkStats(TypedDict):
    delivered: int
    failed: int  # given up after all retries, or abandoned at shutdown
    retries: int


MAX_CHECKPOINT_QUEUE = 1000  # one every few minutes: hours of a sink being down


@dataclass(slots=True)
class _Lane:
    """One sink's queue of alerts or of checkpoints, and the sink's counters (shared by
    its two lanes); its own worker drains it."""

    sink: AlertSink
    queue: asyncio.Queue[Message]
    stats: SinkStats = field(default_factory=lambda: SinkStats(delivered=0, failed=0, retries=0))
    kind: str = "alerts"


class AlertDispatcher:
    """Fans alerts out to every sink, each independently, with retries and bounded queues.

    ``submit`` must be called from the event loop's thread; it never blocks or raises.
    """

    def __init__(
        self,
        sinks: Sequence[AlertSink],
        *,
        retries: int,
        backoff: float = 1.0,
        max_queue: int = 10_000,
        max_checkpoint_queue: int = MAX_CHECKPOINT_QUEUE,
        drain_timeout: float = 10.0,
    ) -> None:
        names = [sink.name for sink in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique: {names}")
        if retries < 0 or backoff < 0 or drain_timeout < 0:
            raise ValueError("retries, backoff and drain_timeout must be >= 0")
        if max_queue < 1 or max_checkpoint_queue < 1:
            raise ValueError("max_queue and max_checkpoint_queue must be >= 1")
        self._lanes = [_Lane(sink, asyncio.Queue(maxsize=max_queue)) for sink in sinks]
        self._checkpoint_lanes = [
            _Lane(lane.sink, asyncio.Queue(maxsize=max_checkpoint_queue), lane.stats, "checkpoints")
            for lane in self._lanes
            if keeps_checkpoints(lane.sink)
        ]
        self._retries = retries
        self._backoff = backoff
        self._drain_timeout = drain_timeout
        self._dropped = 0

    @property
    def stats(self) -> dict[str, SinkStats]:
        """Per sink name: alerts delivered, failed, and retries made."""
        return {lane.sink.name: SinkStats(**lane.stats) for lane in self._lanes}

    @property
    def dropped(self) -> int:
        """Alerts or checkpoints not queued for at least one sink because its queue
        (alerts', or checkpoints') was full."""
        return self._dropped

    def submit(self, alert: Alert) -> None:
        """Queue ``alert`` for every sink; a sink whose queue is full drops it (counted)."""
        self._queue(alert, self._lanes)

    def submit_checkpoint(self, notice: CheckpointNotice) -> None:
        """Queue an audit checkpoint for every sink that keeps checkpoints."""
        self._queue(notice, self._checkpoint_lanes)

    def _queue(self, message: Message, lanes: Sequence[_Lane]) -> None:
        dropped = False
        for lane in lanes:
            try:
                lane.queue.put_nowait(message)
            except asyncio.QueueFull:
                dropped = True
        if dropped:
            self._dropped += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then drain the queues for up to ``drain_timeout``."""
        lanes = [*self._lanes, *self._checkpoint_lanes]
        workers = [
            asyncio.create_task(self._work(lane), name=f"alert-sink-{lane.sink.name}-{lane.kind}")
            for lane in lanes
        ]
        try:
            await stop.wait()
            with contextlib.suppress(TimeoutError):  # what is left is counted as failed
                async with asyncio.timeout(self._drain_timeout):
                    await asyncio.gather(*(lane.queue.join() for lane in lanes))
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._abandon_queued()

    async def _work(self, lane: _Lane) -> None:
        while True:
            message = await lane.queue.get()
            try:
                await self._deliver(lane, message)
            except asyncio.CancelledError:
                lane.stats["failed"] += 1
                log.warning("%s to sink %s abandoned at shutdown", _name(message), lane.sink.name)
                raise
            finally:
                lane.queue.task_done()

    async def _deliver(self, lane: _Lane, message: Message) -> None:
        attempt = 0
        while True:
            try:
                if isinstance(message, CheckpointNotice):
                    await cast(CheckpointSink, lane.sink).deliver_checkpoint(message)
                else:
                    await lane.sink.deliver(message)
            except Exception as error:  # noqa: BLE001 - a broken sink must not stop the others
                if attempt >= self._retries:
                    lane.stats["failed"] += 1
                    log.warning(
                        "%s could not be delivered to sink %s after %d attempts: %s",
                        _name(message),
                        lane.sink.name,
                        attempt + 1,
                        _describe(error),
                    )
                    return
                await asyncio.sleep(min(self._backoff * 2**attempt, MAX_BACKOFF_SECONDS))
                attempt += 1
                lane.stats["retries"] += 1
            else:
                lane.stats["delivered"] += 1
                return

    def _abandon_queued(self) -> None:
        for lane in [*self._lanes, *self._checkpoint_lanes]:
            left = lane.queue.qsize()
            while not lane.queue.empty():
                lane.queue.get_nowait()
                lane.queue.task_done()
            if left:
                lane.stats["failed"] += left
                log.warning("%d messages to sink %s abandoned at shutdown", left, lane.sink.name)


def _name(message: Message) -> str:
    if isinstance(message, CheckpointNotice):
        return f"audit checkpoint at record {message.position}"
    return f"alert {message.id}"


def _describe(error: Exception) -> str:
    # Our own messages are known to be free of secrets; others' might quote a URL or reply.
    return str(error) if isinstance(error, DeliveryError) else type(error).__name__
