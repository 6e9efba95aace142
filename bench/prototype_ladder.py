"""P3a and P1 as a ladder of prototypes: how far each layer of authgate's work takes
the authenticated request from a bare Starlette "hello" (P3a) or from ``/api/ping`` (P1).

Every step is an ASGI app driven in-process through the HTTP protocol ``authgate
serve`` runs (``BoundedHeadProtocol`` on a fake transport, as ``in_process.py
--through-protocol``: uvicorn's Python work, no kernel, no load generator), sent the
same request bytes as P3a's (``GET /api/auth/verify`` with an API key as a Bearer token
and nginx's ``X-Original-Method``/``X-Original-URI``), and timed with
``time.process_time``; the minimum over ``--rounds`` is printed, with hello ÷ step (the
ratio P3a holds to 0.90). The steps, each adding one layer:

1. *raw key check*: scan the headers for ``Authorization``, HMAC-SHA256 and SHA-256 of
   the key, one dict lookup, answer 200 with four encoded identity headers (issue 12's
   own example, which it measured at 1.3x the hello);
2. *gate.check*: authgate's :class:`~authgate.services.gate.Gate` (credentials
   classified, client address, cached key verification: allow list, expiry, owner
   state; the metrics' histogram), answered with the fast path's cached headers;
3. *+ upstream request and rules*: the forward-auth decision (the proxy's header pair
   read and checked for disagreement, method overrides, canonical path, the rules'
   requirement), as ``forward_auth.decide``;
4. *full fast path*: ``ForwardAuthFastPath`` as served (the audit trail's current
   request, ``RateLimit`` headers when a limit applies, the access line when enabled,
   and the records: usage rollup, key activity, counters).

Then P1's pair through the same protocol: ``/api/ping`` and ``GET /api/authenticate``
with the key and with a JWT (FastAPI routing and middleware on both sides).

    .venv/bin/python bench/prototype_ladder.py --rounds 4 --requests 4000

A figure, never an assertion; run it on a quiet host (it measures CPU time, but other
work on the same core still disturbs the caches).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from authgate.api import forward_auth
from authgate.api.access import client_address, header_credentials
from authgate.api.encoded_headers import EncodedHeaders
from authgate.app import GC_YOUNG_THRESHOLD
from authgate.security.principal import Principal
from authgate.services.gate import VERDICT_SCOPE_KEY, Verdict
from hello_app import app as hello_app
from in_process import UPSTREAM, _head, _protocol_call, admin_credentials, best_times

Call = Callable[[], Awaitable[None]]


def _allow_all(_principal: Principal, _method: str) -> None:
    return None


def raw_key_check(key: bytes) -> Any:
    """Step 1: the least an API-key check can do in Python."""
    pepper = secrets.token_bytes(32)
    secret = key[len(b"agk_") :]
    known = {hashlib.sha256(hmac.new(pepper, secret, "sha256").digest()).digest(): "admin"}
    answer = EncodedHeaders(
        [
            (b"x-auth-user", b"admin"),
            (b"x-auth-user-id", b"1"),
            (b"x-auth-roles", b"ROLE_ADMIN"),
            (b"x-auth-method", b"api_key"),
            (b"content-length", b"0"),
        ]
    )

    async def app(scope: Any, _receive: Any, send: Any) -> None:
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
        presented = authorization[len(b"Bearer agk_") :]
        digest = hashlib.sha256(hmac.new(pepper, presented, "sha256").digest()).digest()
        status = 200 if known.get(digest) is not None else 401
        await send({"type": "http.response.start", "status": status, "headers": answer})
        await send({"type": "http.response.body", "body": b""})

    return app


def gate_only(services: Any, fast_path: forward_auth.ForwardAuthFastPath) -> Any:
    """Step 2: the gate's verdict, nothing about the upstream request, no records."""

    async def app(scope: Any, _receive: Any, send: Any) -> None:
        verdict = scope[VERDICT_SCOPE_KEY] = Verdict()
        await services.gate.check(
            verdict,
            header_credentials(scope),
            client_address(scope, services),
            "GET",
            _allow_all,
        )
        await _answer(verdict, fast_path, send)

    return app


def gate_and_rules(services: Any, fast_path: forward_auth.ForwardAuthFastPath) -> Any:
    """Step 3: forward-auth's decision (gate, upstream request, rules), no records."""

    async def app(scope: Any, _receive: Any, send: Any) -> None:
        verdict = scope[VERDICT_SCOPE_KEY] = Verdict()
        await forward_auth.decide(scope, services)
        await _answer(verdict, fast_path, send)

    return app


async def _answer(verdict: Verdict, fast_path: forward_auth.ForwardAuthFastPath, send: Any) -> None:
    principal = verdict.principal
    if principal is None or verdict.error is not None:
        await send({"type": "http.response.start", "status": 401, "headers": []})
    else:
        headers = fast_path._allowed_headers(principal)  # the fast path's own cache
        await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def measure(rounds: int, requests: int) -> dict[str, float]:
    async with admin_credentials() as (app, token, key):
        services = app.state.services
        fast_path = app.fast_path
        assert fast_path is not None
        bearer = (b"authorization", b"Bearer " + key)
        verify = _head(forward_auth.VERIFY_PATH, [bearer, *UPSTREAM])
        statuses: list[int] = []
        steps: dict[str, Call] = {
            "P3a  bare Starlette hello": _protocol_call(hello_app, _head("/", []), statuses),
            "P3a  1 raw key check": _protocol_call(raw_key_check(key), verify, statuses),
            "P3a  2 gate.check": _protocol_call(gate_only(services, fast_path), verify, statuses),
            "P3a  3 + upstream request, rules": _protocol_call(
                gate_and_rules(services, fast_path), verify, statuses
            ),
            "P3a  4 full fast path (as served)": _protocol_call(app, verify, statuses),
            "P1   /api/ping": _protocol_call(app, _head("/api/ping", []), statuses),
            "P1   /api/authenticate, API key": _protocol_call(
                app, _head("/api/authenticate", [bearer]), statuses
            ),
            "P1   /api/authenticate, JWT": _protocol_call(
                app,
                _head("/api/authenticate", [(b"authorization", b"Bearer " + token)]),
                statuses,
            ),
        }
        gc.freeze()  # as authgate serve does after start-up
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        return await best_times(steps, statuses, rounds=rounds, requests=requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=4000)
    arguments = parser.parse_args()
    best = uvloop.run(measure(arguments.rounds, arguments.requests))
    hello = best["P3a  bare Starlette hello"]
    ping = best["P1   /api/ping"]
    for name, micros in best.items():
        base, label = (hello, "hello") if name.startswith("P3a") else (ping, "ping")
        print(f"  {name:<38} {micros:7.1f} us CPU/request   {label} / this {base / micros:5.2f}")


if __name__ == "__main__":
    main()
