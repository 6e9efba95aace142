"""A root path (``FastAPI(root_path=…)``, ``uvicorn --root-path``, a ``Mount``) gives a
request two readings, the full path and the route path; the guard holds it to both:
the ``scopes`` of each, ``exempt`` only if both are, and authgate asked about both URIs.

No ``from __future__ import annotations``, as in the guard's conftest."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

from authgate.guard import Guard, GuardConfig, GuardMiddleware, principal_of
from authgate.guard._paths import path_readings, route_path, uri_readings
from authgate.security.keys import generate_key
from authgate.services.forward_auth import ForwardAuthRuleSetting
from authgate.settings import Settings
from tests.conftest import Harness, test_settings
from tests.guard.conftest import (
    AUTHGATE_URL,
    CALLER_IP,
    CALLER_NETWORK,
    CAROL_IDENTITY,
    SERVICE_URL,
    VERIFY,
    AuthgateTransport,
    GuardFactory,
)

READ_KEY = generate_key().plaintext
SCOPES = {"/g/secret/": ["admin"]}
ROOT_PATH_DEPRECATED = "ignore:The `root_path` parameter is deprecated"


class FakeAuthgate:
    """authgate's answer for a valid key with the ``read`` scope only, and a forward-auth
    rule refusing ``/blocked``; records the URIs it was asked about."""

    def __init__(self) -> None:
        self.uris: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        uri = request.headers["X-Original-URI"]
        self.uris.append(uri)
        if uri == "/blocked" or uri.startswith(("/blocked/", "/blocked?")):
            return httpx2.Response(403, json={"code": "forbidden", "message": "Access is denied"})
        return httpx2.Response(200, headers=CAROL_IDENTITY)


@pytest.fixture
def fake() -> FakeAuthgate:
    return FakeAuthgate()


@pytest.fixture
async def guard(fake: FakeAuthgate) -> AsyncIterator[Guard]:
    config = GuardConfig(
        authgate_url=AUTHGATE_URL, transport=httpx2.MockTransport(fake), key_cache_ttl=0
    )
    async with Guard(config) as guard:
        yield guard


def routes(app: FastAPI) -> FastAPI:
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/g/secret/{rest:path}")
    @app.get("/blocked/{rest:path}")
    @app.get("/open")
    async def reached(request: Request) -> dict[str, Any]:
        return {"login": principal_of(request).login}

    return app


def guarded(guard: Guard, app: FastAPI, **rules: Any) -> FastAPI:
    """``app`` with the middleware added inside it, where it sees the app's root path."""
    app.add_middleware(GuardMiddleware, guard=guard, **rules)
    return routes(app)


@asynccontextmanager
async def client_of(app: ASGIApp, *, root_path: str = "") -> AsyncIterator[httpx2.AsyncClient]:
    """``root_path``: the server's (``uvicorn --root-path``), which prefixes every path."""
    transport = httpx2.ASGITransport(app=app, client=(CALLER_IP, 50000), root_path=root_path)
    async with httpx2.AsyncClient(transport=transport, base_url=SERVICE_URL) as client:
        yield client


async def status(client: httpx2.AsyncClient, path: str, key: str | None = READ_KEY) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return (await client.get(path, headers=headers)).status_code


# -- the readings ------------------------------------------------------------------------------


def scope(path: str, root_path: str = "", raw_path: bytes | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "path": path,
        "raw_path": path.encode() if raw_path is None else raw_path,
        "root_path": root_path,
        "query_string": b"a=1",
    }


@pytest.mark.parametrize(
    ("path", "root_path", "readings"),
    [
        ("/svc/g/x", "/svc", ("/svc/g/x", "/g/x")),
        ("/g/x", "/svc", ("/g/x",)),  # outside the root path: one reading
        ("/svcx/g", "/svc", ("/svcx/g",)),  # not at a segment boundary
        ("/svc", "/svc", ("/svc", "/")),  # Starlette redirects it to /svc/
        ("/g/x", "", ("/g/x",)),
    ],
)
def test_the_readings_of_a_path_are_starlettes(
    path: str, root_path: str, readings: tuple[str, ...]
) -> None:
    assert path_readings(scope(path, root_path)) == readings
    assert route_path(scope(path, root_path)) == readings[-1]


def test_the_route_uri_is_the_raw_path_without_the_root_paths_bytes() -> None:
    raw = scope("/svc/g/a b", "/svc", raw_path=b"/svc/g/a%20b")
    assert uri_readings(raw) == ("/svc/g/a%20b?a=1", "/g/a%20b?a=1")
    assert uri_readings(scope("/g/x", "/svc")) == ("/g/x?a=1",)


def test_an_encoded_root_path_gives_the_quoted_route_path() -> None:
    """``/sv%63/blocked`` decodes to ``/svc/blocked``: the raw bytes do not start with
    the root path's, so authgate is asked about the decoded route path, quoted."""
    encoded = scope("/svc/blocked/a b", "/svc", raw_path=b"/sv%63/blocked/a%20b")
    assert uri_readings(encoded) == ("/sv%63/blocked/a%20b?a=1", "/blocked/a%20b?a=1")


# -- FastAPI(root_path=...) --------------------------------------------------------------------


@pytest.mark.filterwarnings(ROOT_PATH_DEPRECATED)
async def test_an_apps_root_path_cannot_bypass_scopes_or_authgates_rules(
    guard: Guard, fake: FakeAuthgate
) -> None:
    """``/svc/g/secret/x`` reaches the route of ``/g/secret/x`` and is held to its
    scopes; ``/svc/blocked/x`` is refused by authgate's rule for ``/blocked``."""
    app = guarded(guard, FastAPI(root_path="/svc"), scopes=SCOPES)
    async with client_of(app) as client:
        for path in ("/g/secret/x", "/svc/g/secret/x", "/blocked/x", "/svc/blocked/x"):
            assert await status(client, path) == 403, path
        assert await status(client, "/svc/open") == 200
        assert await status(client, "/open") == 200
    assert "/blocked/x" in fake.uris[fake.uris.index("/svc/blocked/x") :]


@pytest.mark.filterwarnings(ROOT_PATH_DEPRECATED)
async def test_authgate_is_asked_about_both_uris_only_when_they_differ(
    guard: Guard, fake: FakeAuthgate
) -> None:
    app = guarded(guard, FastAPI(root_path="/svc"))
    async with client_of(app) as client:
        assert await status(client, "/svc/open?x=1") == 200
        assert fake.uris == ["/svc/open?x=1", "/open?x=1"]
        fake.uris.clear()
        assert await status(client, "/open") == 200
        assert fake.uris == ["/open"]


@pytest.mark.filterwarnings(ROOT_PATH_DEPRECATED)
async def test_a_path_is_exempt_only_when_both_readings_are(guard: Guard) -> None:
    """Written for the route only, ``/svc/health`` needs a credential (fails closed)."""
    only_route = guarded(guard, FastAPI(root_path="/svc"), exempt=["/health"])
    async with client_of(only_route) as client:
        assert await status(client, "/health", key=None) == 200
        assert await status(client, "/svc/health", key=None) == 401
    both = guarded(guard, FastAPI(root_path="/svc"), exempt=["/health", "/svc/health"])
    async with client_of(both) as client:
        assert await status(client, "/svc/health", key=None) == 200


# -- uvicorn --root-path -----------------------------------------------------------------------


async def test_a_servers_root_path_keeps_rules_written_for_the_routes(
    guard: Guard, fake: FakeAuthgate
) -> None:
    """Every path carries ``/svc``; rules for ``/g/secret/`` and ``/blocked`` still hold."""
    app = guarded(guard, FastAPI(), scopes=SCOPES)
    async with client_of(app, root_path="/svc") as client:
        assert await status(client, "/svc/g/secret/x") == 403
        assert await status(client, "/svc/blocked/x") == 403
        assert await status(client, "/svc/open") == 200


async def test_rules_written_as_full_paths_keep_working(guard: Guard) -> None:
    app = guarded(guard, FastAPI(), scopes={"/svc/g/secret/": ["admin"]}, exempt=["/svc/health"])
    async with client_of(app, root_path="/svc") as client:
        assert await status(client, "/svc/g/secret/x") == 403
        assert await status(client, "/svc/open") == 200


# -- Mount -------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/g/secret/", "/sub/g/secret/"])
async def test_a_mounted_app_meets_rules_written_either_way(
    guard: Guard, fake: FakeAuthgate, prefix: str
) -> None:
    sub = guarded(guard, FastAPI(), scopes={prefix: ["admin"]})
    app = Starlette(routes=[Mount("/sub", app=sub)])
    async with client_of(app) as client:
        assert await status(client, "/sub/g/secret/x") == 403
        assert await status(client, "/sub/blocked/x") == 403
        assert await status(client, "/sub/open") == 200
    assert fake.uris[-2:] == ["/sub/open", "/open"]


# -- with the real authgate and its forward-auth rules -----------------------------------------


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """authgate refuses everyone on ``/blocked`` by a rule (and trusts the guard)."""
    return test_settings(
        tmp_path / "data",
        database_url=database_url,
        trusted_proxies=["127.0.0.1"],
        forward_auth_rules=[ForwardAuthRuleSetting(path_prefix="/blocked", allow=False)],
    )


@pytest.mark.filterwarnings(ROOT_PATH_DEPRECATED)
async def test_authgates_rules_hold_behind_a_root_path(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=CALLER_NETWORK)
    app = guarded(make_guard(), FastAPI(root_path="/svc"))
    async with client_of(app) as client:
        assert await status(client, "/svc/blocked/x", created["key"]) == 403
        assert await status(client, "/svc/open", created["key"]) == 200
    assert authgate.count(VERIFY) == 4  # each request: its full URI, then its route's
