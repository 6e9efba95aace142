"""The password-hashing pool: low-priority threads, a bounded queue with a deadline, and
503 + Retry-After for a login that cannot be checked in time."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest

from authgate.exceptions import HashingOverloaded
from authgate.services.password_hashing import AsyncPasswordHasher, HashingConfig
from tests.conftest import USER_PASSWORD, Harness


class BlockingHasher:
    """Stands in for Argon2: ``verify`` reports its thread's nice value, after waiting
    for ``release`` when given one."""

    def __init__(self, release: threading.Event | None = None, hold: float = 0.0) -> None:
        self.release = release
        self.hold = hold

    def verify(self, _stored: str, _password: str) -> Any:
        if self.release is not None:
            self.release.wait(timeout=5)
        time.sleep(self.hold)
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def pool(hasher: BlockingHasher, **options: Any) -> AsyncPasswordHasher:
    return AsyncPasswordHasher(hasher, config=HashingConfig(**options))  # type: ignore[arg-type]


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice is Linux's")
async def test_hashing_threads_run_at_a_lower_priority_than_the_event_loop() -> None:
    hashing = pool(BlockingHasher(), threads=1, nice=5)
    try:
        own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert await hashing.verify("stored", "password") == min(own + 5, 19)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
    finally:
        hashing.close()


async def test_a_full_queue_refuses_at_once_with_retry_after() -> None:
    release = threading.Event()
    hashing = pool(BlockingHasher(release), threads=1, queue_size=1, queue_timeout=3)
    try:
        running = asyncio.ensure_future(hashing.verify("stored", "one"))
        waiting = asyncio.ensure_future(hashing.verify("stored", "two"))
        await asyncio.sleep(0.05)
        with pytest.raises(HashingOverloaded) as refused:
            await hashing.verify("stored", "three")
        assert refused.value.retry_after == 3
        release.set()
        await asyncio.gather(running, waiting)  # the admitted ones are served
    finally:
        release.set()
        hashing.close()


async def test_a_hash_that_cannot_start_before_its_deadline_is_refused() -> None:
    hashing = pool(BlockingHasher(hold=0.3), threads=1, queue_size=8, queue_timeout=0.05)
    try:
        first = asyncio.ensure_future(hashing.verify("stored", "one"))
        await asyncio.sleep(0.01)
        with pytest.raises(HashingOverloaded):
            await hashing.verify("stored", "two")
        await first
    finally:
        hashing.close()


async def test_an_overloaded_login_is_answered_503_with_retry_after(harness: Harness) -> None:
    await harness.create_user("alice", USER_PASSWORD)
    hashing = harness.services.accounts._hasher
    hashing._queue_size = -hashing.threads
    response = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD}
    )
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "2"
    assert response.json()["code"] == "overloaded"
