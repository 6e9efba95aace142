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
