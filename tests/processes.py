"""Real processes for end-to-end tests: `authgate serve` and friends on loopback ports,
each with its output in a log file that failures quote."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx2
import pytest

AUTHGATE = Path(sys.executable).with_name("authgate")

# Cheap Argon2 and no access log: the tests measure authgate, not password hashing.
TEST_SERVER_ENVIRONMENT = {
    "AUTHGATE_ARGON2_MEMORY_KIB": "8",
    "AUTHGATE_ARGON2_TIME_COST": "1",
    "AUTHGATE_ACCESS_LOG": "false",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Process:
    """A subprocess whose output goes to ``log_path``; stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        log_path: Path,
        cwd: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.command = list(command)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def diagnostics(self) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return f"output of {self.command[0]} ({self.log_path}):\n{text[-6000:]}"

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (a crash)."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=15)

    def stop(self) -> None:
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._log.close()


class AuthgateServer(Process):
    """`authgate serve` on a loopback port, configured only through ``environment``
    (a developer's own AUTHGATE_* variables are not inherited)."""

    def __init__(
        self,
        workdir: Path,
        environment: Mapping[str, str],
        *,
        port: int | None = None,
        args: Sequence[str] = (),
        log_name: str = "server.log",
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.environment = dict(environment)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
        env.update(TEST_SERVER_ENVIRONMENT)
        env.update(environment)
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            [str(AUTHGATE), "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            log_path=workdir / log_name,
            cwd=workdir,
            env=env,
        )

    def wait_until_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                pytest.fail(f"server exited with {self.process.returncode}\n{self.diagnostics()}")
            try:
                if httpx2.get(f"{self.base_url}/api/ping", timeout=2.0).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"server not up within {timeout} s\n{self.diagnostics()}")

    def wait_for_exit(self, timeout: float = 30.0) -> int:
        """The exit status of a server expected to stop by itself (e.g. refusing to start)."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server still running after {timeout} s\n{self.diagnostics()}")
