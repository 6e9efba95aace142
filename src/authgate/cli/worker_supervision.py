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
the worker's process sentinel fires, and a worker that exited counts as dead."""

from __future__ import annotations

import pickle
from multiprocessing.connection import wait

from uvicorn.supervisors import multiprocess


class WorkerProcess(multiprocess.Process):
    """uvicorn's worker process whose health ping also ends when the worker exits."""

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
