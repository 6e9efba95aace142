"""How many connections one ``authgate serve`` worker keeps open, and the open-files
limit that bound must stay under.

Each connection is a file descriptor. systemd's default soft limit is 1,024, and a
process out of descriptors cannot accept, open its database or write a file: every
new connection is reset, and nothing says why. uvicorn's own ``limit_concurrency`` is
no help there (uvicorn 0.54, read in its source): it is checked when a request head is
complete, so it answers 503 to requests, but accepts every connection and keeps the
idle ones (a head may take ``AUTHGATE_HEADER_TIMEOUT_SECONDS`` to arrive), each holding
its descriptor. So ``serve``

* raises its soft ``RLIMIT_NOFILE`` to the hard limit at start-up
  (:func:`raise_open_files_limit`; the workers inherit it), and
* bounds the open connections per worker (:class:`ConnectionLimit`,
  ``AUTHGATE_MAX_CONNECTIONS``, never more than half the open-files limit:
  :func:`connection_bound`): ``BoundedHeadProtocol`` answers a connection beyond the
  bound ``503 overloaded`` and closes it, with one log line per minute at most.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

log = logging.getLogger("authgate.http")

# The soft limit asked for when the hard one is unlimited: Linux's default fs.nr_open
# (setrlimit refuses more than that).
UNLIMITED_OPEN_FILES = 1 << 20
# At most one log line per this many seconds about refused connections.
REFUSED_LOG_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class OpenFilesLimit:
    """The soft ``RLIMIT_NOFILE`` before and after :func:`raise_open_files_limit`."""

    before: int
    now: int


def raise_open_files_limit() -> OpenFilesLimit:
    """Raise this process's soft limit on open files to its hard limit (children, the
    workers, inherit it). A limit that cannot be raised stays as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return OpenFilesLimit(before=UNLIMITED_OPEN_FILES, now=UNLIMITED_OPEN_FILES)
    target = UNLIMITED_OPEN_FILES if hard == resource.RLIM_INFINITY else hard
    if soft >= target:
        return OpenFilesLimit(before=soft, now=soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # e.g. above fs.nr_open, or a sandbox refuses it
        return OpenFilesLimit(before=soft, now=soft)
    return OpenFilesLimit(before=soft, now=target)


def connection_bound(configured: int, open_files: int) -> int:
    """The open connections one worker allows: ``configured``, but at most half of
    ``open_files``. The other half is for what a full worker still needs: connections
    being refused, the database and Redis pools, log and data files."""
    return max(1, min(configured, open_files // 2))


class ConnectionLimit:
    """One worker's bound on open connections, and its count of refused ones (the
    protocol factory carries one; each worker process unpickles its own copy)."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        # Refusals answered with a lingering close (so that the client reads the 503)
        # while the open connections are at most this many; beyond, closed at once.
        self.lingering_maximum = maximum + max(1, maximum // 4)
        self.refused = 0
        self._reported = 0
        self._reported_at: float | None = None

    def count_refusal(self, now: float) -> None:
        """Count one refused connection; log at most once per ``REFUSED_LOG_INTERVAL``
        seconds (``now``: a monotonic clock), however many there are."""
        self.refused += 1
        last = self._reported_at
        if last is not None and now - last < REFUSED_LOG_INTERVAL:
            return
        log.warning(
            "%d connections open, the most this worker keeps (AUTHGATE_MAX_CONNECTIONS): "
            "new ones are answered 503 and closed (%d since the last report, %d in all)",
            self.maximum,
            self.refused - self._reported,
            self.refused,
        )
        self._reported, self._reported_at = self.refused, now
