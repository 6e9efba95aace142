"""P1 and P2: an authenticated endpoint versus an unauthenticated one of the same server.

Starts ``authgate serve`` (1 worker), logs in, creates an API key, then alternates wrk
runs against ``GET /api/authenticate`` (returns the caller's login) with the API key
(P1) or the JWT (P2), and ``GET /api/ping`` (public). Prints requests/s, p99 and the
ratios (target >= 0.90 each), then the in-process cost of one cached verification of
each credential against the uncached one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2

from authgate.app import create_app
from authgate.services.api_key_views import KeySpec
from authgate.settings import Settings

from harness import Comparison, LoadResult, Server, authgate_server, compare, wrk

TARGET = 0.90


def create_api_key(server: Server, token: str) -> str:
    response = httpx2.post(
        f"{server.base_url}/api/api-keys",
        json={
            "name": "benchmark",
            "allowedIp": ["127.0.0.1", "::1", "10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"],
            "expiresAt": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    response.raise_for_status()
    key: str = response.json()["key"]
    return key


def load_ratios(*, seconds: int, rounds: int, log_successes: bool) -> dict[str, Comparison]:
    # By default accepted key requests are counted (usage rollups) and audited only as
    # security events; --per-request-log records each one as a usage row and an audit
    # record as well (the behaviour before rollups). Refusals are always recorded.
    env = (
        {"AUTHGATE_USAGE_LOG_SUCCESSES": "true", "AUTHGATE_AUDIT_API_KEY_SUCCESSES": "true"}
        if log_successes
        else {}
    )
    with authgate_server(extra_env=env) as server:
        token = server.login()
        api_key = create_api_key(server, token)
        whoami = f"{server.base_url}/api/authenticate"
        credentials = {
            "P1 API key (Bearer)": {"Authorization": f"Bearer {api_key}"},
            "P2 JWT (Bearer)": {"Authorization": f"Bearer {token}"},
        }
        for headers in credentials.values():
            wrk(whoami, seconds=2, headers=headers)  # warm up

        def load(url: str, headers: dict[str, str] | None = None) -> Callable[[], LoadResult]:
            return lambda: wrk(url, seconds=seconds, headers=headers, server_pid=server.pid)

        results = compare(
            ("GET /api/ping (no auth)", load(f"{server.base_url}/api/ping")),
            {label: load(whoami, headers) for label, headers in credentials.items()},
            rounds=rounds,
        )
    for label, result in results.items():
        if result.first.non_2xx or result.second.non_2xx:
            raise RuntimeError("some requests failed; figures are meaningless")
        cpu = f", by CPU per request {result.cpu_ratio:.3f}" if result.cpu_ratio else ""
        print(f"  {label}: ratio to no auth {result.ratio:.3f}{cpu}   (target >= {TARGET})")
    return results


def verification_costs(iterations: int = 50_000) -> dict[str, float]:
    async def measure() -> dict[str, float]:
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
                created = await services.api_keys.create(
                    user.id,
                    KeySpec(
                        name="bench",
                        allowed_networks=["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"],
                        expires_at=services.clock() + timedelta(days=30),
                    ),
                )
                client = services.client_ips.resolve("10.1.2.3")
                figures = {}
                for name, call in (
                    (
                        "cached API key authentication",
                        lambda: services.key_auth.authenticate(created.plaintext, client),
                    ),
                    ("cached token authentication", lambda: services.tokens.authenticate(token)),
                ):
                    await call()
                    started = time.perf_counter()
                    for _ in range(iterations):
                        await call()
                    figures[name] = (time.perf_counter() - started) / iterations * 1e6
                now = services.clock()
                started = time.perf_counter()
                for _ in range(iterations // 20):
                    services.tokens.codec.verify(token, now=now)
                full = (time.perf_counter() - started) / (iterations // 20) * 1e6
        for name, micros in figures.items():
            print(f"  {name:<34} {micros:9.2f} us")
        print(f"  full ES256 verification (uncached)  {full:9.2f} us")
        return {**figures, "full ES256 verification (uncached)": full}

    figures: dict[str, float] = {}

    async def measure_into() -> None:
        figures.update(await measure())

    asyncio.run(measure_into())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (each runs every load)")
    parser.add_argument(
        "--per-request-log",
        action="store_true",
        help="run with AUTHGATE_USAGE_LOG_SUCCESSES=true and AUTHGATE_AUDIT_API_KEY_SUCCESSES"
        "=true (a usage row and an audit record per accepted key request)",
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s (a smoke run)")
    parser.add_argument("--json-out", type=Path, help="write the figures as JSON rows here")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 2, 2
    print("Authentication overhead (1 worker, wrk -t1 -c32)")
    results = load_ratios(
        seconds=args.seconds, rounds=args.rounds, log_successes=args.per_request_log
    )
    print("In-process verification (per call)")
    costs = verification_costs(5_000 if args.quick else 50_000)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows(results, costs, args), indent=2))


def rows(
    results: dict[str, Comparison], costs: dict[str, float], args: argparse.Namespace
) -> list[dict[str, object]]:
    usage_log = (
        "a usage row and an audit record per accepted key request (--per-request-log)"
        if args.per_request_log
        else "accepted key requests counted in rollups, audited as security events (default)"
    )
    table: list[dict[str, object]] = []
    for label, result in results.items():
        figure_id = label.split()[0]
        table.append(
            {
                "id": figure_id,
                "measure": f"{label[3:]} / no auth, req/s",
                "value": round(result.ratio, 3),
                "unit": "x",
                "target": f">= {TARGET}",
                "met": result.ratio >= TARGET,
                "detail": f"{result.first.requests_per_second:.0f} vs "
                f"{result.second.requests_per_second:.0f} req/s, p99 {result.first.p99_ms:.1f} "
                f"vs {result.second.p99_ms:.1f} ms; {usage_log}; median of {args.rounds} rounds",
            }
        )
    for name, micros in costs.items():
        table.append(
            {
                "id": "P1/P2",
                "measure": f"{name}, in-process",
                "value": round(micros, 2),
                "unit": "us",
                "target": None,
                "met": None,
                "detail": "per call",
            }
        )
    return table


if __name__ == "__main__":
    main()
