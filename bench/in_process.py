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

``--through-protocol`` sends the same requests as bytes through the HTTP protocol
``authgate serve`` runs (uvicorn's httptools protocol as ``BoundedHeadProtocol``, on a
fake transport: uvicorn's Python work without the kernel's), and adds P3a's baseline,
the bare Starlette hello of bench/hello_app.py, through the same protocol: the
server-side work per request that P3a and P1 compare, without sockets or load
generator.

    .venv/bin/python bench/in_process.py --rounds 4 --requests 5000
    .venv/bin/python bench/in_process.py --rounds 4 --requests 5000 --through-protocol
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.server import ServerState

from authgate.app import GC_YOUNG_THRESHOLD, create_app
from authgate.cli.http_protocol import bounded_head_protocol
from authgate.services.api_key_views import KeySpec
from authgate.settings import Settings
from head_limits import Transport
from hello_app import app as hello_app

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


class _Recorder(Transport):
    """Keeps the status of each response head written."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__()
        self.statuses = statuses

    def write(self, data: Any) -> None:
        if data[:5] == b"HTTP/":
            self.statuses.append(int(data[9:12]))


def _through_protocol(app: Any, statuses: list[int]) -> Any:
    """A ``BoundedHeadProtocol`` connection to ``app``, configured as ``serve`` does; a
    coroutine function sending it one request (bytes) and waiting for the response."""
    config = Config(app=app, log_level="warning", access_log=False, proxy_headers=False)
    config.server_header = False
    config.load()
    state = ServerState()
    make = bounded_head_protocol(max_head_bytes=32 * 1024, head_timeout=10.0)
    protocol = make(config=config, server_state=state, app_state={})
    protocol.connection_made(_Recorder(statuses))

    async def request(head: bytes) -> None:
        protocol.data_received(head)
        await asyncio.gather(*state.tasks)

    return request


def _head(path: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request as wrk sends it (Host, then the -H headers); the login as a POST with
    its JSON body."""
    is_login = (b"content-type", b"application/json") in headers
    method = b"POST " if is_login else b"GET "
    lines = [method + path.encode() + b" HTTP/1.1", b"Host: 127.0.0.1:8080"]
    lines += [name.title() + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + (LOGIN if is_login else b"")


@asynccontextmanager
async def admin_credentials(**settings: Any) -> AsyncIterator[tuple[Any, bytes, bytes]]:
    """An app (lifespan running, in a temporary data dir, no access log, ``settings``
    besides) with an admin: the app, a JWT of the admin's and an API key of theirs."""
    with tempfile.TemporaryDirectory() as directory:
        app = create_app(Settings(data_dir=Path(directory), access_log=False, **settings))
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
            yield app, token, created.plaintext.encode()


async def measure(
    rounds: int, requests: int, through_protocol: bool = False, only: str = ""
) -> dict[str, float]:
    credentials = admin_credentials(argon2_memory_kib=8, argon2_time_cost=1)
    async with credentials as (app, token, key):
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

        calls: dict[str, Any] = {}
        cases = {name: case for name, case in cases.items() if only in name}
        for name, (path, headers) in cases.items():
            if through_protocol:
                calls[name] = _protocol_call(app, _head(path, headers), statuses)
            else:
                calls[name] = _app_call(app, path, headers, receive, send)
        if through_protocol and only in "GET / (bare Starlette hello)":
            calls["GET / (bare Starlette hello)"] = _protocol_call(
                hello_app, _head("/", []), statuses
            )
        gc.freeze()  # as authgate serve does after start-up
        if through_protocol:  # and its young-generation threshold
            gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

        def body_for(name: str) -> None:
            nonlocal body
            body = LOGIN if name.startswith("POST") else b""

        return await best_times(calls, statuses, rounds=rounds, requests=requests, before=body_for)


async def best_times(
    calls: dict[str, Any],
    statuses: list[int],
    *,
    rounds: int,
    requests: int,
    before: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """The least CPU µs a request of each call took over ``rounds`` rounds (each
    ``requests`` requests after 200 untimed ones; ``before(name)`` is called first); every
    answer (appended to ``statuses``) must be 200."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, call in calls.items():
            if before is not None:
                before(name)
            for _ in range(200):
                await call()
            statuses.clear()
            started = time.process_time()
            for _ in range(requests):
                await call()
            micros = (time.process_time() - started) / requests * 1e6
            if set(statuses) != {200}:
                raise SystemExit(f"{name}: answered {sorted(set(statuses))}")
            best[name] = min(best.get(name, micros), micros)
    return best


def _protocol_call(app: Any, head: bytes, statuses: list[int]) -> Any:
    request = _through_protocol(app, statuses)

    async def call() -> None:
        await request(head)

    return call


def _app_call(app: Any, path: str, headers: Any, receive: Any, send: Any) -> Any:
    async def call() -> None:
        await app(_scope(path, headers), receive, send)

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument(
        "--through-protocol",
        action="store_true",
        help="send requests as bytes through authgate's HTTP protocol (and add the hello)",
    )
    parser.add_argument(
        "--only", default="", help="time only the cases whose name holds this, e.g. login"
    )
    arguments = parser.parse_args()
    run = measure(arguments.rounds, arguments.requests, arguments.through_protocol, arguments.only)
    # The server's loop (uvicorn picks uvloop when installed) for the protocol's timers.
    best = uvloop.run(run) if arguments.through_protocol else asyncio.run(run)
    for name, micros in best.items():
        print(f"  {name:<34} {micros:7.1f} us CPU/request")


if __name__ == "__main__":
    main()
