"""Shared benchmark plumbing: start an authgate server on loopback, run wrk, parse figures.

Benchmarks print figures and ratios measured in the same run; they never fail on a
wall-clock threshold (machines are noisy).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent
AUTHGATE = Path(sys.executable).with_name("authgate")
ADMIN_PASSWORD = "benchmark-operator-password"


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p99_ms: float
    non_2xx: int
    # Server CPU time per request (user + system), when the server's pid was given:
    # steadier than requests/s on a host whose CPU is shared with other machines.
    cpu_us_per_request: float | None = None


@dataclass(frozen=True)
class Comparison:
    first: LoadResult
    second: LoadResult
    ratio: float  # median over rounds of first/second requests per second
    cpu_ratio: float | None  # median over rounds of second/first CPU time per request


@dataclass(frozen=True)
class Server:
    base_url: str
    data_dir: Path
    pid: int

    def login(self) -> str:
        response = httpx2.post(
            f"{self.base_url}/api/authenticate",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            timeout=30,
        )
        response.raise_for_status()
        token: str = response.json()["id_token"]
        return token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _pinned(command: Sequence[str], cpu: int) -> list[str]:
    """Pin to one CPU when possible, so server and load generator do not share a core."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu), *command]
    return list(command)


@contextlib.contextmanager
def authgate_server(
    *, workers: int = 1, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """A real ``authgate serve`` on a free loopback port, stopped on exit."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="authgate-bench-") as directory:
        env = {
            **os.environ,
            "AUTHGATE_DATA_DIR": str(Path(directory) / "data"),
            "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "AUTHGATE_ACCESS_LOG": "false",
            "AUTHGATE_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        command = [str(AUTHGATE), "serve", "--port", str(port), "--workers", str(workers)]
        process = subprocess.Popen(
            _pinned(command, cpu=0),
            env=env,
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(base_url, process)
            yield Server(base_url=base_url, data_dir=Path(directory) / "data", pid=process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"authgate exited early:\n{stderr}")
        with contextlib.suppress(httpx2.HTTPError):
            if httpx2.get(f"{base_url}/api/ping", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("authgate did not start within 30 s")


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is needed on PATH (Debian: apt-get install wrk)")
    return wrk


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_REQUESTS = re.compile(r"(\d+) requests in")
_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_UNIT_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str,
    *,
    seconds: int = 10,
    connections: int = 32,
    headers: dict[str, str] | None = None,
    server_pid: int | None = None,
) -> LoadResult:
    """One bounded wrk run on loopback (1 thread, pinned to the other core)."""
    command = [require_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    cpu_before = cpu_seconds(server_pid) if server_pid else None
    output = subprocess.run(
        _pinned([*command, url], cpu=1),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    cpu_used = cpu_seconds(server_pid) - cpu_before if server_pid and cpu_before else None
    rps = _RPS.search(output)
    p99 = _P99.search(output)
    if rps is None or p99 is None:
        raise RuntimeError(f"cannot parse wrk output:\n{output}")
    non_2xx = _NON_2XX.search(output)
    requests = _REQUESTS.search(output)
    cpu_per_request = (
        cpu_used / int(requests.group(1)) * 1e6 if cpu_used is not None and requests else None
    )
    return LoadResult(
        requests_per_second=float(rps.group(1)),
        p99_ms=float(p99.group(1)) * _UNIT_TO_MS[p99.group(2)],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        cpu_us_per_request=cpu_per_request,
    )


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time a process (or one of its threads: ``thread``, its native
    id; a process's first thread, its event loop in a server, has the process's id)
    has used so far (Linux /proc)."""
    stat = f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat"
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def median_result(results: Sequence[LoadResult]) -> LoadResult:
    cpu = [r.cpu_us_per_request for r in results if r.cpu_us_per_request is not None]
    return LoadResult(
        requests_per_second=statistics.median(r.requests_per_second for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        cpu_us_per_request=statistics.median(cpu) if cpu else None,
    )


def compare(
    baseline: tuple[str, Callable[[], LoadResult]],
    candidates: dict[str, Callable[[], LoadResult]],
    *,
    rounds: int,
) -> dict[str, Comparison]:
    """Measure the baseline and every candidate once per round, in a rotating order, and
    compare each candidate with the baseline of the same round.

    This machine's throughput drifts by tens of percent between runs (a shared host), so
    a ratio is the median of per-round ratios; the printed figures are medians too.
    """
    labels = [baseline[0], *candidates]
    runs = {baseline[0]: baseline[1], **candidates}
    results: dict[str, list[LoadResult]] = {label: [] for label in labels}
    for round_number in range(rounds):
        shift = round_number % len(labels)
        for label in labels[shift:] + labels[:shift]:
            results[label].append(runs[label]())
    medians = {label: median_result(results[label]) for label in labels}
    for label in labels:
        result = medians[label]
        cpu = f"   {result.cpu_us_per_request:6.0f} us CPU/req" if result.cpu_us_per_request else ""
        print(
            f"  {label:<34} {result.requests_per_second:>9.0f} req/s"
            f"   p99 {result.p99_ms:7.2f} ms{cpu}"
        )
    comparisons = {}
    for label in candidates:
        pairs = list(zip(results[label], results[baseline[0]], strict=True))
        cpu_ratios = [
            base.cpu_us_per_request / mine.cpu_us_per_request
            for mine, base in pairs
            if mine.cpu_us_per_request and base.cpu_us_per_request
        ]
        comparisons[label] = Comparison(
            first=medians[label],
            second=medians[baseline[0]],
            ratio=statistics.median(
                mine.requests_per_second / base.requests_per_second for mine, base in pairs
            ),
            cpu_ratio=statistics.median(cpu_ratios) if cpu_ratios else None,
        )
    return comparisons
