"""uvicorn's supervision of ``--workers``, with one fix: a worker that exits while its
supervisor's health ping is in flight is seen dead at once.

uvicorn's supervisor (``uvicorn.supervisors.multiprocess``) checks each worker in turn:
alive, then a ping over a pipe, answered within ``timeout_worker_healthcheck`` (60 s
here, ``server.WORKER_HEALTHCHECK_SECONDS``). A worker that exits (SIGTERM, a crash)
after the liveness check and before answering leaves the ping unanswered, and the pipe
gives no end-of-file (the supervisor holds the worker's end too), so the supervisor
waited the whole 60 s: one worker short for a minute, and the supervisor's loop, which
also handles signals, blocked (a stop meanwhile outlasts a container's grace period;
the fault review measured it in 2 of 5 SIGTERMed workers). Here the wait also ends when
the worker's process sentinel fires, and a worker that exited counts as dead.

And one addition: a worker that has ended, however (killed by a signal, the OOM killer,
a crash), leaves the metrics' live gauges. A worker stopping cleanly marks itself dead
(``Metrics.process_exiting``); one killed never did, and its last cache sizes, buffered
records and blocks stayed in every scrape, with series of its pid, for the rest of the
run (the metrics review). The supervisor marks each worker it has joined."""

from __future__ import annotations

import pickle
from multiprocessing.connection import wait

from prometheus_client import multiprocess as prometheus_multiprocess
from uvicorn.supervisors import multiprocess

from authgate.settings import prometheus_multiprocess_dir


class WorkerProcess(multiprocess.Process):
    """uvicorn's worker process whose health ping also ends when the worker exits, and
    whose live metrics gauges leave the sums once it has ended."""

    def join(self) -> None:
        super().join()
        directory = prometheus_multiprocess_dir()
        pid = self.process.pid
        if directory is not None and pid is not None:
            # prometheus_client's own clean-up of a dead worker (its live gauge files).
            prometheus_multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]

    def _healthcheck(self, timeout: float) -> bool | None:
        try:
            self.parent_conn.send(b"ping")
            ready = wait([self.parent_conn, self.process.sentinel], timeout)
            if self.parent_conn in ready:  # answered (it may have exited since)
                started: bool = self.parent_conn.recv()
                return started
            return None  # exited without answering, or no answer in time
        except (OSError, EOFError, pickle.UnpicklingError):
            return None


def supervise_with_exit_detection() -> None:
    """Make uvicorn's ``--workers`` supervisor use :class:`WorkerProcess`."""
    multiprocess.Process = WorkerProcess  # type: ignore[misc]
