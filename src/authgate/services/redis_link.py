"""Redis as a helper, never a single point of failure.

With ``AUTHGATE_REDIS_URL`` set, nodes share throttling and rate-limit counters in
Redis and ring a doorbell on every committed change, so that the other nodes poll the
change feed at once instead of at their next tick. PostgreSQL stays the source of
truth: when Redis fails, the doorbell is silent (changes still arrive by polling,
within ``change_poll_interval_seconds``) and throttling falls back to the database.

:class:`RedisLink` is the breaker in front of the client: after a failure Redis is
left alone for a few seconds, so that requests use the fallback at once instead of
each waiting for a dead server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from authgate.services.pause import pause

log = logging.getLogger(__name__)

CHANGES_CHANNEL = "authgate:changes"
COOLDOWN_SECONDS = 5.0
# Connecting to (or reading from) a dead Redis must not hold a request for long.
SOCKET_TIMEOUT_SECONDS = 0.5
S = TypeVar("S")
T = TypeVar("T")


class RedisLink:
    def __init__(
        self,
        client: Any,
        *,
        cooldown: float = COOLDOWN_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._cooldown = cooldown
        self._monotonic = monotonic
        self._retry_at = 0.0
        self._down = False

    @property
    def available(self) -> bool:
        """False for ``cooldown`` seconds after a failure."""
        return self._monotonic() >= self._retry_at

    @property
    def is_down(self) -> bool:
        return self._down

    def failed(self, error: BaseException) -> None:
        self._retry_at = self._monotonic() + self._cooldown
        if not self._down:
            self._down = True
            log.warning(
                "Redis unavailable (%s): using the database and polling until it is back",
                type(error).__name__,
            )

    def succeeded(self) -> None:
        if self._down:
            self._down = False
            log.info("Redis is reachable again")

    async def through(self, primary: S, fallback: S, call: Callable[[S], Awaitable[T]]) -> T:
        """``call(primary)`` (what keeps its data in Redis) while Redis answers,
        ``call(fallback)`` while the breaker is open or when the try fails; a failure
        opens the breaker, a success closes it."""
        if self.available:
            try:
                result = await call(primary)
            except Exception as error:  # noqa: BLE001 - any Redis failure: use the fallback
                self.failed(error)
            else:
                self.succeeded()
                return result
        return await call(fallback)

    async def close(self) -> None:
        await self.client.aclose()


class ChangeDoorbell:
    """Rings every node's change poller right after a commit (Redis pub/sub)."""

    def __init__(self, link: RedisLink, *, wake: Callable[[], None]) -> None:
        self._link = link
        self._wake = wake
        self._publishing: set[asyncio.Task[None]] = set()

    def ring(self) -> None:
        """Announce a commit; never delays the caller (the message is sent in a task)."""
        if not self._link.available:
            return
        task = asyncio.create_task(self._publish(), name="authgate-change-doorbell")
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self) -> None:
        try:
            await self._link.client.publish(CHANGES_CHANNEL, b"1")
        except Exception as error:  # noqa: BLE001 - the poller still finds the change
            self._link.failed(error)
        else:
            self._link.succeeded()

    async def listen(self, stop: asyncio.Event, *, retry_seconds: float = 1.0) -> None:
        """Wake the poller on every ring until ``stop``; reconnects after failures."""
        while not stop.is_set():
            try:
                pubsub = self._link.client.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(CHANGES_CHANNEL)
                    self._link.succeeded()
                    self._wake()  # rings may have been missed while unsubscribed
                    while not stop.is_set():
                        if await pubsub.get_message(timeout=1.0) is not None:
                            self._wake()
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            except Exception as error:  # noqa: BLE001 - Redis down: retry later
                self._link.failed(error)
                await pause(stop, retry_seconds)

    async def drain(self) -> None:
        """Wait for announcements still being sent (at shutdown)."""
        if self._publishing:
            await asyncio.wait(self._publishing, timeout=1.0)
