"""How late the event loop wakes up while the hashing pool is busy, per priority.

P5 (``login_flood.py``) measures this through a whole server, its clients and the
kernel's network stack, which a shared host drowns in noise. This isolates the one
thing ``password_hashing.priority`` changes: the process is pinned to one CPU, the real
``AsyncPasswordHasher`` (default Argon2id parameters, one thread per CPU of the process,
so one) is kept busy by ``--logins`` concurrent verifications, and the event loop
sleeps ``--tick`` ms at a time and records how late each wake-up is. Without the flood
that lateness is the host's; with it, what the hashing threads add. ``nice`` and
``idle`` alternate within each round, so both see the same host. Also printed:
verifications/s the pool got done beside the ticking loop.

    .venv/bin/python bench/hashing_priority.py --rounds 5 --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import get_args

from authgate.security.passwords import PasswordHasher
from authgate.services.password_hashing import AsyncPasswordHasher, HashingConfig, Priority

PASSWORD = "hashing-priority-bench-password"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(fraction * len(ordered)) - 1)]


async def lateness(seconds: float, tick: float) -> list[float]:
    """Milliseconds by which each ``asyncio.sleep(tick)`` overslept."""
    late = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        await asyncio.sleep(tick)
        late.append((time.perf_counter() - started - tick) * 1000)
    return late


async def measure(
    priority: Priority, *, seconds: float, tick: float, logins: int
) -> dict[str, float]:
    config = HashingConfig(priority=priority, queue_size=10_000, queue_timeout=60)
    hasher = PasswordHasher(config.argon2)
    stored = hasher.hash(PASSWORD)
    pool = AsyncPasswordHasher(hasher, config=config)
    done = 0
    stop = False

    async def flood() -> None:
        nonlocal done
        while not stop:
            await pool.verify(stored, PASSWORD)
            done += 1

    try:
        quiet = await lateness(seconds, tick)
        workers = [asyncio.create_task(flood()) for _ in range(logins)]
        await asyncio.sleep(0.5)
        done, started = 0, time.perf_counter()
        busy = await lateness(seconds, tick)
        rate = done / (time.perf_counter() - started)
        stop = True
        await asyncio.gather(*workers)
    finally:
        pool.close()
    return {
        "quiet p99": percentile(quiet, 0.99),
        "flood p50": percentile(busy, 0.5),
        "flood p99": percentile(busy, 0.99),
        "flood max": max(busy),
        "verifications/s": rate,
    }


async def main(rounds: int, seconds: float, tick: float, logins: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})  # the loop and the hashing threads share one CPU
    results: dict[str, list[dict[str, float]]] = {p: [] for p in get_args(Priority)}
    for number in range(rounds):
        order = get_args(Priority) if number % 2 else tuple(reversed(get_args(Priority)))
        for priority in order:
            figures = await measure(priority, seconds=seconds, tick=tick * 1e-3, logins=logins)
            results[priority].append(figures)
            print(
                f"  round {number + 1} {priority:<5} "
                + "  ".join(f"{name} {value:7.2f}" for name, value in figures.items()),
                flush=True,
            )
    print(f"medians of {rounds} rounds (lateness of a {tick:g} ms sleep, ms):")
    for priority, runs in results.items():
        medians = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
        print(
            f"  {priority:<5} "
            + "  ".join(f"{name} {value:7.2f}" for name, value in medians.items())
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--tick", type=float, default=5, help="ms between wake-ups")
    parser.add_argument("--logins", type=int, default=16, help="concurrent verifications")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.seconds, arguments.tick, arguments.logins))
