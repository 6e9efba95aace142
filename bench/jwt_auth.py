"""P2: a JWT-authenticated endpoint versus an unauthenticated one of the same server.

Starts ``authgate serve`` (1 worker), logs in, then alternates wrk runs against
``GET /api/authenticate`` (bearer JWT; returns the login) and ``GET /api/ping``
(public). Prints requests/s, p99 and the ratio (target >= 0.90), plus the in-process
cost of a cached versus an uncached token verification.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from authgate.app import create_app
from authgate.settings import Settings
from harness import authgate_server, compare, wrk


def load_ratio(*, seconds: int, rounds: int) -> float:
    with authgate_server() as server:
        token = server.login()
        headers = {"Authorization": f"Bearer {token}"}
        wrk(f"{server.base_url}/api/authenticate", seconds=2, headers=headers)  # warm up
        result = compare(
            "GET /api/authenticate (JWT)",
            lambda: wrk(f"{server.base_url}/api/authenticate", seconds=seconds, headers=headers),
            "GET /api/ping (no auth)",
            lambda: wrk(f"{server.base_url}/api/ping", seconds=seconds),
            rounds=rounds,
        )
    if result.first.non_2xx or result.second.non_2xx:
        raise RuntimeError("some requests failed; figures are meaningless")
    print(f"  ratio JWT / no auth (req/s)        {result.ratio:9.3f}   (target >= 0.90)")
    return result.ratio


def verification_cost(iterations: int = 20_000) -> None:
    async def measure() -> None:
        with tempfile.TemporaryDirectory() as directory:
            settings = Settings(
                data_dir=Path(directory), access_log=False, argon2_memory_kib=8, argon2_time_cost=1
            )
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                services = app.state.services
                await services.users.ensure_initial_admin("in-process-bench-pw")
                user = await services.accounts.authenticate("admin", "in-process-bench-pw")
                token = services.tokens.issue(user, remember_me=False).token
                await services.tokens.authenticate(token)
                started = time.perf_counter()
                for _ in range(iterations):
                    await services.tokens.authenticate(token)
                cached = (time.perf_counter() - started) / iterations * 1e6
                now = services.clock()
                started = time.perf_counter()
                for _ in range(iterations // 10):
                    services.tokens.codec.verify(token, now=now)
                full = (time.perf_counter() - started) / (iterations // 10) * 1e6
        print(f"  cached token authentication        {cached:9.2f} us")
        print(f"  full ES256 verification            {full:9.2f} us   ({full / cached:.0f}x)")

    asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds per endpoint")
    args = parser.parse_args()
    print("P2 JWT-authenticated vs unauthenticated (1 worker, wrk -t1 -c32)")
    load_ratio(seconds=args.seconds, rounds=args.rounds)
    print("In-process token verification")
    verification_cost()


if __name__ == "__main__":
    main()
