"""A stop is bounded whatever a request does (``AUTHGATE_SHUTDOWN_TIMEOUT_SECONDS``): a
real ``authgate serve`` gets SIGTERM while one request waits for a body that never comes
(it would wait for the body timeout, two minutes here); the process exits within the
shutdown timeout, and what it buffered (a key's usage) is still written on the way out.
uvicorn waited for such a request without a bound."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_audit_sigterm import (
    AUTHGATE,
    create_key,
    diagnostics,
    free_port,
    server_environment,
    wait_until_up,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

SHUTDOWN_TIMEOUT_SECONDS = 2
# What the waiting request would otherwise hold the stop for.
BODY_TIMEOUT_SECONDS = 120


def test_a_request_that_never_ends_does_not_hold_the_stop(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = server_environment(data_dir)
    env["AUTHGATE_SHUTDOWN_TIMEOUT_SECONDS"] = str(SHUTDOWN_TIMEOUT_SECONDS)
    env["AUTHGATE_BODY_TIMEOUT_SECONDS"] = str(BODY_TIMEOUT_SECONDS)
    env["AUTHGATE_USAGE_FLUSH_INTERVAL_SECONDS"] = "60"  # buffered when the stop comes
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with (
        (tmp_path / "server.stdout").open("wb") as stdout,
        (tmp_path / "server.stderr").open("wb") as stderr,
    ):
        process = subprocess.Popen(
            [str(AUTHGATE), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_until_up(process, base_url, tmp_path)
        _key_id, key = create_key(base_url)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as waiting:
            # One use of the key, counted in the usage log's buffer...
            waiting.sendall(
                b"GET /api/account HTTP/1.1\r\nHost: authgate\r\nUtm-Api-Key: "
                + key.encode()
                + b"\r\n\r\n"
            )
            assert waiting.recv(65536).startswith(b"HTTP/1.1 200")
            # ...then a login whose body stops after 10 of its 100 bytes.
            waiting.sendall(
                b"POST /api/authenticate HTTP/1.1\r\nHost: authgate\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                b'{"username'
            )
            time.sleep(0.5)
            stopped_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS + 20)
            except subprocess.TimeoutExpired:
                pytest.fail(f"SIGTERM did not stop the server\n{diagnostics(tmp_path)}")
            took = time.monotonic() - stopped_at
        assert process.returncode in (0, -signal.SIGTERM), diagnostics(tmp_path)
        assert took < BODY_TIMEOUT_SECONDS
        # The cancelled request is uvicorn's line and one warning, not a traceback.
        log = (tmp_path / "server.stderr").read_text()
        assert "Traceback" not in log, log[-3000:]
        errors = [line for line in log.splitlines() if " ERROR " in line]
        assert [line.partition(" ERROR ")[2] for line in errors] == [
            "uvicorn.error: Cancel 1 running task(s), timeout graceful shutdown exceeded"
        ]
        assert "WARNING uvicorn.error: a request still running when the stop's timeout" in log
        connection = sqlite3.connect(data_dir / "authgate.db")
        try:
            (counted,) = connection.execute(
                "SELECT COALESCE(SUM(requests), 0) FROM api_key_usage_minutes"
            ).fetchone()
        finally:
            connection.close()
        assert counted == 1, diagnostics(tmp_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
