"""P5's ceiling on this host: what share of the raw Argon2 rate is left to hashing when
something serves ``login_flood.py``'s probe on the same CPU.

``login_flood.py`` compares logins/s during a flood with raw verifications/s, both on
CPU 0, while its open-loop probe (200 key-authenticated requests a second) is served on
CPU 0 too. Whatever serving the probe costs is CPU the hashes do not get. This measures
that ceiling without authgate's logins at all: the raw hash worker of ``login_flood.py``
(the pool's thread count, the pool's priority) runs pinned to CPU 0

* alone (the raw rate),
* beside the bare Starlette hello of ``hello_app.py`` serving the probe (the cheapest
  Python server on the same uvicorn: the smallest prototype of "the event loop does
  nothing but answer the probe"),
* beside ``authgate serve`` answering the probe's key-authenticated
  ``GET /api/authenticate`` (what the probe itself costs authgate, no login),

and prints each rate with its ratio to the raw one. P5's target (logins/s ≥ 0.85 of the
raw rate) can be met on a host only where these ratios are above it. A figure, never an
assertion.

    .venv/bin/python bench/login_ceiling.py --seconds 5 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from auth_overhead import create_api_key
from login_flood import get_request, probe, raw_verifications, run_async
from stacks import hello_server

from harness import authgate_server, cpu_seconds


async def _hashing_beside_probe(
    port: int, request: bytes, *, rate: float, seconds: float
) -> tuple[float, float]:
    """Raw verifications/s while the probe runs for as long; and the probe's p99 (ms)."""
    loop = asyncio.get_running_loop()
    hashing = loop.run_in_executor(None, raw_verifications, seconds)
    probed = await probe(port, request, rate=rate, seconds=seconds)
    raw = await hashing
    return raw.per_second, probed.percentile(0.99)


def measure(seconds: float, rounds: int, rate: float) -> None:
    with authgate_server() as server, hello_server(cpu=0) as hello:
        token = server.login()
        key = create_api_key(server, token)
        authgate_port = int(server.base_url.rsplit(":", 1)[1])
        servers = {
            "Starlette hello": (hello.port, get_request(hello.port, "/", {}), hello.pid),
            "authgate, key-authenticated": (
                authgate_port,
                get_request(authgate_port, "/api/authenticate", {"Authorization": f"Bearer {key}"}),
                server.pid,
            ),
        }
        for port, request, _ in servers.values():
            run_async(probe(port, request, rate=rate, seconds=1))  # warm up
        ratios: dict[str, list[float]] = {name: [] for name in servers}
        for number in range(rounds):
            print(f"  round {number + 1}/{rounds}")
            for name, (port, request, pid) in servers.items():
                # The rate alone right before each rate beside a server: a host whose
                # speed drifts (a shared VM) moves both alike.
                alone = raw_verifications(seconds).per_second
                cpu_before, started = cpu_seconds(pid), time.perf_counter()
                beside, p99 = run_async(
                    _hashing_beside_probe(port, request, rate=rate, seconds=seconds)
                )
                share = (cpu_seconds(pid) - cpu_before) / (time.perf_counter() - started)
                ratios[name].append(beside / alone)
                print(
                    f"    alone {alone:6.1f}/s, beside {name:<28} {beside:6.1f}/s:"
                    f" ratio {beside / alone:5.3f}  (the server took {share:5.1%} of a CPU;"
                    f" probe p99 {p99:6.2f} ms)"
                )
        print("Summary (median of rounds)")
        for name, values in ratios.items():
            print(f"  raw verifications beside {name:<28} / alone: {statistics.median(values):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200, help="probe requests per second")
    arguments = parser.parse_args()
    measure(arguments.seconds, arguments.rounds, arguments.rate)


if __name__ == "__main__":
    main()
