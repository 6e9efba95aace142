"""Fixtures for the guard: a real authgate app in-process, a guard whose calls reach it
through ``httpx2.ASGITransport`` (counted, and switchable to "down"), and a small
FastAPI service protected by the guard.

No ``from __future__ import annotations`` here: FastAPI must resolve the ``Annotated``
dependencies of the service's handlers, which are local names."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx2
import pytest
from fastapi import Depends, FastAPI, Request

from authgate.guard import Guard, GuardConfig, GuardPrincipal, principal_of
from authgate.settings import Settings
from tests.conftest import Harness, test_settings

AUTHGATE_URL = "http://authgate.internal"
SERVICE_URL = "http://service.internal"
# Where the guarded service's callers come from (inside the keys' allow lists).
CALLER_IP = "198.51.100.7"
CALLER_NETWORK = ["198.51.100.0/24"]  # the allow list of the keys the tests create
JWKS = "/.well-known/jwks.json"
VERIFY = "/api/auth/verify"
# What a stand-in authgate answers for carol's read key (its identity headers).
CAROL_IDENTITY = {
    "X-Auth-User": "carol",
    "X-Auth-User-Id": "3",
    "X-Auth-Method": "api_key",
    "X-Auth-Roles": "ROLE_USER",
    "X-Auth-Scopes": "read",
}


@pytest.fixture
def forward_auth_proxy() -> str:
    """authgate's ``forward_auth_proxy`` (a test parametrized with it overrides it)."""
    return "nginx"


@pytest.fixture
def forwarded_header() -> str:
    """authgate's ``forwarded_header`` (a test parametrized with it overrides it)."""
    return "x-forwarded-for"


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, forward_auth_proxy: str, forwarded_header: str
) -> Settings:
    """authgate trusts the guarded service (ASGITransport's 127.0.0.1) as a proxy, so
    the client address the guard forwards (X-Forwarded-For, Forwarded) is the one checked."""
    return test_settings(
        tmp_path / "data",
        database_url=database_url,
        trusted_proxies=["127.0.0.1"],
        forward_auth_proxy=forward_auth_proxy,
        forwarded_header=forwarded_header,
    )


class AuthgateTransport(httpx2.AsyncBaseTransport):
    """The guard's way to authgate: the real app in-process, each request recorded;
    ``down = True`` makes every request fail to connect, ``status`` fakes an answer."""

    def __init__(self, harness: Harness) -> None:
        self._inner = httpx2.ASGITransport(app=harness.app, raise_app_exceptions=False)
        self.requests: list[httpx2.Request] = []
        self.down = False
        self.status: int | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.down:
            raise httpx2.ConnectError("connection refused", request=request)
        if self.status is not None:
            return httpx2.Response(self.status, request=request)
        return await self._inner.handle_async_request(request)

    def count(self, path: str) -> int:
        return sum(1 for request in self.requests if request.url.path == path)


@pytest.fixture
def authgate(harness: Harness) -> AuthgateTransport:
    return AuthgateTransport(harness)


GuardFactory = Callable[..., Guard]


@pytest.fixture
async def make_guard(harness: Harness, authgate: AuthgateTransport) -> AsyncIterator[GuardFactory]:
    """Guards on authgate's fake clock, for token times and cache deadlines alike;
    keyword arguments override the config."""
    made: list[Guard] = []

    def now() -> float:
        return harness.clock().timestamp()

    def make(**overrides: Any) -> Guard:
        config = GuardConfig(authgate_url=AUTHGATE_URL, transport=authgate, **overrides)
        guard = Guard(config, clock=now, timer=now)
        made.append(guard)
        return guard

    yield make
    for guard in made:
        await guard.aclose()


@pytest.fixture
async def offline_guard() -> AsyncIterator[Guard]:
    """A guard for tests that must never reach authgate: any call to it fails the test."""

    def unexpected(request: httpx2.Request) -> httpx2.Response:
        raise AssertionError(f"the guard called authgate: {request.method} {request.url}")

    config = GuardConfig(authgate_url=AUTHGATE_URL, transport=httpx2.MockTransport(unexpected))
    async with Guard(config) as guard:
        yield guard


def principal_json(principal: GuardPrincipal) -> dict[str, Any]:
    return {
        "login": principal.login,
        "userId": principal.user_id,
        "roles": sorted(principal.roles),
        "method": principal.method,
        "keyId": principal.key_id,
        "scopes": None if principal.scopes is None else sorted(principal.scopes),
    }


class GuardedService:
    """A FastAPI service protected by ``guard.require``; counts the handler runs."""

    def __init__(self, guard: Guard) -> None:
        self.handled = 0
        self.app = FastAPI()
        guard.install(self.app)
        reader = Annotated[GuardPrincipal, Depends(guard.require(scopes=["read"]))]
        writer = Annotated[GuardPrincipal, Depends(guard.require(scopes=["write"]))]
        admin = Annotated[GuardPrincipal, Depends(guard.require(roles=["ROLE_ADMIN"]))]

        @self.app.get("/things")
        async def read_things(caller: reader) -> dict[str, Any]:
            self.handled += 1
            return principal_json(caller)

        @self.app.post("/things")
        async def write_things(caller: writer) -> dict[str, Any]:
            self.handled += 1
            return principal_json(caller)

        @self.app.get("/admin")
        async def admin_only(caller: admin) -> dict[str, Any]:
            self.handled += 1
            return principal_json(caller)

        @self.app.get("/state")
        async def state(request: Request) -> dict[str, Any]:
            """Behind GuardMiddleware only: the caller it stored."""
            self.handled += 1
            return {
                "state": principal_json(request.state.principal),
                "principalOf": principal_json(principal_of(request)),
            }


@asynccontextmanager
async def service_client(app: Any, client_ip: str = CALLER_IP) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=app, client=(client_ip, 50000))
    async with httpx2.AsyncClient(transport=transport, base_url=SERVICE_URL) as client:
        yield client
