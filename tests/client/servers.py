"""Servers on loopback for the client tests: ``authgate serve`` in a subprocess, and any
ASGI app (the fake UTMStack) under uvicorn in a thread."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx2
import pytest
import uvicorn

AUTHGATE = Path(sys.executable).with_name("authgate")
AUTHGATE_CLIENT = Path(sys.executable).with_name("authgate-client")
ADMIN_PASSWORD = "admin-password-for-client-tests"

# Tests log in a lot from one address, some with wrong passwords or keys on purpose.
_GENEROUS_THROTTLING = {
    "AUTHGATE_LOGIN_IP_MAX_FAILURES": "100000",
    "AUTHGATE_LOGIN_PAIR_MAX_FAILURES": "1000",
    "AUTHGATE_LOGIN_ACCOUNT_MAX_FAILURES": "100000",
    "AUTHGATE_KEY_IP_MAX_FAILURES": "100000",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def clean_environment() -> dict[str, str]:
    """This process's environment without any AUTHGATE_*/UTMSTACK_* variable."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AUTHGATE_", "UTMSTACK_"))
    }


class AuthgateServer:
    """``authgate serve`` on a free loopback port, with a known admin password."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_password = ADMIN_PASSWORD
        env = clean_environment()
        env.update(
            {
                "AUTHGATE_DATA_DIR": str(workdir / "data"),
                "AUTHGATE_ARGON2_MEMORY_KIB": "8",
                "AUTHGATE_ARGON2_TIME_COST": "1",
                "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "AUTHGATE_ACCESS_LOG": "false",
                "AUTHGATE_USAGE_FLUSH_INTERVAL_SECONDS": "0.1",
                "AUTHGATE_AUDIT_FLUSH_INTERVAL_SECONDS": "0.1",
                **_GENEROUS_THROTTLING,
            }
        )
        self._log_path = workdir / f"authgate-{self.port}.log"
        self._log: IO[bytes] = self._log_path.open("wb")
        self.process = subprocess.Popen(
            [str(AUTHGATE), "serve", "--port", str(self.port)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def diagnostics(self) -> str:
        self._log.flush()
        return self._log_path.read_text(encoding="utf-8", errors="replace")[-4000:]

    def wait_until_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"authgate exited with {self.process.returncode}\n{self.diagnostics()}")
            try:
                if httpx2.get(f"{self.url}/api/ping", timeout=2.0).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"authgate not up within {timeout} s\n{self.diagnostics()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@contextmanager
def serve_asgi(app: Any, **ssl: Any) -> Iterator[str]:
    """Serve an ASGI app on a free loopback port in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
        http="h11",
        access_log=False,
        **ssl,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test server did not start within 10 s")
        time.sleep(0.02)
    scheme = "https" if ssl else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
