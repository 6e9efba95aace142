"""The API key path: authgate's /api/auth/verify asked, its answer cached briefly."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from authgate.guard import Guard, GuardConfig
from tests.conftest import ADMIN_PASSWORD, Harness, bearer
from tests.guard.conftest import (
    AUTHGATE_URL,
    CALLER_IP,
    CALLER_NETWORK,
    CAROL_IDENTITY,
    JWKS,
    VERIFY,
    AuthgateTransport,
    GuardedService,
    GuardFactory,
    service_client,
)


async def call(
    service: GuardedService,
    key: str,
    *,
    method: str = "GET",
    path: str = "/things",
    header: str = "Authorization",
    client_ip: str = CALLER_IP,
) -> Any:
    headers = {header: f"Bearer {key}" if header == "Authorization" else key}
    async with service_client(service.app, client_ip) as client:
        return await client.request(method, path, headers=headers)


@pytest.mark.parametrize("header", ["Authorization", "Utm-Api-Key"])
async def test_a_key_passes_with_identity_and_scopes(
    harness: Harness,
    make_guard: GuardFactory,
    authgate: AuthgateTransport,
    user_token: str,
    header: str,
) -> None:
    """Either header works; the identity and scopes come from authgate's answer."""
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=CALLER_NETWORK)
    service = GuardedService(make_guard())
    response = await call(service, created["key"], header=header)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "login": "alice",
        "userId": 1,
        "roles": ["ROLE_USER"],
        "method": "api_key",
        "keyId": created["key"][4:16],
        "scopes": ["read"],
    }
    assert authgate.count(VERIFY) == 1
    assert authgate.count(JWKS) == 0


@pytest.mark.parametrize("header", ["Authorization", "Utm-Api-Key"])
async def test_two_credential_headers_are_refused_without_asking(
    harness: Harness,
    make_guard: GuardFactory,
    authgate: AuthgateTransport,
    user_token: str,
    header: str,
) -> None:
    """As authgate itself: two credential headers are 401, and authgate is not asked
    about either (the service behind the guard might read the other one)."""
    key = (await harness.create_key(user_token, allowedIp=CALLER_NETWORK))["key"]
    value = f"Bearer {key}" if header == "Authorization" else key
    service = GuardedService(make_guard())
    async with service_client(service.app, CALLER_IP) as client:
        response = await client.get("/things", headers=[(header, value), (header, value)])
    assert response.status_code == 401, response.text
    assert authgate.count(VERIFY) == 0
    assert (await call(service, key)).status_code == 200


async def test_the_guard_forwards_the_credential_client_and_request_only(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """authgate hears the credential as received, the client address the guard saw (not
    one the client claims), the original method and URI, and no other header."""
    created = await harness.create_key(user_token, allowedIp=CALLER_NETWORK)
    service = GuardedService(make_guard())
    headers = {
        "Utm-Api-Key": created["key"],
        "X-Forwarded-For": "203.0.113.66",  # a client's claim: not passed on
        "Cookie": "session=secret",
    }
    async with service_client(service.app) as client:
        response = await client.post("/things?x=1", headers=headers)
    assert response.status_code == 200, response.text
    (sent,) = [request for request in authgate.requests if request.url.path == VERIFY]
    assert sent.method == "GET"
    assert sent.headers["Utm-Api-Key"] == created["key"]
    assert "Authorization" not in sent.headers
    assert sent.headers["X-Forwarded-For"] == CALLER_IP
    assert sent.headers["X-Original-Method"] == "POST"
    assert sent.headers["X-Original-URI"] == "/things?x=1"
    # The same in the other pair, so authgate reads it alike for any forward_auth_proxy.
    assert sent.headers["X-Forwarded-Method"] == "POST"
    assert sent.headers["X-Forwarded-Uri"] == "/things?x=1"
    assert "Cookie" not in sent.headers


@pytest.mark.parametrize("forward_auth_proxy", ["traefik", "caddy"])
async def test_the_guard_is_understood_whichever_proxy_authgate_expects(
    harness: Harness, make_guard: GuardFactory, user_token: str
) -> None:
    """The guard sends the request in both header pairs, so an authgate configured for
    Traefik or Caddy reads the same method and path: a read-only key reads, and its
    POST is refused by authgate's own rule (keys need write for unsafe methods)."""
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=CALLER_NETWORK)
    service = GuardedService(make_guard())
    assert (await call(service, created["key"])).status_code == 200
    refused = await call(service, created["key"], method="POST")
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_scope"
    assert service.handled == 1


async def test_the_keys_allow_list_applies_to_the_guarded_services_caller(
    harness: Harness, make_guard: GuardFactory, user_token: str
) -> None:
    """authgate checks the forwarded client address: outside the allow list, 403."""
    created = await harness.create_key(user_token, allowedIp=["203.0.113.0/24"])
    service = GuardedService(make_guard())
    refused = await call(service, created["key"], client_ip=CALLER_IP)
    assert refused.status_code == 403
    assert refused.json()["code"] == "ip_not_allowed"
    assert CALLER_IP in refused.json()["message"]
    allowed = await call(service, created["key"], client_ip="203.0.113.9")
    assert allowed.status_code == 200


def without_client(app: Any, host: str | None = None) -> Any:
    """``app`` as a server gives it requests with no client address (a unix socket),
    or with ``host`` (a name, not an address) in its place."""

    async def served(scope: Any, receive: Any, send: Any) -> None:
        scope["client"] = None if host is None else (host, 0)
        await app(scope, receive, send)

    return served


@pytest.mark.parametrize("forwarded_header", ["x-forwarded-for", "forwarded"])
@pytest.mark.parametrize("host", [None, "client.example"])
async def test_an_unknown_caller_address_is_never_the_guards_own(
    harness: Harness,
    make_guard: GuardFactory,
    authgate: AuthgateTransport,
    user_token: str,
    host: str | None,
) -> None:
    """Served on a unix socket, the guard knows no address for its caller: it tells
    authgate "unknown" (in both forwarding headers), so a key allowed only from the
    guard's own address (127.0.0.1 here) is refused, and a key without an allow list
    still passes. Sending no address made authgate take the guard for the caller."""
    local_only = await harness.create_key(user_token, allowedIp=["127.0.0.1"])
    anywhere = await harness.create_key(user_token, name="anywhere", allowedIp=[])
    service = GuardedService(make_guard())
    app = without_client(service.app, host)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://service") as client:
        refused = await client.get("/things", headers=bearer(local_only["key"]))
        allowed = await client.get("/things", headers=bearer(anywhere["key"]))
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "ip_not_allowed"
    assert allowed.status_code == 200, allowed.text
    sent = next(request for request in authgate.requests if request.url.path == VERIFY)
    assert sent.headers["X-Forwarded-For"] == "unknown"
    assert sent.headers["Forwarded"] == "for=unknown"


async def test_the_client_address_goes_in_both_forwarding_headers(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """An IPv6 caller: X-Forwarded-For has the address, Forwarded has it quoted in
    brackets (RFC 7239), so authgate reads it whichever header it is set to read."""
    created = await harness.create_key(user_token, allowedIp=["2001:db8::/32"])
    service = GuardedService(make_guard())
    assert (await call(service, created["key"], client_ip="2001:db8::7")).status_code == 200
    (sent,) = [request for request in authgate.requests if request.url.path == VERIFY]
    assert sent.headers["X-Forwarded-For"] == "2001:db8::7"
    assert sent.headers["Forwarded"] == 'for="[2001:db8::7]"'


async def test_method_override_headers_are_passed_on_and_part_of_the_cache_key(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """A read-only key's GET passes; the same GET carrying X-HTTP-Method-Override: DELETE
    is held by authgate to DELETE's rule (keys need write) instead of taking the cached
    answer for the plain GET: an override middleware inside the guard would run it as
    a DELETE."""
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=CALLER_NETWORK)
    service = GuardedService(make_guard())
    assert (await call(service, created["key"])).status_code == 200
    for name in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
        async with service_client(service.app) as client:
            refused = await client.get(
                "/things", headers={"Authorization": f"Bearer {created['key']}", name: "DELETE"}
            )
        assert refused.status_code == 403, (name, refused.text)
        assert refused.json()["code"] == "insufficient_scope"
        sent = [request for request in authgate.requests if request.url.path == VERIFY][-1]
        assert sent.headers[name] == "DELETE"
    assert service.handled == 1


async def test_successes_are_cached_per_credential_client_and_request(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """Within key_cache_ttl, the same key for the same request is not asked about
    again; another address or path is."""
    created = await harness.create_key(user_token, allowedIp=CALLER_NETWORK)
    service = GuardedService(make_guard(key_cache_ttl=10))
    for _ in range(5):
        assert (await call(service, created["key"])).status_code == 200
    assert authgate.count(VERIFY) == 1
    assert (await call(service, created["key"], client_ip="198.51.100.8")).status_code == 200
    assert (await call(service, created["key"], method="POST")).status_code == 200
    assert authgate.count(VERIFY) == 3
    harness.clock.advance(seconds=10)
    assert (await call(service, created["key"])).status_code == 200
    assert authgate.count(VERIFY) == 4


async def test_a_revoked_key_is_refused_once_the_cache_entry_expires(
    harness: Harness, make_guard: GuardFactory, user_token: str
) -> None:
    """Revocation reaches the guard within key_cache_ttl seconds, no later."""
    created = await harness.create_key(user_token, allowedIp=CALLER_NETWORK)
    service = GuardedService(make_guard(key_cache_ttl=10))
    assert (await call(service, created["key"])).status_code == 200
    revoked = await harness.client.delete(
        f"/api/api-keys/{created['id']}", headers=bearer(user_token)
    )
    assert revoked.status_code == 204
    harness.clock.advance(seconds=9)
    assert (await call(service, created["key"])).status_code == 200  # still cached
    harness.clock.advance(seconds=1)
    response = await call(service, created["key"])
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_refusals_are_never_cached(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """Every refused attempt reaches authgate (which counts bad keys per address)."""
    created = await harness.create_key(user_token, allowedIp=["203.0.113.0/24"])
    service = GuardedService(make_guard(key_cache_ttl=10))
    for _ in range(3):
        assert (await call(service, created["key"])).status_code == 403
    assert authgate.count(VERIFY) == 3


async def test_a_missing_scope_is_403(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """A read-only key cannot reach a route that requires "write"."""
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=CALLER_NETWORK)
    service = GuardedService(make_guard())
    # GET on a route requiring write: authgate allows the GET, the guard's rule refuses.
    read = await call(service, created["key"], path="/things", method="GET")
    assert read.status_code == 200
    async with service_client(service.app) as client:
        response = await client.post("/things", headers={"Utm-Api-Key": created["key"]})
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
    assert "insufficient_scope" in response.headers["WWW-Authenticate"]
    assert service.handled == 1


async def test_the_guards_own_scope_rule_refuses_what_authgate_allowed(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """A key without "read" passes authgate for a GET but not the route's requirement."""
    created = await harness.create_key(user_token, scopes=["write"], allowedIp=CALLER_NETWORK)
    service = GuardedService(make_guard())
    response = await call(service, created["key"])
    assert response.status_code == 403
    assert response.json()["message"] == "The API key lacks the scope read for this request"
    assert authgate.count(VERIFY) == 1
    assert service.handled == 0


async def test_a_missing_role_is_403(
    harness: Harness, make_guard: GuardFactory, user_token: str
) -> None:
    """A ROLE_USER key cannot reach a ROLE_ADMIN route; an admin's admin-scoped key can."""
    created = await harness.create_key(user_token, allowedIp=CALLER_NETWORK)
    service = GuardedService(make_guard())
    response = await call(service, created["key"], path="/admin")
    assert response.status_code == 403
    assert response.json()["code"] == "role_required"

    await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    admin_token = await harness.login("admin", ADMIN_PASSWORD)
    admin_key = await harness.create_key(
        admin_token, scopes=["read", "admin"], allowedIp=CALLER_NETWORK
    )
    response = await call(service, admin_key["key"], path="/admin")
    assert response.status_code == 200, response.text
    assert "ROLE_ADMIN" in response.json()["roles"]


async def test_malformed_keys_are_refused_without_asking(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """A bad checksum or shape is refused locally with authgate's own answer."""
    created = await harness.create_key(user_token, allowedIp=CALLER_NETWORK)
    key: str = created["key"]
    typo = key[:20] + ("A" if key[20] != "A" else "B") + key[21:]
    service = GuardedService(make_guard())
    for bad in (typo, "agk_short", key + "x"):
        response = await call(service, bad)
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_api_key"
    assert authgate.count(VERIFY) == 0


async def test_a_rate_limited_key_gets_429_with_retry_after(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """authgate's 429 reaches the caller with its Retry-After, and is not cached."""
    created = await harness.create_key(user_token, rateLimit="1/minute", allowedIp=CALLER_NETWORK)
    service = GuardedService(make_guard(key_cache_ttl=0))
    assert (await call(service, created["key"])).status_code == 200
    for _ in range(2):
        response = await call(service, created["key"])
        assert response.status_code == 429
        assert response.json()["code"] == "rate_limited"
        assert int(response.headers["Retry-After"]) > 0
    assert authgate.count(VERIFY) == 3
    assert service.handled == 1


async def test_authgate_down_means_503_and_nothing_passes(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """Unreachable authgate: 503 with a JSON error, the handler never runs, and even
    a key verified before is refused once its cache entry expires."""
    created = await harness.create_key(user_token, allowedIp=CALLER_NETWORK)
    other = await harness.create_key(user_token, name="other", allowedIp=CALLER_NETWORK)
    service = GuardedService(make_guard(key_cache_ttl=10))
    assert (await call(service, created["key"])).status_code == 200
    authgate.down = True
    response = await call(service, other["key"])
    assert response.status_code == 503
    assert response.json()["code"] == "authgate_unavailable"
    assert response.headers["Cache-Control"] == "no-store"
    harness.clock.advance(seconds=10)
    assert (await call(service, created["key"])).status_code == 503
    assert service.handled == 1


async def test_any_other_answer_from_authgate_means_503(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """5xx, a wrong URL (404) or a redirect: fail closed."""
    created = await harness.create_key(user_token, allowedIp=CALLER_NETWORK)
    service = GuardedService(make_guard())
    for status in (500, 502, 503, 404, 302):
        authgate.status = status
        response = await call(service, created["key"])
        assert response.status_code == 503, status
        assert response.json()["code"] == "authgate_unavailable"
    assert service.handled == 0


async def test_a_200_without_identity_headers_means_503(harness: Harness, user_token: str) -> None:
    """A server answering 200 to anything (a wrong AUTHGATE_URL) lets nobody in."""
    created = await harness.create_key(user_token, allowedIp=CALLER_NETWORK)
    lenient = httpx2.MockTransport(lambda request: httpx2.Response(200, text="ok"))
    guard = Guard(GuardConfig(authgate_url=AUTHGATE_URL, transport=lenient))
    service = GuardedService(guard)
    response = await call(service, created["key"])
    assert response.status_code == 503
    assert service.handled == 0
    await guard.aclose()


async def test_the_cache_is_bounded(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """Past key_cache_size entries the oldest is forgotten (memory stays bounded)."""
    created = await harness.create_key(user_token, allowedIp=CALLER_NETWORK)
    service = GuardedService(make_guard(key_cache_size=2))
    for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        assert (await call(service, created["key"], client_ip=address)).status_code == 200
    assert authgate.count(VERIFY) == 3
    assert (await call(service, created["key"], client_ip="198.51.100.3")).status_code == 200
    assert authgate.count(VERIFY) == 3
    assert (await call(service, created["key"], client_ip="198.51.100.1")).status_code == 200
    assert authgate.count(VERIFY) == 4


async def test_cache_deadlines_follow_the_monotonic_timer_not_the_wall_clock(
    harness: Harness, authgate: AuthgateTransport, user_token: str
) -> None:
    """A wall clock set back (an NTP step, an operator) must not stretch how long a
    success is reused: deadlines are read from the timer, which never steps back."""
    created = await harness.create_key(user_token, allowedIp=CALLER_NETWORK)
    wall = [harness.clock().timestamp()]
    ticks = [1000.0]
    config = GuardConfig(authgate_url=AUTHGATE_URL, transport=authgate, key_cache_ttl=10)
    async with Guard(config, clock=lambda: wall[0], timer=lambda: ticks[0]) as guard:
        service = GuardedService(guard)
        assert (await call(service, created["key"])).status_code == 200
        wall[0] -= 3600  # the wall clock steps back an hour...
        ticks[0] += 10  # ...while 10 s pass
        assert (await call(service, created["key"])).status_code == 200
        assert authgate.count(VERIFY) == 2  # asked again: the success was 10 s old
        wall[0] += 7200  # and a wall clock stepping forward expires nothing early
        assert (await call(service, created["key"])).status_code == 200
        assert authgate.count(VERIFY) == 2


async def test_a_keys_answer_without_scopes_means_503(harness: Harness, user_token: str) -> None:
    """authgate always sends a key's X-Auth-Scopes (empty for none): an answer without
    it is not authgate's, and must not read as "every scope" (a user token's)."""
    created = await harness.create_key(user_token, allowedIp=CALLER_NETWORK)
    identity = {name: value for name, value in CAROL_IDENTITY.items() if name != "X-Auth-Scopes"}
    answers = [identity, {**identity, "X-Auth-Scopes": ""}]

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers=answers.pop(0))

    config = GuardConfig(authgate_url=AUTHGATE_URL, transport=httpx2.MockTransport(answer))
    async with Guard(config) as guard:
        service = GuardedService(guard)
        response = await call(service, created["key"], method="POST")
        assert response.status_code == 503
        assert response.json()["code"] == "authgate_unavailable"
        # An empty header is a key without scopes: it passes authgate, not the route.
        response = await call(service, created["key"], method="POST")
        assert response.status_code == 403
        assert response.json()["code"] == "insufficient_scope"
    assert service.handled == 0


def test_the_guard_passes_on_every_override_header_authgate_checks() -> None:
    """The guard's list of method-override headers is authgate's (the SDK cannot import
    the server's module): a header authgate learns to check must be passed on too."""
    from authgate.guard._incoming import METHOD_OVERRIDE_HEADERS as PASSED_ON
    from authgate.services.upstream_request import METHOD_OVERRIDE_HEADERS

    assert PASSED_ON == METHOD_OVERRIDE_HEADERS


async def test_a_guard_entered_again_after_closing_asks_authgate_again(
    harness: Harness, make_guard: GuardFactory, user_token: str
) -> None:
    """``async with guard`` in each lifespan of one app (a test suite's second
    TestClient): the second opens the connection again. A closed guard that is not
    entered again answers 503 (authgate unavailable), not a 500."""
    key = (await harness.create_key(user_token, allowedIp=CALLER_NETWORK))["key"]
    guard = make_guard(key_cache_ttl=0)
    service = GuardedService(guard)
    for _ in range(2):
        async with guard:
            assert (await call(service, key)).status_code == 200
    closed = await call(service, key)
    assert closed.status_code == 503, closed.text
    assert closed.json()["code"] == "authgate_unavailable"


def endless_answer(
    produced: list[int], *, status: int = 200, declared: int | None = None
) -> httpx2.MockTransport:
    """A server answering every request with a body of 64 KiB chunks that never ends
    (``produced`` counts the chunks it was asked for), declaring ``declared`` bytes."""

    async def chunks() -> Any:
        while True:
            produced[0] += 1
            yield b"x" * 65536

    def answer(request: httpx2.Request) -> httpx2.Response:
        headers = {"Content-Length": str(declared)} if declared is not None else {}
        return httpx2.Response(status, headers=headers, content=chunks())

    return httpx2.MockTransport(answer)


@pytest.mark.parametrize("declared", [None, 10**12])
async def test_an_endless_answer_is_dropped_at_its_bound(
    harness: Harness, user_token: str, declared: int | None
) -> None:
    """Whatever answers at AUTHGATE_URL (a wrong URL, a man in the middle of plain HTTP)
    cannot make the guard read a body of any size: an answer to /api/auth/verify is
    dropped past 64 KiB, one declaring more is not read at all; 503 either way."""
    key = (await harness.create_key(user_token))["key"]
    produced = [0]
    transport = endless_answer(produced, status=403, declared=declared)
    async with Guard(GuardConfig(authgate_url=AUTHGATE_URL, transport=transport)) as guard:
        response = await call(GuardedService(guard), key)
    assert response.status_code == 503, response.text
    assert produced[0] <= (0 if declared else 2)


async def test_non_ascii_bytes_in_the_path_or_query_reach_authgate_percent_encoded(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """A server that passes UTF-8 bytes through in ``raw_path`` and the query (uvicorn
    refuses them, others may not): authgate is asked about them percent-encoded, the
    same path to it; they were a 500 (httpx refuses non-ASCII header values). A path
    without ``raw_path`` is quoted back, so a decoded ``?`` stays in the path."""
    key = (await harness.create_key(user_token, allowedIp=CALLER_NETWORK))["key"]
    service = GuardedService(make_guard(key_cache_ttl=0))

    def served(raw_path: bytes | None, query: bytes) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            if raw_path is None:
                scope.pop("raw_path", None)
            else:
                scope["raw_path"] = raw_path
            scope["query_string"] = query
            await service.app(scope, receive, send)

        return app

    cases = [
        (b"/things", "q=café".encode(), "/things?q=caf%C3%A9"),
        (None, b"", "/things"),
    ]
    for raw_path, query, expected in cases:
        transport = httpx2.ASGITransport(app=served(raw_path, query), client=(CALLER_IP, 1))
        async with httpx2.AsyncClient(transport=transport, base_url="http://service") as client:
            response = await client.get("/things", headers=bearer(key))
        assert response.status_code == 200, response.text
        sent = [request for request in authgate.requests if request.url.path == VERIFY][-1]
        assert sent.headers["X-Original-URI"] == expected


def test_a_decoded_path_is_quoted_back_for_authgate() -> None:
    """Without ``raw_path``, ``/a%3Fb`` decoded is ``/a?b``: sent as ``/a%3Fb``, not as
    the path ``/a`` with a query; a space and non-ASCII are encoded too."""
    from authgate.guard._paths import uri_readings

    assert uri_readings({"path": "/a?b%c", "query_string": b""}) == ("/a%3Fb%25c",)
    assert uri_readings({"path": "/café x", "query_string": b"q=\xc3\xa9"}) == (
        "/caf%C3%A9%20x?q=%C3%A9",
    )


async def test_a_non_ascii_override_header_is_authgates_to_judge(
    harness: Harness, make_guard: GuardFactory, authgate: AuthgateTransport, user_token: str
) -> None:
    """A method-override header with a byte outside ASCII reaches authgate as it came
    (httpx refuses such text, which was a 500 in the guard); authgate refuses it."""
    key = (await harness.create_key(user_token, allowedIp=CALLER_NETWORK))["key"]
    service = GuardedService(make_guard())
    headers = [(b"authorization", f"Bearer {key}".encode()), (b"x-http-method-override", b"D\xc9L")]
    async with service_client(service.app) as client:
        response = await client.get("/things", headers=headers)
    assert response.status_code == 400, response.text
    sent = [request for request in authgate.requests if request.url.path == VERIFY][-1]
    assert sent.headers.raw[-1] == (b"X-HTTP-Method-Override", b"D\xc9L")
    assert service.handled == 0
