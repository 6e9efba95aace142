"""P5: key-authenticated latency during a login flood, and logins/s against raw Argon2.

Starts ``authgate serve`` (1 worker, pinned to CPU 0, default Argon2id parameters),
creates an API key and ``--flood`` users, then per round:

* baseline: an open-loop probe sends ``GET /api/authenticate`` with the API key at a
  fixed rate (``--rate``, default 200/s, a few percent of what the server can do) and
  records each request's latency;
* flood: the same probe while ``--flood`` clients (default 64, one user each, correct
  passwords) each send ``POST /api/authenticate`` back to back, so that many logins
  are always waiting for a hash; logins completed during the probe window give
  logins/s;
* raw: argon2-cffi verifies a hash made with the same parameters, in as many threads
  as the server's hashing pool (``AUTHGATE_PASSWORD_HASHING_THREADS``, 0 meaning one
  per CPU the process may run on: 1 for the server pinned to CPU 0, and 1 here),
  pinned to the same CPU 0, at the same scheduling priority as the pool's threads
  (``AUTHGATE_PASSWORD_HASHING_PRIORITY`` and ``_NICE``: on a quiet host this changes
  nothing, on a shared one both sides get the same share of CPU 0), for
  ``--hash-seconds``. A login verifies one hash, so this is the ceiling of logins/s.

Why an open-loop probe and not wrk: wrk is closed-loop (each connection waits for its
answer before sending again), so a slow server receives fewer requests and the slow
moments are under-sampled; wrk2 (fixed rate) is not packaged. The probe is a small
asyncio client (uvloop, raw HTTP/1.1 over 16 keep-alive connections, pinned to CPU 1
with the flood clients) that dispatches requests on a fixed schedule whatever the
answers do; a request's latency runs from its dispatch, including any wait for a free
connection, to the end of its response. Correct passwords and one user per flood
client, each at an address of its own (``X-Forwarded-For`` through the loopback proxy
the server trusts), keep brute-force protection out of the way (it counts failures and
evaluates one address's checks one at a time), so the flood is neither cut short by
429/423 answers nor queued per address.

Ratios are medians of per-round ratios (p99 flood / p99 baseline, target <= 2;
logins/s / raw verifications/s, target >= 0.85: issue 12's, the first round's were 3
and 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import argon2
import httpx2
import uvloop

from auth_overhead import create_api_key
from authgate.services.password_hashing import (
    HashingConfig,
    available_cpus,
    lower_thread_priority,
)
from authgate.settings import Settings
from report import Row, add_output_arguments, at_least, at_most, print_rows, write_json
from stacks import pinned

from harness import Server, authgate_server, cpu_seconds

FLOOD_PASSWORD = "flood-user-password-42"
LATENCY_TARGET = 2.0
THROUGHPUT_TARGET = 0.85
PROBE_CONNECTIONS = 16
T = TypeVar("T")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


# -- a minimal HTTP/1.1 keep-alive client: light enough not to disturb what it measures --


class HttpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> int:
        """Send one request, read its whole response, return the status."""
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        length = _CONTENT_LENGTH.search(head)
        if length is None:
            raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
        await self._reader.readexactly(int(length.group(1)))
        return int(head[9:12])

    def close(self) -> None:
        self._writer.close()


def get_request(port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post_json_request(
    port: int, path: str, body: dict[str, str], *, forwarded_for: str | None = None
) -> bytes:
    payload = json.dumps(body).encode()
    forwarded = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{forwarded}"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


# -- the open-loop probe and the flood --------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    latencies_ms: list[float]
    failures: int
    rate: float  # requests/s actually dispatched
    max_lag_ms: float  # how late the client dispatched against its schedule, at worst

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


async def probe(port: int, request: bytes, *, rate: float, seconds: float) -> ProbeResult:
    pool: asyncio.Queue[HttpConnection] = asyncio.Queue()
    connections = [await HttpConnection.open(port) for _ in range(PROBE_CONNECTIONS)]
    for connection in connections:
        pool.put_nowait(connection)
    latencies: list[float] = []
    failures = 0

    async def one(dispatched: float) -> None:
        nonlocal failures
        connection = await pool.get()
        try:
            status = await connection.send(request)
        finally:
            pool.put_nowait(connection)
        latencies.append((time.perf_counter() - dispatched) * 1000)
        failures += status != 200

    total = int(rate * seconds)
    tasks = []
    max_lag = 0.0
    start = time.perf_counter()
    for index in range(total):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.perf_counter()
        max_lag = max(max_lag, now - due)
        tasks.append(asyncio.create_task(one(now)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 60)
    elapsed = time.perf_counter() - start
    for connection in connections:
        connection.close()
    return ProbeResult(latencies, failures, total / elapsed, max_lag * 1000)


@dataclass(frozen=True)
class FloodResult:
    probe: ProbeResult
    logins_per_second: float
    login_failures: dict[int, int]
    logins: int  # completed in the probe window
    window_seconds: float
    server_cpu_seconds: float  # the server's CPU time in the probe window
    loop_cpu_seconds: float  # of which its event-loop thread's (the rest: hashing, mostly)


async def probe_during_flood(
    port: int,
    probe_request: bytes,
    logins: Sequence[bytes],
    *,
    rate: float,
    seconds: float,
    server_pid: int,
) -> FloodResult:
    stop = asyncio.Event()
    completed: list[float] = []
    failures: dict[int, int] = {}

    async def log_in_repeatedly(request: bytes) -> None:
        connection = await HttpConnection.open(port)
        try:
            while not stop.is_set():
                status = await connection.send(request)
                if status == 200:
                    completed.append(time.perf_counter())
                else:
                    failures[status] = failures.get(status, 0) + 1
        finally:
            connection.close()

    clients = [asyncio.create_task(log_in_repeatedly(request)) for request in logins]
    await asyncio.sleep(1.5)  # every client has a login queued for a hash by now
    cpu_before, loop_before = cpu_seconds(server_pid), cpu_seconds(server_pid, server_pid)
    started = time.perf_counter()
    result = await probe(port, probe_request, rate=rate, seconds=seconds)
    ended = time.perf_counter()
    cpu_used = cpu_seconds(server_pid) - cpu_before
    loop_used = cpu_seconds(server_pid, server_pid) - loop_before
    stop.set()
    # Let the queued logins finish: the server would hash them anyway, and they would
    # load the next baseline.
    await asyncio.wait_for(asyncio.gather(*clients), timeout=120)
    count = sum(started <= t <= ended for t in completed)
    window = ended - started
    return FloodResult(result, count / window, failures, count, window, cpu_used, loop_used)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


# -- raw Argon2 ---------------------------------------------------------------------------------


def hashing_config() -> HashingConfig:
    """The server's ``password_hashing`` settings (defaults, or AUTHGATE_ARGON2_* and
    AUTHGATE_PASSWORD_HASHING_* as the server sees them)."""
    with tempfile.TemporaryDirectory() as directory:
        return Settings(data_dir=Path(directory)).password_hashing


def argon2_settings() -> tuple[argon2.PasswordHasher, int]:
    """A hasher with authgate's parameters and the number of threads of the server's
    hashing pool."""
    config = hashing_config()
    hasher = argon2.PasswordHasher(
        time_cost=config.time_cost,
        memory_cost=config.memory_kib,
        parallelism=config.parallelism,
        type=argon2.Type.ID,
    )
    return hasher, config.threads or available_cpus()


def hash_worker(seconds: float) -> None:
    """Verifications/s of the pool's thread count in this process (which the parent pins
    to CPU 0, as the server is); prints one JSON object."""
    hasher, threads = argon2_settings()
    config = hashing_config()
    stored = hasher.hash(FLOOD_PASSWORD)
    started = time.perf_counter()
    cpu_before = time.process_time()
    deadline = started + seconds

    def verify_until_deadline() -> int:
        lower_thread_priority(config.priority, config.nice)  # as the pool's threads do
        count = 0
        while time.perf_counter() < deadline:
            hasher.verify(stored, FLOOD_PASSWORD)
            count += 1
        return count

    with ThreadPoolExecutor(threads) as pool:
        counts = list(pool.map(lambda _: verify_until_deadline(), range(threads)))
    elapsed = time.perf_counter() - started
    cpu_ms = (time.process_time() - cpu_before) / sum(counts) * 1000
    print(json.dumps({"threads": threads, "per_second": sum(counts) / elapsed, "cpu_ms": cpu_ms}))


@dataclass(frozen=True)
class RawHashing:
    per_second: float
    cpu_ms: float  # CPU time per verification


def raw_verifications(seconds: float) -> RawHashing:
    command = [sys.executable, __file__, "--hash-worker", "--hash-seconds", str(seconds)]
    output = subprocess.run(
        pinned(command, cpu=0), capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    figures = json.loads(output)
    return RawHashing(figures["per_second"], figures["cpu_ms"])


# -- the benchmark ------------------------------------------------------------------------------


def create_users(server: Server, token: str, count: int) -> list[str]:
    logins = []
    with httpx2.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        for index in range(count):
            login = f"flood-{index}"
            response = client.post(
                f"{server.base_url}/api/users",
                json={"login": login, "email": f"{login}@example.com", "password": FLOOD_PASSWORD},
            )
            response.raise_for_status()
            logins.append(login)
    return logins


@dataclass(frozen=True)
class Round:
    baseline: ProbeResult
    baseline_cpu_per_second: float  # the server's, serving the probe alone
    flood: FloodResult
    raw: RawHashing

    @property
    def cpu_ms_per_login(self) -> float:
        """The server's CPU time per login during the flood, less what the probe
        traffic cost it without the flood."""
        probe_share = self.baseline_cpu_per_second * self.flood.window_seconds
        if self.flood.logins == 0:  # a host so busy that no login got a hash done
            return math.inf
        return (self.flood.server_cpu_seconds - probe_share) / self.flood.logins * 1000

    @property
    def loop_share(self) -> float:
        """The fraction of CPU 0 the event-loop thread had during the flood (the probe's
        requests, the logins' work around the hash, background tasks)."""
        return self.flood.loop_cpu_seconds / self.flood.window_seconds

    @property
    def hashing_share(self) -> float:
        """The fraction of CPU 0 the server's other threads had during the flood: the
        hashing pool's, nearly all (the database driver's thread takes ~1 %)."""
        flood = self.flood
        return (flood.server_cpu_seconds - flood.loop_cpu_seconds) / flood.window_seconds


def measure(args: argparse.Namespace) -> tuple[list[Round], int]:
    _, threads = argon2_settings()
    with authgate_server(extra_env={"AUTHGATE_TRUSTED_PROXIES": "127.0.0.1"}) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        token = server.login()
        key = create_api_key(server, token)
        users = create_users(server, token, args.flood)
        probe_request = get_request(port, "/api/authenticate", {"Authorization": f"Bearer {key}"})
        # Each flood client is a user at an address of its own (through the loopback
        # proxy the server trusts): authgate evaluates one address's password checks one
        # at a time (brute-force protection), so 64 users behind one address would
        # measure that queue, not the hashing pool.
        logins = [
            post_json_request(
                port,
                "/api/authenticate",
                {"username": user, "password": FLOOD_PASSWORD},
                forwarded_for=f"10.77.{index // 250}.{index % 250 + 1}",
            )
            for index, user in enumerate(users)
        ]
        run_async(probe(port, probe_request, rate=args.rate, seconds=1))  # warm up
        rounds = []
        for number in range(args.rounds):
            print(f"  round {number + 1}/{args.rounds}", flush=True)
            cpu_before, started = cpu_seconds(server.pid), time.perf_counter()
            baseline = run_async(probe(port, probe_request, rate=args.rate, seconds=args.seconds))
            cpu_rate = (cpu_seconds(server.pid) - cpu_before) / (time.perf_counter() - started)
            flood = run_async(
                probe_during_flood(
                    port,
                    probe_request,
                    logins,
                    rate=args.rate,
                    seconds=args.seconds,
                    server_pid=server.pid,
                )
            )
            time.sleep(0.5)
            # The server is idle now (the flood drained), so the raw hashes have CPU 0.
            raw = raw_verifications(args.hash_seconds)
            rounds.append(Round(baseline, cpu_rate, flood, raw))
            _print_round(rounds[-1])
    return rounds, threads


def _print_round(result: Round) -> None:
    for label, measured in (("no flood", result.baseline), ("flood", result.flood.probe)):
        print(
            f"    probe {label:<9} {measured.rate:6.0f} req/s sent  p50 "
            f"{measured.percentile(0.5):7.2f} ms  p99 {measured.percentile(0.99):7.2f} ms  "
            f"max {max(measured.latencies_ms):7.2f} ms  failures {measured.failures}  "
            f"client lag max {measured.max_lag_ms:.1f} ms"
        )
    failures = result.flood.login_failures or "none"
    print(
        f"    logins {result.flood.logins_per_second:6.1f}/s (failed: {failures})   "
        f"raw Argon2 verifications {result.raw.per_second:6.1f}/s   CPU per login "
        f"{result.cpu_ms_per_login:5.1f} ms, per raw verification {result.raw.cpu_ms:5.1f} ms"
    )
    print(
        f"    CPU 0 during the flood: event loop {result.loop_share:6.1%}, other threads "
        f"(hashing) {result.hashing_share:6.1%}; without the flood the server took "
        f"{result.baseline_cpu_per_second:6.1%} (the probe alone)"
    )


def summarize(rounds: list[Round], threads: int, args: argparse.Namespace) -> list[Row]:
    def median(values: Sequence[float]) -> float:
        return statistics.median(values)

    base_p99 = [r.baseline.percentile(0.99) for r in rounds]
    flood_p99 = [r.flood.probe.percentile(0.99) for r in rounds]
    logins = [r.flood.logins_per_second for r in rounds]
    raw = [r.raw.per_second for r in rounds]
    cpu_ratio = median([r.raw.cpu_ms / r.cpu_ms_per_login for r in rounds])
    latency_ratio = median([f / b for f, b in zip(flood_p99, base_p99, strict=True)])
    throughput_ratio = median([lg / r for lg, r in zip(logins, raw, strict=True)])
    failed = sum(sum(r.flood.login_failures.values()) + r.flood.probe.failures for r in rounds)
    failed += sum(r.baseline.failures for r in rounds)
    detail = (
        f"{len(rounds)} rounds x {args.seconds} s; probe GET /api/authenticate (API key) at "
        f"{args.rate:g}/s open loop over {PROBE_CONNECTIONS} connections; flood {args.flood} "
        f"clients/users; authgate 1 worker on CPU 0, clients on CPU 1; medians of rounds"
    )
    config = hashing_config()
    raw_detail = (
        f"argon2-cffi verify, authgate's parameters, {threads} threads (the server's pool) "
        f"pinned to CPU 0 like the server, priority {config.priority} (nice {config.nice}) "
        f"like the pool's threads, {args.hash_seconds} s per round"
    )
    return [
        Row(
            "P5",
            "probe p50 without flood",
            median([r.baseline.percentile(0.5) for r in rounds]),
            "ms",
            detail=detail,
        ),
        Row(
            "P5",
            "probe p50 during flood",
            median([r.flood.probe.percentile(0.5) for r in rounds]),
            "ms",
            detail=detail,
        ),
        Row("P5", "probe p99 without flood", median(base_p99), "ms", detail=detail),
        Row("P5", "probe p99 during flood", median(flood_p99), "ms", detail=detail),
        at_most("P5", "ratio p99 flood / no flood", latency_ratio, LATENCY_TARGET, detail=detail),
        Row("P5", "logins/s during flood", median(logins), "1/s", detail=detail),
        Row("P5", "raw Argon2 verifications/s", median(raw), "1/s", detail=raw_detail),
        at_least(
            "P5",
            "ratio logins/s / raw verifications/s",
            throughput_ratio,
            THROUGHPUT_TARGET,
            detail=raw_detail,
        ),
        Row(
            "P5",
            "server CPU per login during flood",
            median([r.cpu_ms_per_login for r in rounds]),
            "ms",
            detail="server CPU time in the flood window less the probe's share, per login",
        ),
        Row(
            "P5",
            "event-loop thread's share of CPU 0 during flood",
            median([r.loop_share for r in rounds]) * 100,
            "%",
            detail="the probe's requests, the logins' work around the hash and background "
            "tasks; logins/s is about (hashing threads' share) x raw verifications/s",
        ),
        Row(
            "P5",
            "hashing threads' share of CPU 0 during flood",
            median([r.hashing_share for r in rounds]) * 100,
            "%",
            detail="the server's threads other than the event loop's (the hashing pool; the "
            "database driver's thread ~1 %)",
        ),
        Row(
            "P5",
            "server's share of CPU 0 serving the probe alone",
            median([r.baseline_cpu_per_second for r in rounds]) * 100,
            "%",
            detail="the same probe without the flood: what the probe costs",
        ),
        Row(
            "P5",
            "CPU per raw verification",
            median([r.raw.cpu_ms for r in rounds]),
            "ms",
            detail=raw_detail,
        ),
        at_least(
            "P5",
            "ratio CPU per raw verification / CPU per login",
            cpu_ratio,
            THROUGHPUT_TARGET,
            detail="the same ratio by CPU time, i.e. as if CPU 0 were ours alone: steadier "
            "than by wall clock when other processes share CPU 0",
        ),
        Row(
            "P5",
            "probe client's worst lag behind its schedule",
            max(max(r.baseline.max_lag_ms, r.flood.probe.max_lag_ms) for r in rounds),
            "ms",
            detail="over a few ms: the client on CPU 1 was starved (a loaded host); "
            "latency figures are then unreliable",
        ),
        Row("P5", "failed requests (probe + logins)", failed, "", detail=detail),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10, help="length of each probe phase")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (baseline, flood, raw)")
    parser.add_argument("--rate", type=float, default=200, help="probe requests per second")
    parser.add_argument("--flood", type=int, default=64, help="concurrent login clients")
    parser.add_argument("--hash-seconds", type=float, default=5, help="raw Argon2 per round")
    parser.add_argument("--hash-worker", action="store_true", help=argparse.SUPPRESS)
    add_output_arguments(parser)
    args = parser.parse_args()
    if args.hash_worker:
        hash_worker(args.hash_seconds)
        return
    if args.quick:
        args.seconds, args.rounds, args.hash_seconds, args.flood = 4, 1, 2, 50
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the clients stay off the server's CPU 0
    print(
        f"P5: login flood ({args.flood} clients) vs key-authenticated probe "
        f"({args.rate:g}/s); authgate 1 worker on CPU 0"
    )
    rounds, threads = measure(args)
    rows = summarize(rounds, threads, args)
    print_rows(rows)
    write_json(args.json_out, rows)


if __name__ == "__main__":
    main()
