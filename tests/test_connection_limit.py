"""The open-files limit and the bound on open connections of `authgate serve` (DoS
finding B): with systemd's default soft limit (1,024) idle connections used up the
descriptors, and every new connection was reset, with nothing logged.

* ``raise_open_files_limit`` raises the soft limit to the hard one (run in a child
  process whose soft limit is lowered first).
* The bound per worker is the setting, but at most half the open-files limit.
* A real `authgate serve` with AUTHGATE_MAX_CONNECTIONS=8, started with a soft limit of
  256, raises it and logs the figures; with 8 idle connections open, a 9th is answered
  503 ``overloaded`` and closed, one log line says so however many are refused, and
  once a connection closes a new one is served.
"""

from __future__ import annotations

import json
import logging
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from authgate.cli.connection_limit import (
    REFUSED_LOG_INTERVAL,
    UNLIMITED_OPEN_FILES,
    ConnectionLimit,
    connection_bound,
)
from tests.processes import AuthgateServer

MAX_CONNECTIONS = 8
LOWERED_SOFT_LIMIT = 256
GIVE_UP_SECONDS = 10.0


def _hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return UNLIMITED_OPEN_FILES if hard == resource.RLIM_INFINITY else hard


@contextmanager
def _soft_open_files_limit(soft: int) -> Iterator[None]:
    """This process's soft limit lowered to ``soft`` for a moment: a child started
    meanwhile inherits it."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def _in_child(code: str, *, soft: int) -> str:
    with _soft_open_files_limit(soft):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
    return done.stdout.strip()


RAISE_AND_REPORT = (
    "import json, resource\n"
    "from authgate.cli.connection_limit import raise_open_files_limit\n"
    "limit = raise_open_files_limit()\n"
    "print(json.dumps([limit.before, limit.now, resource.getrlimit(resource.RLIMIT_NOFILE)[0]]))"
)


def test_the_soft_open_files_limit_is_raised_to_the_hard_one() -> None:
    """A process started with a soft limit of 256 ends with the hard limit as its soft
    one, and says what it was and what it is."""
    if _hard_limit() <= LOWERED_SOFT_LIMIT:
        pytest.skip("the hard limit leaves nothing to raise")
    before, now, actual = json.loads(_in_child(RAISE_AND_REPORT, soft=LOWERED_SOFT_LIMIT))
    assert (before, now, actual) == (LOWERED_SOFT_LIMIT, _hard_limit(), _hard_limit())


def test_a_limit_at_the_hard_one_stays() -> None:
    hard = _hard_limit()
    before, now, actual = json.loads(_in_child(RAISE_AND_REPORT, soft=hard))
    assert before == now == actual == hard


def test_the_bound_is_at_most_half_the_open_files_limit() -> None:
    assert connection_bound(4096, 65536) == 4096
    assert connection_bound(4096, 1024) == 512
    assert connection_bound(8, 1024) == 8
    assert connection_bound(8, 1) == 1


def test_refused_connections_are_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limit = ConnectionLimit(8)
    caplog.set_level(logging.WARNING, logger="authgate.http")
    for moment in (100.0, 101.0, 150.0, 100.0 + REFUSED_LOG_INTERVAL + 1):
        limit.count_refusal(moment)
    lines = [r.getMessage() for r in caplog.records]
    assert limit.refused == 4
    assert len(lines) == 2
    assert "(1 since the last report, 1 in all)" in lines[0]
    assert "(3 since the last report, 4 in all)" in lines[1]


def _connect(server: AuthgateServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=GIVE_UP_SECONDS)


def _read_until_closed(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def _wait_for_log(server: AuthgateServer, text: str) -> str:
    deadline = time.monotonic() + GIVE_UP_SECONDS
    while time.monotonic() < deadline:
        log = server.log_path.read_text(encoding="utf-8", errors="replace")
        if text in log:
            return log
        time.sleep(0.05)
    pytest.fail(f"{text!r} not logged\n{server.diagnostics()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthgateServer]:
    workdir: Path = tmp_path_factory.mktemp("connection-limit")
    with _soft_open_files_limit(LOWERED_SOFT_LIMIT):
        running = AuthgateServer(
            workdir,
            {
                "AUTHGATE_DATA_DIR": str(workdir / "data"),
                "AUTHGATE_ADMIN_PASSWORD": "connection-limit-operator-password",
                "AUTHGATE_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
                "AUTHGATE_LOG_LEVEL": "INFO",
            },
        )
    try:
        running.wait_until_up()
        yield running
    finally:
        running.stop()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_connection_beyond_the_bound_is_refused_cleanly(server: AuthgateServer) -> None:
    """With the bound's 8 idle connections open, the next ones get 503 and are closed
    (not reset); one log line says so; a connection closed makes room again."""
    started = _wait_for_log(server, "open connections per worker")
    raised = _hard_limit() > LOWERED_SOFT_LIMIT
    assert (f"(raised from {LOWERED_SOFT_LIMIT})" in started) is raised, started
    assert f"at most {MAX_CONNECTIONS} open connections per worker" in started, started
    time.sleep(0.3)  # the readiness check's connection is gone
    with ExitStack() as stack:
        idle = [stack.enter_context(_connect(server)) for _ in range(MAX_CONNECTIONS)]
        refusals = []
        for _ in range(3):
            with _connect(server) as beyond:
                refusals.append(_read_until_closed(beyond))
        for answer in refusals:
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 "), answer
            assert b"retry-after: 1" in head.lower(), answer
            assert b"connection: close" in head.lower(), answer
            assert json.loads(body)["code"] == "overloaded"
        log = _wait_for_log(server, "the most this worker keeps")
        assert log.count("the most this worker keeps") == 1, log

        idle.pop().close()
        time.sleep(0.3)
        with _connect(server) as served:
            served.sendall(b"GET /api/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _read_until_closed(served).startswith(b"HTTP/1.1 200 "), server.diagnostics()
    assert server.running
