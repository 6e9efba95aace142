"""GuardMiddleware: every request authenticated, exempt paths, scopes per prefix, websockets."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request
from starlette.types import Message, Receive, Scope, Send

from authgate.guard import Guard, GuardConfigError, GuardMiddleware, principal_of
from tests.conftest import Harness, bearer
from tests.guard.conftest import (
    CALLER_NETWORK,
    VERIFY,
    AuthgateTransport,
    GuardedService,
    GuardFactory,
    principal_json,
    service_client,
)

EXEMPT = ["/health", "/public/"]
SCOPES = {"/reports/": ["read"], "/reports/audit/": ["read", "audit:read"]}


def protected(guard: Guard) -> GuardedService:
    """The test service behind GuardMiddleware, with a few more routes."""
    service = GuardedService(guard)
    app = service.app

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/public")
    @app.get("/public/{rest:path}")
    async def public(request: Request) -> dict[str, Any]:
        return {"public": True, "principal": hasattr(request.state, "principal")}

    @app.get("/reports/daily")
    @app.get("/reports/audit/log")
    async def reports(request: Request) -> dict[str, Any]:
        return principal_json(principal_of(request))

    app.add_middleware(GuardMiddleware, guard=guard, exempt=EXEMPT, scopes=SCOPES)
    return service


async def get(service: GuardedService, path: str, headers: dict[str, str] | None = None) -> Any:
    async with service_client(service.app) as client:
        return await client.get(path, headers=headers)


async def test_every_path_needs_a_credential_except_the_exempt_ones(
    offline_guard: Guard,
) -> None:
    """No credential: 401 with WWW-Authenticate and authgate's error shape; exempt
    paths (exact, or a prefix ending in "/") pass without one."""
    service = protected(offline_guard)
    for path in ("/state", "/healthz", "/reports/daily", "/nowhere"):
        response = await get(service, path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="authgate"'
        body = response.json()
        assert body["code"] == "credentials_missing"
        assert body["path"] == path
        assert body["error"] == "Unauthorized"
    for path in ("/health", "/public", "/public/", "/public/a/b"):
        response = await get(service, path)
        assert response.status_code == 200, path
        assert response.json() in ({"status": "ok"}, {"public": True, "principal": False})
    assert service.handled == 0


async def test_the_caller_is_stored_in_the_request_state(
    make_guard: GuardFactory, user_token: str
) -> None:
    """request.state.principal and principal_of(request) name the caller."""
    service = protected(make_guard())
    response = await get(service, "/state", bearer(user_token))
    assert response.status_code == 200, response.text
    assert response.json()["state"]["login"] == "alice"
    assert response.json()["state"] == response.json()["principalOf"]


async def test_scopes_per_path_prefix_longest_prefix_first(
    harness: Harness, make_guard: GuardFactory, user_token: str
) -> None:
    """Keys need "read" under /reports/ and also "audit:read" under /reports/audit/;
    a user's token carries the user's rights."""
    without_read = await harness.create_key(user_token, scopes=["write"], allowedIp=CALLER_NETWORK)
    reader = await harness.create_key(
        user_token, scopes=["read"], name="reader", allowedIp=CALLER_NETWORK
    )
    service = protected(make_guard())

    refused = await get(service, "/reports/daily", {"Utm-Api-Key": without_read["key"]})
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_scope"
    assert (await get(service, "/reports/daily", {"Utm-Api-Key": reader["key"]})).status_code == 200
    audit = await get(service, "/reports/audit/log", {"Utm-Api-Key": reader["key"]})
    assert audit.status_code == 403
    assert "audit:read" in audit.json()["message"]
    assert (await get(service, "/reports/audit/log", bearer(user_token))).status_code == 200


async def test_a_dependency_reuses_the_middlewares_principal(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """Behind the middleware, guard.require does not ask authgate a second time."""
    created = await harness.create_key(user_token, allowedIp=CALLER_NETWORK)
    service = protected(make_guard(key_cache_ttl=0))
    response = await get(service, "/things", {"Utm-Api-Key": created["key"]})
    assert response.status_code == 200
    assert response.json()["keyId"] == created["key"][4:16]
    assert authgate.count(VERIFY) == 1


async def test_a_dependency_of_another_guard_authenticates_again(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """Behind a lax guard's middleware (tokens trusted locally for 300 s), a stricter
    guard's dependency (every token asked of authgate) or one for another issuer does
    not take the lax guard's principal: it authenticates the request itself."""
    lax = make_guard()
    strict = make_guard(local_jwt_max_age=0)
    other = make_guard(issuer="another-authgate")
    app = FastAPI()
    lax.install(app)

    @app.get("/strict")
    async def strict_route(caller: Any = Depends(strict.require())) -> dict[str, Any]:  # noqa: B008
        return {"login": caller.login}

    @app.get("/other")
    async def other_route(caller: Any = Depends(other.require())) -> dict[str, Any]:  # noqa: B008
        return {"login": caller.login}

    app.add_middleware(GuardMiddleware, guard=lax)
    async with service_client(app) as client:
        response = await client.get("/strict", headers=bearer(user_token))
        assert response.status_code == 200, response.text
        assert authgate.count(VERIFY) == 1  # strict asked authgate; lax did not
        refused = await client.get("/other", headers=bearer(user_token))
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_token"


async def test_a_cached_success_is_never_reused_for_another_spelling_of_the_path(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """The cache is keyed on the raw URI authgate was asked about, not the decoded path:
    ``/reports%2Fdaily`` decodes to the ``/reports/daily`` just allowed, but authgate
    refuses it as sent (an encoded separator), and so does the guard."""
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=CALLER_NETWORK)
    service = protected(make_guard(key_cache_ttl=10))
    headers = {"Utm-Api-Key": created["key"]}
    assert (await get(service, "/reports/daily", headers)).status_code == 200
    refused = await get(service, "/reports%2Fdaily", headers)
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "ambiguous_upstream_path"
    assert authgate.count(VERIFY) == 2
    assert (await get(service, "/reports/daily", headers)).status_code == 200  # cached
    assert authgate.count(VERIFY) == 2


async def test_authgate_down_is_503_behind_the_middleware(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    created = await harness.create_key(user_token, allowedIp=CALLER_NETWORK)
    service = protected(make_guard())
    authgate.down = True
    response = await get(service, "/reports/daily", {"Utm-Api-Key": created["key"]})
    assert response.status_code == 503
    assert response.json()["code"] == "authgate_unavailable"
    assert (await get(service, "/health")).status_code == 200


# -- straight ASGI: paths no HTTP client would send, lifespan and websockets -----------------


class Recorder:
    """An inner ASGI app that records the scopes it is called with."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)


async def run(app: GuardMiddleware, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"} if scope["type"] == "websocket" else {}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def scope_of(kind: str, path: str, headers: dict[str, str] | None = None, **extra: Any) -> Scope:
    return {
        "type": kind,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "method": "GET",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("198.51.100.7", 50000),
        **extra,
    }


@pytest.mark.parametrize(
    "path", ["/public/../state", "/public/./x/../../state", "//public/x", "/public//../state"]
)
async def test_paths_with_dot_or_empty_segments_are_never_exempt(
    offline_guard: Guard, path: str
) -> None:
    inner = Recorder()
    app = GuardMiddleware(inner, guard=offline_guard, exempt=EXEMPT)
    sent = await run(app, scope_of("http", path))
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 401
    assert inner.scopes == []


async def test_lifespan_passes_through(offline_guard: Guard) -> None:
    inner = Recorder()
    app = GuardMiddleware(inner, guard=offline_guard)
    await run(app, {"type": "lifespan"})
    assert [scope["type"] for scope in inner.scopes] == ["lifespan"]


async def test_a_websocket_handshake_without_credential_is_closed(
    offline_guard: Guard,
) -> None:
    """Without the denial-response extension the handshake is closed (1008)."""
    inner = Recorder()
    app = GuardMiddleware(inner, guard=offline_guard)
    sent = await run(app, scope_of("websocket", "/ws"))
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]
    assert inner.scopes == []


async def test_a_websocket_refusal_is_a_json_response_where_supported(
    offline_guard: Guard,
) -> None:
    """With "websocket.http.response" the client gets the 401 and its JSON body."""
    inner = Recorder()
    app = GuardMiddleware(inner, guard=offline_guard)
    scope = scope_of("websocket", "/ws", extensions={"websocket.http.response": {}})
    sent = await run(app, scope)
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 401
    assert b"credentials_missing" in sent[1]["body"]
    assert inner.scopes == []


async def test_a_websocket_while_authgate_is_down_is_closed_with_try_again_later(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    inner = Recorder()
    app = GuardMiddleware(inner, guard=make_guard())
    authgate.down = True
    sent = await run(app, scope_of("websocket", "/ws", bearer(user_token)))
    assert sent == [{"type": "websocket.close", "code": 1013, "reason": ""}]


async def test_an_authenticated_websocket_reaches_the_app_with_its_principal(
    make_guard: GuardFactory, user_token: str
) -> None:
    inner = Recorder()
    app = GuardMiddleware(inner, guard=make_guard())
    assert await run(app, scope_of("websocket", "/ws", bearer(user_token))) == []
    (scope,) = inner.scopes
    assert scope["state"]["principal"].login == "alice"


async def test_paths_must_start_with_a_slash(offline_guard: Guard) -> None:
    with pytest.raises(GuardConfigError):
        GuardMiddleware(Recorder(), guard=offline_guard, exempt=["health"])


async def test_principal_of_names_the_fix_when_nothing_authenticated(
    offline_guard: Guard,
) -> None:
    """Reading the caller of an unprotected request fails loudly, never returns None."""
    request = Request(scope_of("http", "/x"))
    with pytest.raises(RuntimeError, match="GuardMiddleware"):
        principal_of(request)


async def test_without_install_a_refusal_still_has_its_status_and_headers(
    offline_guard: Guard,
) -> None:
    """GuardError is an HTTPException: an app that forgot guard.install() still answers
    401 with WWW-Authenticate (in FastAPI's {"detail": ...} shape), never 500 or 200."""
    app = FastAPI()
    dependency = Depends(offline_guard.require())

    @app.get("/x", dependencies=[dependency])
    async def endpoint() -> dict[str, str]:
        return {"reached": "yes"}

    async with service_client(app) as client:
        response = await client.get("/x")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="authgate"'
    assert response.json() == {"detail": "Full authentication is required to access this resource"}


@pytest.mark.parametrize("prefix", ["/gadmin", "/gadmin/"])
async def test_a_scopes_prefix_covers_whole_segments_with_or_without_its_slash(
    harness: Harness, make_guard: GuardFactory, user_token: str, prefix: str
) -> None:
    """``/gadmin`` covered only the exact path: a read key reached ``/gadmin/users``."""
    reader = await harness.create_key(user_token, scopes=["read"], allowedIp=CALLER_NETWORK)
    app = FastAPI()

    @app.get("/gadmin")
    @app.get("/gadmin/{rest:path}")
    @app.get("/gadminx")
    async def reached() -> dict[str, str]:
        return {"reached": "yes"}

    app.add_middleware(GuardMiddleware, guard=make_guard(), scopes={prefix: ["admin"]})
    headers = {"Utm-Api-Key": reader["key"]}
    async with service_client(app) as client:
        for path in ("/gadmin", "/gadmin/", "/gadmin/users", "/gadmin/a/b"):
            response = await client.get(path, headers=headers)
            assert response.status_code == 403, path
            assert response.json()["code"] == "insufficient_scope"
        assert (await client.get("/gadminx", headers=headers)).status_code == 200


async def test_a_scopes_prefix_given_twice_is_a_config_error(offline_guard: Guard) -> None:
    """``/a`` and ``/a/`` are one prefix: two requirements for it would be ambiguous."""
    with pytest.raises(GuardConfigError, match="twice"):
        GuardMiddleware(Recorder(), guard=offline_guard, scopes={"/a": ["read"], "/a/": ["write"]})


async def test_an_exempt_entry_without_a_slash_stays_one_exact_path(offline_guard: Guard) -> None:
    """Unlike scopes: ``/health`` exempts that path only, so ``/health/x`` fails closed."""
    inner = Recorder()
    app = GuardMiddleware(inner, guard=offline_guard, exempt=["/health"])
    assert await run(app, scope_of("http", "/health")) == []
    sent = await run(app, scope_of("http", "/health/x"))
    assert sent[0]["status"] == 401
