"""Several real ``authgate serve`` nodes on one PostgreSQL and a private Redis, on loopback.

The same deployment as ``tests/test_cluster.py`` (which uses pytest to report failures):
each node is its own process with one worker, configured as a cluster with the pepper
and signing keys of ``authgate cluster init``. Redis is a ``redis-server`` of the
benchmark's own on a free port, so killing it disturbs nothing else. Every process
writes to a log file in the work directory, quoted when something goes wrong.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx2

from harness import AUTHGATE, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
ADMIN_PASSWORD = "cluster-benchmark-operator-password"

# Cheap Argon2, no access log: the benchmark measures authgate, not password hashing.
NODE_ENVIRONMENT = {
    "AUTHGATE_ARGON2_MEMORY_KIB": "8",
    "AUTHGATE_ARGON2_TIME_COST": "1",
    "AUTHGATE_ACCESS_LOG": "false",
    "AUTHGATE_LOG_LEVEL": "WARNING",
    "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
}


class ManagedProcess:
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

    def log_tail(self) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return f"output of {self.command[0]} ({self.log_path}):\n{text[-4000:]}"

    def kill(self) -> None:
        """SIGKILL: no chance to clean up (a crash)."""
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


class RedisServer(ManagedProcess):
    def __init__(self, workdir: Path) -> None:
        if not Path(REDIS_SERVER).exists():
            raise RuntimeError("redis-server is needed (Debian: apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            [
                REDIS_SERVER,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            log_path=workdir / "redis.log",
            cwd=workdir,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            completed = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            )
            if completed.stdout.strip() == b"PONG":
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start\n{self.log_tail()}")


class AuthgateNode(ManagedProcess):
    """``authgate serve`` (one worker) on a loopback port, configured only by
    ``environment`` (AUTHGATE_* variables of the caller's own are not inherited)."""

    def __init__(self, name: str, workdir: Path, environment: Mapping[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
        env.update(NODE_ENVIRONMENT)
        env.update(environment)
        env["AUTHGATE_DATA_DIR"] = str(workdir / "data")
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            [str(AUTHGATE), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            log_path=workdir / "server.log",
            cwd=workdir,
            env=env,
        )

    def wait_until_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"node {self.name} exited early\n{self.log_tail()}")
            with contextlib.suppress(httpx2.TransportError):
                if httpx2.get(f"{self.base_url}/api/ping", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"node {self.name} not up within {timeout} s\n{self.log_tail()}")


def cluster_secrets(directory: Path) -> dict[str, str]:
    """The shared pepper and signing keys, made by ``authgate cluster init``."""
    completed = subprocess.run(
        [str(AUTHGATE), "cluster", "init", str(directory)],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"authgate cluster init failed:\n{completed.stderr.decode()}")
    return {
        "AUTHGATE_CLUSTER": "true",
        "AUTHGATE_API_KEY_PEPPER_FILE": str(directory / "api-key-pepper"),
        "AUTHGATE_AUDIT_KEY_FILE": str(directory / "audit-key"),
        "AUTHGATE_TFA_KEY_FILE": str(directory / "tfa-key"),
        "AUTHGATE_SIGNING_KEYS_FILE": str(directory / "signing-keys.json"),
    }


@contextlib.contextmanager
def cluster(
    workdir: Path,
    *,
    database_url: str,
    redis_url: str | None,
    names: Sequence[str] = ("a", "b", "c"),
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[list[AuthgateNode]]:
    """Nodes on one database (migrated already); the first starts alone (it creates the
    admin user), the others together. All are stopped on exit."""
    environment = {
        "AUTHGATE_DATABASE_URL": database_url,
        **({"AUTHGATE_REDIS_URL": redis_url} if redis_url else {}),
        **cluster_secrets(workdir / "secrets"),
        **(extra_env or {}),
    }
    nodes: list[AuthgateNode] = []
    try:
        first, *others = names
        nodes.append(AuthgateNode(first, workdir / first, environment))
        nodes[0].wait_until_up()
        nodes += [AuthgateNode(name, workdir / name, environment) for name in others]
        for node in nodes[1:]:
            node.wait_until_up()
        yield nodes
    finally:
        for node in nodes:
            node.stop()
