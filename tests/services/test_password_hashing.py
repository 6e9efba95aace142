"""The password-hashing pool: low-priority threads, a bounded queue with a deadline, and
503 + Retry-After for a login that cannot be checked in time."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

import pytest

from authgate.exceptions import HashingOverloaded
from authgate.services.password_hashing import (
    AsyncPasswordHasher,
    HashingConfig,
    lower_thread_priority,
)
from tests.conftest import USER_PASSWORD, Harness


class BlockingHasher:
    """Stands in for Argon2: ``verify`` reports its thread's nice value, after waiting
    for ``release`` when given one."""

    reports = "nice"

    def __init__(self, release: threading.Event | None = None, hold: float = 0.0) -> None:
        self.release = release
        self.hold = hold

    def verify(self, _stored: str, _password: str) -> Any:
        if self.release is not None:
            self.release.wait(timeout=5)
        time.sleep(self.hold)
        return thread_priority() if self.reports == "both" else thread_priority()[1]


class PolicyReportingHasher(BlockingHasher):
    """``verify`` reports the thread's scheduling policy and nice value."""

    reports = "both"


async def reported(hashing: AsyncPasswordHasher) -> Any:
    """What the stand-in hasher reported from its pool thread."""
    result: Any = await hashing.verify("stored", "password")
    return result


def thread_priority() -> tuple[int, int]:
    """The calling thread's scheduling policy and nice value, as the kernel has them."""
    return os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def pool(hasher: BlockingHasher, **options: Any) -> AsyncPasswordHasher:
    return AsyncPasswordHasher(hasher, config=HashingConfig(**options))  # type: ignore[arg-type]


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice is Linux's")
async def test_hashing_threads_run_at_a_lower_priority_than_the_event_loop() -> None:
    hashing = pool(BlockingHasher(), threads=1, priority="nice", nice=5)
    try:
        own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert await hashing.verify("stored", "password") == min(own + 5, 19)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
    finally:
        hashing.close()


linux_only = pytest.mark.skipif(
    not hasattr(os, "SCHED_IDLE") or not hasattr(os, "setpriority"),
    reason="SCHED_IDLE and per-thread nice are Linux's",
)


@linux_only
async def test_hashing_threads_run_under_sched_idle_when_configured() -> None:
    assert HashingConfig().priority == "nice"
    own = thread_priority()
    hashing = pool(PolicyReportingHasher(), threads=1, priority="idle")
    try:
        assert await reported(hashing) == (os.SCHED_IDLE, own[1])
        assert thread_priority() == own  # the event loop's thread is left alone
    finally:
        hashing.close()


@linux_only
async def test_hashing_threads_fall_back_to_nice_when_sched_idle_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*_: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    own = thread_priority()
    hashing = pool(PolicyReportingHasher(), threads=1, priority="idle", nice=7)
    try:
        assert await reported(hashing) == (own[0], min(own[1] + 7, 19))
    finally:
        hashing.close()
    assert "SCHED_IDLE refused" in caplog.text


@linux_only
async def test_hashing_threads_fall_back_to_nice_without_sched_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(os, "SCHED_IDLE")
    own = thread_priority()
    hashing = pool(PolicyReportingHasher(), threads=1, priority="idle", nice=3)
    try:
        assert await reported(hashing) == (own[0], min(own[1] + 3, 19))
    finally:
        hashing.close()


@linux_only
async def test_priority_nice_leaves_the_policy_alone() -> None:
    own = thread_priority()
    hashing = pool(PolicyReportingHasher(), threads=1, priority="nice", nice=4)
    try:
        assert await reported(hashing) == (own[0], min(own[1] + 4, 19))
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


class RecordingHasher(BlockingHasher):
    """``verify`` records the password it was given, in the order the hashes ran."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__(release)
        self.ran: list[str] = []

    def verify(self, _stored: str, password: str) -> Any:
        self.ran.append(password)
        return super().verify(_stored, password)


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_checks_from_known_addresses_have_places_a_flood_cannot_take() -> None:
    """With the thread and the queue taken by other hashes, one more is refused at once,
    but a check from a known address still gets one of the places kept for such
    checks; once those are taken too, it is refused like the rest (DoS finding C)."""
    release = threading.Event()
    hashing = pool(
        BlockingHasher(release), threads=1, queue_size=2, known_queue_size=1, queue_timeout=5
    )
    try:
        flood = [asyncio.ensure_future(hashing.verify("stored", str(i))) for i in range(3)]
        await _until(lambda: hashing._pending == 3)
        with pytest.raises(HashingOverloaded):
            await hashing.verify("stored", "one more")
        owner = asyncio.ensure_future(hashing.verify("stored", "owner", known_address=True))
        await _until(lambda: hashing._pending == 4)
        with pytest.raises(HashingOverloaded):
            await hashing.verify("stored", "another owner", known_address=True)
        release.set()
        await asyncio.gather(owner, *flood)  # every admitted one is served
        assert hashing._pending == 0
    finally:
        release.set()
        hashing.close()


@pytest.mark.parametrize(
    ("queued", "order"),
    [
        # Known addresses' checks go first, but take turns with the others: the owner
        # waits for at most one other hash; within each kind, first come, first served.
        ([("u1", False), ("k1", True), ("u2", False), ("k2", True)], ["k1", "u1", "k2", "u2"]),
        # Known addresses' checks in a loop (an account's holder logging in again and
        # again) cannot starve a login from a new address: it gets the second turn
        # (before: it waited until no known check was left, past its deadline).
        (
            [("k1", True), ("k2", True), ("u1", False), ("k3", True), ("k4", True)],
            ["k1", "u1", "k2", "k3", "k4"],
        ),
    ],
)
async def test_known_addresses_go_first_and_take_turns_with_the_others(
    queued: list[tuple[str, bool]], order: list[str]
) -> None:
    """The order in which one thread runs the hashes queued behind a running one."""
    release = threading.Event()
    recording = RecordingHasher(release)
    hashing = pool(recording, threads=1, queue_size=8, queue_timeout=5)
    try:
        running = asyncio.ensure_future(hashing.verify("stored", "running"))
        await _until(lambda: hashing._pending == 1)
        waiting = []
        for name, known in queued:
            waiting.append(asyncio.ensure_future(hashing.verify("s", name, known_address=known)))
            expected = 1 + len(waiting)
            await _until(lambda expected=expected: hashing._pending == expected)
        release.set()
        await asyncio.gather(running, *waiting)
        assert recording.ran == ["running", *order]
    finally:
        release.set()
        hashing.close()


async def test_a_check_that_gives_up_waiting_passes_its_place_on() -> None:
    """A hash cancelled while waiting (its client went away) leaves the queue; the
    others are served, and nothing stays counted."""
    release = threading.Event()
    hashing = pool(BlockingHasher(release), threads=1, queue_size=4, queue_timeout=5)
    try:
        running = asyncio.ensure_future(hashing.verify("stored", "running"))
        await _until(lambda: hashing._pending == 1)
        gone = asyncio.ensure_future(hashing.verify("stored", "gone"))
        kept = asyncio.ensure_future(hashing.verify("stored", "kept", known_address=True))
        await _until(lambda: hashing._pending == 3)
        gone.cancel()
        await _until(lambda: hashing._pending == 2)
        release.set()
        await asyncio.gather(running, kept)
        assert hashing._pending == 0
    finally:
        release.set()
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


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux's")
def test_the_default_pool_has_one_thread_per_cpu_the_process_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert pool(BlockingHasher()).threads == 1
    assert pool(BlockingHasher(), threads=3).threads == 3


def test_a_refused_priority_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A sandbox that forbids setpriority (systemd's @resources) leaves the hashing
    threads at normal priority: the log says so instead of nothing."""

    def refuse(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setpriority", refuse)
    with caplog.at_level(logging.WARNING, logger="authgate.services.password_hashing"):
        assert lower_thread_priority("nice", 10) is None
    assert "lowering its priority (nice 10) refused" in caplog.text
