"""A stop during a database outage (operator review): the records still buffered are
tried again for a while, not given up after one failed write; what cannot be written is
counted in the log."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from authgate import runtime
from authgate.services.batch_writer import BatchWriter


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
