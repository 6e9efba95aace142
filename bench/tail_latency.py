"""P8: tail latency of key-authenticated requests at 32 connections.

Starts ``authgate serve`` (1 worker, pinned to CPU 0, default settings), creates an API
key and runs wrk (-t1 -c32, pinned to CPU 1, ``--latency`` and bench/percentiles.lua)
against ``GET /api/authenticate`` with the key in ``Authorization: Bearer``, ``--runs``
times for ``--seconds`` each. Every run reports p50, p90, p99, p99.9 and the maximum;
the figures are the medians over runs, and p99/p50 (target <= 4) is the median of the
per-run ratios.

For context, each run is paired with one against ``GET /api/ping`` (no authentication)
on the same server, alternating which goes first: a tail that ping shares is the
host's or the server stack's, one that only the key path has is authgate's own work.

wrk is closed-loop: each of the 32 connections sends its next request when the last
one is answered, so these are the latencies 32 busy clients see, and slow moments are
under-sampled (bench/login_flood.py's open-loop probe measures the tail at a fixed rate).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from auth_overhead import create_api_key
from report import Row, add_output_arguments, at_most, print_rows, write_json
from stacks import pinned

from harness import authgate_server, cpu_seconds, require_wrk

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "percentiles.lua"
TARGET = 4.0
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
KEY_LABEL = "API key (Bearer)"
PING_LABEL = "/api/ping (no auth)"


@dataclass(frozen=True)
class TailRun:
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    requests: int
    cpu_us_per_request: float


def wrk_tail(
    url: str, *, seconds: int, connections: int, headers: dict[str, str], server_pid: int
) -> TailRun:
    """One bounded wrk run on loopback with bench/percentiles.lua; refuses a run with
    errors (non-2xx answers, timeouts, broken connections)."""
    command = [
        require_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(SCRIPT),
    ]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    before = cpu_seconds(server_pid)
    output = subprocess.run(
        pinned([*command, url], cpu=1),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    cpu = cpu_seconds(server_pid) - before
    rps = _RPS.search(output)
    # bench/percentiles.lua's lines: "percentile 99.9 1234", "max 5678", "requests 9",
    # "errors 0 0 0 0 0" (connect, read, write, non-2xx, timeout).
    percentiles: dict[str, int] = {}
    fields: dict[str, list[int]] = {}
    try:
        for line in output.splitlines():
            words = line.split()
            if len(words) == 3 and words[0] == "percentile":
                percentiles[words[1]] = int(words[2])
            elif words and words[0] in {"max", "requests", "errors"}:
                fields[words[0]] = [int(word) for word in words[1:]]
        micros = {p: percentiles[p] for p in ("50", "90", "99", "99.9")}
        (maximum,), (requests,), errors = fields["max"], fields["requests"], fields["errors"]
    except (KeyError, ValueError) as error:
        raise RuntimeError(f"cannot parse wrk output:\n{output}") from error
    if rps is None or requests == 0:
        raise RuntimeError(f"cannot parse wrk output:\n{output}")
    if any(errors):
        connect, read, write, status, timeout = errors
        raise RuntimeError(
            f"wrk saw errors (connect {connect}, read {read}, write {write}, non-2xx {status},"
            f" timeout {timeout}); figures are meaningless"
        )
    return TailRun(
        requests_per_second=float(rps.group(1)),
        p50_ms=micros["50"] / 1000,
        p90_ms=micros["90"] / 1000,
        p99_ms=micros["99"] / 1000,
        p999_ms=micros["99.9"] / 1000,
        max_ms=maximum / 1000,
        requests=requests,
        cpu_us_per_request=cpu / requests * 1e6,
    )


def _print_run(label: str, number: int, run: TailRun) -> None:
    print(
        f"  {label:<24} run {number}: {run.requests_per_second:6.0f} req/s  "
        f"p50 {run.p50_ms:6.2f}  p90 {run.p90_ms:6.2f}  p99 {run.p99_ms:7.2f}  "
        f"p99.9 {run.p999_ms:7.2f}  max {run.max_ms:7.2f} ms  p99/p50 "
        f"{run.p99_ms / run.p50_ms:5.2f}  {run.cpu_us_per_request:4.0f} us CPU/req"
    )


def measure(
    *, runs: int, seconds: int, connections: int, warmup: int, log_successes: bool
) -> dict[str, list[TailRun]]:
    # As in bench/auth_overhead.py: default settings (rollups, security events only), or
    # with --per-request-log a usage row and an audit record per accepted request.
    env = (
        {"AUTHGATE_USAGE_LOG_SUCCESSES": "true", "AUTHGATE_AUDIT_API_KEY_SUCCESSES": "true"}
        if log_successes
        else {}
    )
    with authgate_server(extra_env=env) as server:
        api_key = create_api_key(server, server.login())
        targets = {
            KEY_LABEL: (
                f"{server.base_url}/api/authenticate",
                {"Authorization": f"Bearer {api_key}"},
            ),
            PING_LABEL: (f"{server.base_url}/api/ping", {}),
        }

        def load(label: str, length: int) -> TailRun:
            url, headers = targets[label]
            return wrk_tail(
                url,
                seconds=length,
                connections=connections,
                headers=headers,
                server_pid=server.pid,
            )

        for label in targets:  # warm up: caches, the key's first use, the usage-log writer
            load(label, warmup)
        print(
            f"P8: latency at {connections} connections (authgate 1 worker on CPU 0; "
            f"wrk -t1 -c{connections} on CPU 1; {runs} runs of {seconds} s each)"
        )
        labels = list(targets)
        results: dict[str, list[TailRun]] = {label: [] for label in labels}
        for number in range(runs):
            for label in labels[number % 2 :] + labels[: number % 2]:
                run = load(label, seconds)
                results[label].append(run)
                _print_run(label, number + 1, run)
    return results


def _series(runs: list[TailRun], value: Callable[[TailRun], float]) -> str:
    return " / ".join(f"{value(run):.2f}" for run in runs)


def rows(
    results: dict[str, list[TailRun]], *, seconds: int, connections: int, log_successes: bool
) -> list[Row]:
    recorded = "per request (--per-request-log)" if log_successes else "rollups (default)"
    table: list[Row] = []
    for label, runs in results.items():
        detail = (
            f"median of {len(runs)} runs of {seconds} s, wrk -t1 -c{connections} on CPU 1, "
            f"authgate 1 worker on CPU 0; usage log and audit of accepted key requests "
            f"{recorded}; "
        )
        figures: list[tuple[str, Callable[[TailRun], float]]] = [
            ("p50", lambda run: run.p50_ms),
            ("p99", lambda run: run.p99_ms),
            ("p99.9", lambda run: run.p999_ms),
        ]
        for name, value in figures:
            table.append(
                Row(
                    "P8",
                    f"{label} at {connections} connections, {name}",
                    statistics.median(value(run) for run in runs),
                    "ms",
                    detail=detail + f"runs: {_series(runs, value)} ms",
                )
            )
        ratios = [run.p99_ms / run.p50_ms for run in runs]
        ratio = statistics.median(ratios)
        measure = f"{label} at {connections} connections, p99 / p50"
        ratio_detail = detail + f"per run: {' / '.join(f'{r:.2f}' for r in ratios)}"
        if label == KEY_LABEL:
            table.append(at_most("P8", measure, ratio, TARGET, unit="x", detail=ratio_detail))
        else:
            table.append(Row("P8", measure, ratio, "x", detail=ratio_detail))
        rps = [run.requests_per_second for run in runs]
        table.append(
            Row(
                "P8",
                f"{label} at {connections} connections, req/s",
                statistics.median(rps),
                "req/s",
                detail=detail + f"runs: {' / '.join(f'{r:.0f}' for r in rps)}",
            )
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="wrk runs of each load")
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument(
        "--per-request-log",
        action="store_true",
        help="run with AUTHGATE_USAGE_LOG_SUCCESSES=true and AUTHGATE_AUDIT_API_KEY_SUCCESSES"
        "=true (a usage row and an audit record per accepted key request)",
    )
    add_output_arguments(parser)
    args = parser.parse_args()
    require_wrk()
    runs, seconds, warmup = (2, 2, 1) if args.quick else (args.runs, args.seconds, 2)
    log_successes = args.per_request_log
    results = measure(
        runs=runs,
        seconds=seconds,
        connections=args.connections,
        warmup=warmup,
        log_successes=log_successes,
    )
    table = rows(
        results, seconds=seconds, connections=args.connections, log_successes=log_successes
    )
    print_rows(table)
    write_json(args.json_out, table)


if __name__ == "__main__":
    main()
