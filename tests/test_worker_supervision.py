"""The ``--workers`` supervisor's health ping (``authgate.cli.worker_supervision``): a
worker that exited without answering is seen dead at once, not after the whole
``timeout_worker_healthcheck`` (60 s: one worker short and the supervisor's loop, which
also handles signals, blocked for a minute)."""

from __future__ import annotations

import inspect
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from uvicorn.supervisors import multiprocess

from authgate.cli.worker_supervision import WorkerProcess, supervise_with_exit_detection

FORK = multiprocessing.get_context("fork")
# As uvicorn's supervisor waits in `authgate serve` (server.WORKER_HEALTHCHECK_SECONDS).
HEALTHCHECK_SECONDS = 60.0


def worker(target: Any, *args: Any) -> WorkerProcess:
    """A WorkerProcess around a forked child running ``target`` (no uvicorn config)."""
    process = WorkerProcess.__new__(WorkerProcess)
    process.parent_conn, process.child_conn = multiprocessing.Pipe()
    # Forked, not spawned as uvicorn does: the targets are local to this test.
    process.process = FORK.Process(  # type: ignore[assignment]
        target=target, args=(process.child_conn, *args)
    )
    process.process.start()
    return process


def exit_at_once(_conn: Connection) -> None:
    os._exit(0)


def answer_then_exit(conn: Connection) -> None:
    conn.recv()
    conn.send(True)
    os._exit(0)


def hang(_conn: Connection, stop: Any) -> None:
    stop.wait()
    os._exit(0)


# A hang guard, not a measurement: the old ping waited the 60 s in full.
@pytest.mark.timeout(30)
def test_a_worker_that_exited_without_answering_is_dead_at_once() -> None:
    process = worker(exit_at_once)
    process.process.join()

    assert process._healthcheck(HEALTHCHECK_SECONDS) is None


def test_an_answer_sent_before_the_worker_exited_counts() -> None:
    process = worker(answer_then_exit)
    answered = process._healthcheck(HEALTHCHECK_SECONDS)
    process.process.join()

    assert answered is True


def test_a_live_worker_that_does_not_answer_is_unhealthy_after_the_timeout() -> None:
    stop = FORK.Event()
    process = worker(hang, stop)
    try:
        assert process._healthcheck(0.2) is None
        assert process.process.is_alive()
    finally:
        stop.set()
        process.process.join()


def live_gauge_in_a_killed_worker(_conn: Connection, directory: str) -> None:
    """A worker that set a live gauge (as a cache size is published) and was killed
    before it could mark itself dead (``Metrics.process_exiting`` never ran)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from prometheus_client import CollectorRegistry, Gauge, values

    # (Forked from a process that imported prometheus_client single-process: as a
    # worker started with the variable set, which chooses the files at import.)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    gauge = Gauge("cache_entries", "?", multiprocess_mode="livesum", registry=CollectorRegistry())
    gauge.set(7)
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_workers_live_gauges_leave_the_sums(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metrics review: a worker killed by a signal (or the OOM killer) never marked
    itself dead, and its live gauges (cache entries, buffered records, blocks) stayed in
    every scrape for the rest of the run, with series of its pid. The supervisor marks
    each worker it has joined."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    process = worker(live_gauge_in_a_killed_worker, str(tmp_path))
    process.process.join()  # killed: nothing of its own ran after the gauge was set
    assert process.process.exitcode == -signal.SIGKILL
    pid = process.process.pid
    assert list(tmp_path.glob(f"gauge_livesum_{pid}.db"))
    process.join()  # as the supervisor does, for a dead or a stopped worker
    assert not list(tmp_path.glob(f"gauge_live*_{pid}.db"))


def test_serve_makes_uvicorns_supervisor_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fix rides on uvicorn's own supervisor: the method it replaces is uvicorn's
    (a rename upstream would silently disable it), and the supervisor builds its workers
    from the module's ``Process``, which ``supervise_with_exit_detection`` replaces."""
    monkeypatch.setattr(multiprocess, "Process", multiprocess.Process)  # restored after
    assert "_healthcheck" in multiprocess.Process.__dict__
    assert "Process(self.config, self.sockets)" in inspect.getsource(
        multiprocess.Multiprocess.init_processes
    )

    supervise_with_exit_detection()

    assert multiprocess.Process is WorkerProcess
