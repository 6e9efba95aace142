"""Processes beside ``authgate serve`` for the benchmarks: the bare Starlette "hello"
server (bench/hello_app.py) and nginx with authgate's forward-auth configuration.

Everything listens on loopback ports only and is stopped when its context exits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx2

from harness import ROOT, free_port

HERE = Path(__file__).resolve().parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
EXAMPLE = ROOT / "examples" / "nginx" / "authgate-forward-auth.conf"


def pinned(command: Sequence[str], cpu: int) -> list[str]:
    """``taskset -c CPU command`` where that works (as bench/harness.py pins its server)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu), *command]
    return list(command)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants still running
    (nginx's master and its worker)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            stat = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
    return total


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    port: int
    pid: int


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx2.HTTPError):
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not start within 30 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def hello_server(*, cpu: int = 0) -> Iterator[Endpoint]:
    """bench/hello_app.py (Starlette, uvicorn as ``authgate serve`` runs it) pinned to
    ``cpu``."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="authgate-bench-hello-") as directory:
        log = Path(directory) / "hello.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                pinned([sys.executable, str(HERE / "hello_app.py"), "--port", str(port)], cpu),
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_for(f"{base_url}/", process, log, "the hello server")
            yield Endpoint(base_url, port, process.pid)
        finally:
            _stop(process)


@dataclass(frozen=True)
class NginxStack:
    protected_url: str  # auth_request to authgate, then the upstream
    unprotected_url: str  # straight to the same upstream
    pid: int  # the master; its worker is a child (see tree_cpu_seconds)


@contextlib.contextmanager
def nginx_forward_auth(
    *, authgate_port: int, upstream_port: int, cpu: int = 0
) -> Iterator[NginxStack]:
    """nginx (one worker) with two servers in front of one upstream: the documented
    forward-auth server (examples/nginx/authgate-forward-auth.conf, only the ports
    changed) and a plain proxy with the same upstream keep-alive settings."""
    if not Path(NGINX).exists():
        sys.exit("nginx is needed (Debian: apt-get install nginx-light)")
    protected, unprotected = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="authgate-bench-nginx-") as directory:
        workdir = Path(directory)
        (workdir / "authgate-forward-auth.conf").write_text(
            EXAMPLE.read_text()
            .replace("127.0.0.1:8080", f"127.0.0.1:{authgate_port}")
            .replace("127.0.0.1:9000", f"127.0.0.1:{upstream_port}")
            .replace("127.0.0.1:8000", f"127.0.0.1:{protected}")
        )
        user = "user root;" if os.geteuid() == 0 else ""
        temp = "\n".join(
            f"    {kind}_temp_path {workdir / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (workdir / "nginx.conf").write_text(
            f"""{user}
worker_processes 1;
daemon off;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}
    include {workdir / "authgate-forward-auth.conf"};

    server {{
        listen 127.0.0.1:{unprotected};
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://protected-api;
        }}
    }}
}}
"""
        )
        log = workdir / "nginx.out"
        with log.open("wb") as output:
            process = subprocess.Popen(
                pinned([NGINX, "-p", str(workdir), "-c", str(workdir / "nginx.conf")], cpu),
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        unprotected_url = f"http://127.0.0.1:{unprotected}"
        try:
            _wait_for(f"{unprotected_url}/", process, log, "nginx")
            yield NginxStack(f"http://127.0.0.1:{protected}", unprotected_url, process.pid)
        finally:
            _stop(process)
