"""Password hashing off the event loop, with bounded concurrency.

One Argon2id hash costs ~40 ms of CPU. Running it on the event loop would stall every
other request; running unbounded numbers in threads would let a login flood take all
cores. A capacity limiter keeps at most ``threads`` hashes in flight; the rest wait.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Literal, TypeVar

import anyio
import anyio.to_thread

from authgate.security.passwords import PasswordHasher

T = TypeVar("T")


class AsyncPasswordHasher:
    def __init__(
        self,
        hasher: PasswordHasher,
        *,
        threads: int = 0,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self._hasher = hasher
        self._observe = observe
        self._threads = threads or os.cpu_count() or 1
        self._limiter: anyio.CapacityLimiter | None = None  # needs a running event loop

    def _limit(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._threads)
        return self._limiter

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, stored_hash: str, password: str) -> Literal[True]:
        """Raises ``BadCredentials`` on mismatch (see ``PasswordHasher.verify``)."""
        return await self._run(self._hasher.verify, stored_hash, password)

    async def spend_equal_time(self, password: str) -> None:
        await self._run(self._hasher.spend_equal_time, password)

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        def timed() -> T:
            started = time.perf_counter()
            try:
                return work(*args)
            finally:
                if self._observe is not None:
                    self._observe(time.perf_counter() - started)

        return await anyio.to_thread.run_sync(timed, limiter=self._limit())

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.needs_rehash(stored_hash)
