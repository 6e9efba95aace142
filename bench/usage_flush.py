"""CPU of one flush of the API-key usage log (issue 12: records aggregated off the request).

While keys are in use, every process flushes its usage log once a second
(``AUTHGATE_USAGE_FLUSH_INTERVAL_SECONDS``): each key's per-minute rollup (an upsert),
its sample of recent raw requests (``AUTHGATE_USAGE_SAMPLE_PER_KEY`` rows, then the
older ones trimmed) and its last use. This counts ``--requests`` accepted requests of one
key (what a busy key sends in a second), flushes, and prints the CPU the flush took:
the event-loop thread's (``time.thread_time``: what the flush takes from requests) and
the whole process's (SQLite's work runs in the driver's thread). Least of ``--rounds``
flushes after one untimed, on a SQLite file, for each ``--samples`` size. A figure,
never an assertion.

    .venv/bin/python bench/usage_flush.py --rounds 5 --requests 4000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvloop

from authgate.app import create_app
from authgate.services.api_key_views import KeySpec
from authgate.services.usage import UsageConfig
from authgate.settings import Settings

DAY = timedelta(days=1)


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def flush_cpu(sample_size: int, *, rounds: int, requests: int) -> tuple[float, float]:
    """The least event-loop and process CPU (ms) of a flush of ``requests`` accepted
    requests of one key, with samples of ``sample_size``."""
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            data_dir=Path(directory),
            access_log=False,
            usage=UsageConfig(sample_per_key=sample_size, flush_interval_seconds=60),
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            services = app.state.services
            usage = services.usage
            key = await a_key(services)
            address = services.client_ips.peer("127.0.0.1")[0]
            loop_best = process_best = float("inf")
            for round_number in range(rounds + 1):
                at = services.clock()
                for _ in range(requests):
                    usage.accepted(key, "bench", 1, at, "GET", "/api/things", 200, address, "b", 1)
                loop_started, process_started = time.thread_time(), _process_cpu()
                await usage.flush()
                if round_number:  # the first flush creates the rollup: untimed
                    loop_best = min(loop_best, time.thread_time() - loop_started)
                    process_best = min(process_best, _process_cpu() - process_started)
            return loop_best * 1000, process_best * 1000


async def a_key(services: Any) -> int:
    """The primary key of a new API key of a new admin (whose last use the flush moves)."""
    await services.users.ensure_initial_admin("usage-flush-bench-password")
    admin = await services.accounts.authenticate("admin", "usage-flush-bench-password")
    spec = KeySpec(name="bench", allowed_networks=[], expires_at=services.clock() + DAY)
    created = await services.api_keys.create(admin.id, spec)
    return int(created.view.key_pk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--samples", type=int, nargs="+", default=[0, 50])
    arguments = parser.parse_args()
    for size in arguments.samples:
        loop_ms, process_ms = uvloop.run(
            flush_cpu(size, rounds=arguments.rounds, requests=arguments.requests)
        )
        print(
            f"  flush of {arguments.requests} requests of one key, sample {size:>4}:"
            f"  event loop {loop_ms:5.2f} ms, process {process_ms:5.2f} ms of CPU"
        )


if __name__ == "__main__":
    main()
