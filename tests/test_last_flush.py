"""A stop during a database outage (operator review): the records still buffered are
tried again for a while, not given up after one failed write; what cannot be written is
counted in the log."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any, cast

import pytest

from authgate import runtime
from authgate.app import create_app
from authgate.reasons import Reason
from authgate.services.audit.events import EventType
from authgate.services.batch_writer import BatchWriter
from authgate.services.usage import UsageConfig, UsageEvent, UsageRecorder
from tests.conftest import test_settings


class Writer:
    """A writer whose database comes back after ``failures`` attempts (never: -1)."""

    records = "API key usage records"

    def __init__(self, failures: int, pending: int, *, hangs: bool = False) -> None:
        self.failures = failures
        self.pending = pending
        self.hangs = hangs
        self.attempts = 0

    async def flush(self) -> int:
        self.attempts += 1
        if self.hangs:  # a database host that drops packets: no answer, no error
            await asyncio.sleep(3600)
        if self.failures < 0 or self.attempts <= self.failures:
            raise ConnectionRefusedError(111, "Connection refused")
        written, self.pending = self.pending, 0
        return written


def writer(
    failures: int, pending: int, *, hangs: bool = False
) -> tuple[Writer, BatchWriter[Any, Any]]:
    stub = Writer(failures, pending, hangs=hangs)
    return stub, cast(BatchWriter[Any, Any], stub)


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "LAST_FLUSH_SECONDS", 0.5)
    monkeypatch.setattr(runtime, "LAST_FLUSH_RETRY_SECONDS", 0.05)


async def test_records_are_written_once_the_database_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub, pending = writer(failures=3, pending=5)
    await runtime._last_flush((pending,))
    assert (stub.attempts, stub.pending) == (4, 0)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_what_cannot_be_written_is_counted_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub, pending = writer(failures=-1, pending=5)
    await runtime._last_flush((pending,))
    assert stub.attempts > 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "could not write 5 buffered API key usage records before stopping "
        "(ConnectionRefusedError): they are lost"
    ]


async def test_a_hanging_write_is_cut_at_the_deadline_and_the_next_writer_still_tried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One deadline for every writer: an attempt that never answers is cut at it and
    counted, not left to the process manager's SIGKILL."""
    hanging, first = writer(failures=0, pending=3, hangs=True)
    healthy, second = writer(failures=0, pending=2)
    await runtime._last_flush((first, second))
    assert hanging.attempts == 1
    assert healthy.attempts == 1
    assert healthy.pending == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "could not write 3 buffered API key usage records before stopping "
        "(TimeoutError): they are lost"
    ]


async def test_the_lost_count_includes_the_requests_in_unwritten_rollups(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Accepted requests live in the rollups (a few of them also in the sample): a stop
    that cannot write loses them all, and says how many (it said only the sampled ones:
    150 of 300 lost)."""
    usage = UsageRecorder(
        db=cast(Any, None),
        clock=lambda: MINUTE,
        config=UsageConfig(flush_interval_seconds=60, sample_per_key=3),
    )
    for index in range(300):
        usage.record(use(1 + index % 2, MINUTE + timedelta(milliseconds=index)))
    for _ in range(5):
        usage.record(use(1, MINUTE, failure_reason=Reason.IP_NOT_ALLOWED))

    async def database_down(*_args: Any) -> int:
        raise ConnectionRefusedError(111, "Connection refused")

    usage._write = database_down  # type: ignore[method-assign, assignment]
    await runtime._last_flush((usage,))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "could not write 305 buffered API key usage records before stopping "
        "(ConnectionRefusedError): they are lost"
    ]


def use(key_pk: int, at: datetime, *, failure_reason: Reason | None = None) -> UsageEvent:
    return UsageEvent(
        api_key_id=key_pk,
        api_key_name="ci",
        user_id=1,
        occurred_at=at,
        method="GET",
        path="/api/things",
        status=403 if failure_reason else 200,
        client_ip=ip_address("192.0.2.1"),
        user_agent=None,
        latency_ms=1.0,
        failure_reason=failure_reason,
    )


MINUTE = datetime(2026, 12, 4, 10, 15, tzinfo=UTC)


async def test_every_stage_of_a_stop_shares_one_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that stays locked during a stop (SQLite: each write waits its 5 s busy
    timeout): the loops' last flush, the last flush and the shutdown checkpoint share one
    deadline, instead of waiting it out one after another (27 s measured, for a
    process manager's 10 s)."""
    monkeypatch.setattr(runtime, "LAST_FLUSH_SECONDS", 1.0)
    database = tmp_path / "data" / "authgate.db"
    settings = test_settings(tmp_path / "data", database_url=f"sqlite+aiosqlite:///{database}")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        services = app.state.services
        services.audit.record(EventType.LOGOUT, "success")
        services.usage.record(use(1, datetime.now(UTC)))
        locker = sqlite3.connect(database, timeout=0)
        locker.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
    took = time.monotonic() - started
    locker.rollback()
    locker.close()
    lost = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("buffered audit records" in message for message in lost), lost
    # One deadline (1 s), plus one busy wait still under way in SQLite's thread when it
    # is cut (5 s); each stage in turn took one busy wait (and more) each.
    assert took < 7.5, took


async def test_a_writer_named_again_is_flushed_again_unless_it_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stop flushes the audit trail, the usage log, then the audit trail again (the
    usage log's flush confirms uses after inactivity, which are audit records); a trail
    that could not be written is not tried, nor counted as lost, twice."""
    audit_stub, audit = writer(failures=0, pending=2)
    usage_stub, usage = writer(failures=0, pending=3)
    original = usage_stub.flush

    async def confirming() -> int:
        audit_stub.pending += 1  # an after_inactivity record, confirmed by this flush
        return await original()

    usage_stub.flush = confirming  # type: ignore[method-assign]
    await runtime._last_flush((audit, usage, audit))
    assert (audit_stub.attempts, audit_stub.pending) == (2, 0)

    _, down = writer(failures=-1, pending=4)
    await runtime._last_flush((down, usage, down))
    lost = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lost) == 1, lost
