"""``timeout`` bounds each whole call to authgate, not each read: an answer that trickles
in a byte at a time (a slow or hostile authgate, or a load balancer in between) cannot
hold a request past it, and is answered 503 like any other failure to answer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Request

from authgate.guard import Guard, GuardConfig, GuardMiddleware
from authgate.security.keys import generate_key
from tests.conftest import bearer
from tests.guard.conftest import AUTHGATE_URL, CAROL_IDENTITY, service_client

TIMEOUT = 0.3
TRICKLE_FOR = 3.0  # seconds the answer takes to arrive in full


class Trickle(httpx2.AsyncByteStream):
    """A body sent one byte every 0.05 s: httpx's per-read timeout never fires."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        deadline = time.monotonic() + TRICKLE_FOR
        while time.monotonic() < deadline:
            await anyio.sleep(0.05)
            yield b" "


class TricklingAuthgate(httpx2.AsyncBaseTransport):
    """Answers at once with a valid identity (and an empty JWK Set), then trickles."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers=CAROL_IDENTITY, stream=Trickle())


@pytest.fixture
async def guard() -> AsyncIterator[Guard]:
    config = GuardConfig(authgate_url=AUTHGATE_URL, transport=TricklingAuthgate(), timeout=TIMEOUT)
    async with Guard(config) as guard:
        yield guard


def guarded(guard: Guard) -> FastAPI:
    app = FastAPI()

    @app.get("/things")
    async def things(request: Request) -> dict[str, Any]:
        return {"reached": True}

    app.add_middleware(GuardMiddleware, guard=guard)
    return app


async def timed_get(app: FastAPI, headers: dict[str, str]) -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    async with service_client(app) as client:
        response = await client.get("/things", headers=headers)
    return response, time.monotonic() - started


async def test_a_trickling_verification_is_cut_at_the_timeout(guard: Guard) -> None:
    """Before, the request was held for the whole trickle and then let in."""
    key = generate_key().plaintext
    response, elapsed = await timed_get(guarded(guard), {"Utm-Api-Key": key})
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "authgate_unavailable"
    assert elapsed < TRICKLE_FOR / 2


async def test_a_trickling_jwks_fetch_is_cut_at_the_timeout(guard: Guard) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode({"sub": "carol"}, private, algorithm="ES256", headers={"kid": "k1"})
    response, elapsed = await timed_get(guarded(guard), bearer(token))
    assert response.status_code == 503, response.text
    assert elapsed < TRICKLE_FOR / 2
