"""CPU per request through the whole ASGI app, with no server and no sockets.

Drives ``app(scope, receive, send)`` directly: ``/api/ping`` (no auth),
``/api/authenticate`` with an API key and with a JWT (P1/P2's endpoints),
``/api/auth/verify`` with both (P3a's), and a login (``POST /api/authenticate``, P5's,
with Argon2 at its cheapest, 8 KiB and one pass, so that what is timed is everything
around the hash). Each case is warmed up, then timed over
``--requests`` calls with ``time.process_time``; the minimum over ``--rounds`` is
printed (the least disturbed round). What this leaves out, uvicorn and the kernel, is
the same for every case, so differences between cases are what authgate's own work
costs. A figure, never an assertion.

    .venv/bin/python bench/in_process.py --rounds 4 --requests 5000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from authgate.app import create_app
from authgate.services.api_keys import KeySpec
from authgate.settings import Settings

PASSWORD = "in-process-bench-password"
UPSTREAM = [(b"x-original-method", b"GET"), (b"x-original-uri", b"/upstream/items?page=2")]


LOGIN = json.dumps({"username": "admin", "password": PASSWORD}).encode()


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST" if (b"content-type", b"application/json") in headers else "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"bench"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }


async def measure(rounds: int, requests: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            data_dir=Path(directory), access_log=False, argon2_memory_kib=8, argon2_time_cost=1
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            services = app.state.services
            await services.users.ensure_initial_admin(PASSWORD)
            user = await services.accounts.authenticate("admin", PASSWORD)
            token = services.tokens.issue(user, remember_me=False).token.encode()
            created = await services.api_keys.create(
                user.id,
                KeySpec(
                    name="bench",
                    allowed_networks=[],
                    expires_at=services.clock() + timedelta(days=30),
                ),
            )
            key = created.plaintext.encode()
            cases = {
                "GET /api/ping (no auth)": ("/api/ping", []),
                "GET /api/authenticate, API key": (
                    "/api/authenticate",
                    [(b"authorization", b"Bearer " + key)],
                ),
                "GET /api/authenticate, JWT": (
                    "/api/authenticate",
                    [(b"authorization", b"Bearer " + token)],
                ),
                "GET /api/auth/verify, API key": (
                    "/api/auth/verify",
                    [(b"authorization", b"Bearer " + key), *UPSTREAM],
                ),
                "GET /api/auth/verify, JWT": (
                    "/api/auth/verify",
                    [(b"authorization", b"Bearer " + token), *UPSTREAM],
                ),
                "POST /api/authenticate (login)": (
                    "/api/authenticate",
                    [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(LOGIN)).encode()),
                    ],
                ),
            }
            statuses: list[int] = []

            body = b""

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            gc.freeze()  # as authgate serve does after start-up
            best: dict[str, float] = {}
            for _ in range(rounds):
                for name, (path, headers) in cases.items():
                    body = LOGIN if name.startswith("POST") else b""
                    for _ in range(200):
                        await app(_scope(path, headers), receive, send)
                    statuses.clear()
                    started = time.process_time()
                    for _ in range(requests):
                        await app(_scope(path, headers), receive, send)
                    micros = (time.process_time() - started) / requests * 1e6
                    if set(statuses) != {200}:
                        raise SystemExit(f"{name}: answered {sorted(set(statuses))}")
                    best[name] = min(best.get(name, micros), micros)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=5000)
    arguments = parser.parse_args()
    best = asyncio.run(measure(arguments.rounds, arguments.requests))
    for name, micros in best.items():
        print(f"  {name:<34} {micros:7.1f} us CPU/request")


if __name__ == "__main__":
    main()
