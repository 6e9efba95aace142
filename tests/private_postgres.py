"""A PostgreSQL cluster of a test's own: created with ``initdb`` in a temporary directory,
on a free loopback port, run as the ``postgres`` user, started and stopped by the test.

Stopping the machine's shared cluster would break every other test run using it; this one
belongs to the test alone. Needs root (to run the server as ``postgres``) and the
PostgreSQL server binaries; ``available()`` says why not when they are missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

POSTGRES_USER = "postgres"
_BIN_ROOT = Path("/usr/lib/postgresql")


def _binaries() -> Path | None:
    versions = sorted(
        (p for p in _BIN_ROOT.glob("*/bin") if (p / "initdb").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


def unavailable_reason() -> str | None:
    """Why a private cluster cannot be run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root, to run a private PostgreSQL as the postgres user"
    if _binaries() is None:
        return f"no PostgreSQL server binaries under {_BIN_ROOT}"
    try:
        pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        return "no postgres user"
    if shutil.which("runuser") is None:
        return "no runuser"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivatePostgres:
    """``initdb`` + ``pg_ctl start/stop`` in a directory owned by postgres."""

    def __init__(self) -> None:
        binaries = _binaries()
        assert binaries is not None, unavailable_reason()
        self._bin = binaries
        self.root = Path(tempfile.mkdtemp(prefix="authgate-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = _free_port()
        account = pwd.getpwnam(POSTGRES_USER)
        os.chown(self.root, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", POSTGRES_USER,
                  "--no-sync", "-E", "UTF8")  # fmt: skip
        settings = (
            f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.root}'\nfsync = off\n"
            "synchronous_commit = off\nfull_page_writes = off\n"
        )
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(settings)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{POSTGRES_USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", POSTGRES_USER, "--", str(self._bin / tool), *args],
            check=True,
            capture_output=True,
            cwd=self.root,
            timeout=120,
        )

    def sql(self, statement: str) -> None:
        """Run ``statement`` as the superuser, connected to ``template1`` (so that it
        works while ``postgres``, authgate's database, refuses connections)."""
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", POSTGRES_USER,
             "-d", "template1", "-v", "ON_ERROR_STOP=1", "-qAt", "-c", statement],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """A fast shutdown: connections are cut, as in a real outage."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def restart(self) -> None:
        """A fast restart: connections are cut, new ones refused while it shuts down
        and starts up ("the database system is shutting down / starting up")."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w",
                  "-t", "60", "restart")  # fmt: skip

    def running(self) -> bool:
        result = subprocess.run(
            ["runuser", "-u", POSTGRES_USER, "--", str(self._bin / "pg_ctl"), "-D",
             str(self.data), "status"],
            capture_output=True,
            check=False,
        )  # fmt: skip
        return result.returncode == 0

    def destroy(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def wait_for(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return True
        time.sleep(0.05)
    return False
