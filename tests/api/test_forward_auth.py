"""Forward-auth through HTTP: ``/api/auth/verify`` as nginx, Traefik and Caddy call it."""

from __future__ import annotations

import itertools
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from authgate.api.forward_auth import IDENTITY_HEADERS
from authgate.app import create_app
from authgate.services.forward_auth import ForwardAuthRuleSetting
from authgate.settings import Settings
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, FakeClock, Harness, bearer, test_settings

VERIFY = "/api/auth/verify"
KEYS = "/api/api-keys"
# The allow list of the keys the tests create: the proxied clients' networks and loopback.
UPSTREAM = ["127.0.0.1", "198.51.100.0/24", "2001:db8::/32"]

RULES = [
    ForwardAuthRuleSetting(path_prefix="/api/", methods=["GET", "HEAD"], scopes=["read"]),
    ForwardAuthRuleSetting(path_prefix="/api/", scopes=["write"]),
    ForwardAuthRuleSetting(path_prefix="/admin/", roles=["ROLE_ADMIN"]),
    ForwardAuthRuleSetting(path_prefix="/orders/", methods=["POST"], scopes=["orders:write"]),
    ForwardAuthRuleSetting(path_prefix="/internal/", allow=False),
    ForwardAuthRuleSetting(path_prefix="/reports/", methods=["GET"], roles=["ROLE_ADMIN"]),
]


@pytest.fixture
def proxy() -> str:
    """``forward_auth_proxy`` (a test parametrized with ``proxy`` overrides it)."""
    return "nginx"


@pytest.fixture
def access_token_query_param() -> bool:
    """``access_token_query_param`` (a test parametrized with it overrides it)."""
    return False


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, proxy: str, access_token_query_param: bool
) -> Settings:
    return test_settings(
        tmp_path / "data",
        database_url=database_url,
        trusted_proxies=["127.0.0.1"],
        forward_auth_rules=RULES,
        api_key_extra_scopes=["orders:write"],
        forward_auth_proxy=proxy,
        access_token_query_param=access_token_query_param,
    )


def expiry(clock: FakeClock, days: int = 30) -> str:
    return (clock() + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def proxied(
    credential: str | None = None,
    *,
    uri: str = "/api/things?page=2",
    method: str = "GET",
    client: str = "198.51.100.7",
    header: str = "Authorization",
) -> dict[str, str]:
    """The headers nginx's auth_request location sends (see README)."""
    headers = {"X-Original-URI": uri, "X-Original-Method": method, "X-Forwarded-For": client}
    if credential is not None:
        headers[header] = f"Bearer {credential}" if header == "Authorization" else credential
    return headers


# -- allowed ----------------------------------------------------------------------------------


async def test_a_valid_key_passes_with_identity_headers_and_an_empty_body(
    harness: Harness, user_token: str
) -> None:
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=UPSTREAM)
    for header in ("Authorization", "Utm-Api-Key"):
        response = await harness.client.get(VERIFY, headers=proxied(created["key"], header=header))
        assert response.status_code == 200, response.text
        assert response.content == b""
        assert response.headers["X-Auth-User"] == "alice"
        assert response.headers["X-Auth-User-Id"].isdigit()
        assert response.headers["X-Auth-Roles"] == "ROLE_USER"
        assert response.headers["X-Auth-Method"] == "api_key"
        assert response.headers["X-Auth-Key-Id"] == created["key"][4:16]
        assert response.headers["X-Auth-Scopes"] == "read"
        assert "X-Auth-Error" not in response.headers


async def test_a_user_token_passes_without_key_headers(harness: Harness, admin_token: str) -> None:
    response = await harness.client.get(VERIFY, headers=proxied(admin_token, uri="/admin/x"))
    assert response.status_code == 200, response.text
    assert response.headers["X-Auth-User"] == "admin"
    assert response.headers["X-Auth-Roles"] == "ROLE_ADMIN,ROLE_USER"
    assert response.headers["X-Auth-Method"] == "jwt"
    assert "X-Auth-Key-Id" not in response.headers
    assert "X-Auth-Scopes" not in response.headers


@pytest.mark.parametrize("verb", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_every_method_is_accepted_and_the_body_is_ignored(
    harness: Harness, user_token: str, verb: str
) -> None:
    """verify's own method says nothing (nginx's subrequest, like Traefik's and Caddy's
    auth requests, is a GET): the original method in the proxy's header decides."""
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=UPSTREAM)
    response = await harness.client.request(
        verb, VERIFY, headers=proxied(created["key"], method="GET"), content=b"{not json"
    )
    assert response.status_code == 200
    refused = await harness.client.request(
        verb, VERIFY, headers=proxied(created["key"], method="DELETE"), content=b"{not json"
    )
    assert refused.status_code == 403
    if verb != "HEAD":
        assert refused.json()["code"] == "insufficient_scope"


async def test_a_declared_body_over_the_limit_is_not_refused_unread(
    harness: Harness, user_token: str
) -> None:
    """nginx's auth_request with ``proxy_pass_request_body off`` (UTMStack's ``/kill``)
    passes the upload's Content-Length and no body: verify, and UTMStack's auth check
    ``GET /api/authenticate``, answered 413 and every upload over 64 KiB broke (nginx
    turns an auth answer it does not expect into a 500). Neither reads a body."""
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=UPSTREAM)
    declared = {"Content-Length": str(harness.services.settings.http.max_body_bytes + 1)}
    for method, status in (("GET", 200), ("DELETE", 403)):
        response = await harness.client.get(
            VERIFY, headers={**proxied(created["key"], method=method), **declared}
        )
        assert response.status_code == status, response.text
    who = await harness.client.get("/api/authenticate", headers={**bearer(user_token), **declared})
    assert (who.status_code, who.text) == (200, "alice")
    # A route that reads its body still refuses it before reading it.
    login = await harness.client.post(
        "/api/authenticate",
        json={"username": "alice", "password": "x"},
        headers=declared,
    )
    assert login.status_code == 413


@pytest.mark.parametrize("proxy", ["traefik", "caddy"])
async def test_traefik_and_caddy_headers_are_understood(harness: Harness, user_token: str) -> None:
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=UPSTREAM)
    headers = {
        "Authorization": f"Bearer {created['key']}",
        "X-Forwarded-Method": "POST",
        "X-Forwarded-Uri": "/api/things",
        "X-Forwarded-For": "198.51.100.7",
    }
    response = await harness.client.get(VERIFY, headers=headers)
    assert response.status_code == 403
    assert response.headers["X-Auth-Error"] == "insufficient_scope"
    headers["X-Forwarded-Method"] = "GET"
    assert (await harness.client.get(VERIFY, headers=headers)).status_code == 200


# -- refused ----------------------------------------------------------------------------------


@pytest.mark.parametrize("access_token_query_param", [True])
@pytest.mark.parametrize("proxy", ["caddy"])
async def test_verify_never_reads_a_token_from_the_query(harness: Harness, user_token: str) -> None:
    """With ``access_token_query_param`` on, authgate's own routes read
    ``?access_token=``; verify does not: Caddy sends the client's query along on the
    auth request, and a token accepted there would reach the upstream in its URL."""
    own = await harness.client.get("/api/account", params={"access_token": user_token})
    assert own.status_code == 200, own.text
    headers = {
        "X-Forwarded-Method": "GET",
        "X-Forwarded-Uri": f"/api/things?access_token={user_token}",
        "X-Forwarded-For": "198.51.100.7",
    }
    response = await harness.client.get(
        VERIFY, params={"access_token": user_token}, headers=headers
    )
    assert response.status_code == 401
    assert response.headers["X-Auth-Error"] == "credentials_missing"


async def test_missing_and_bad_credentials_are_401_with_the_reason_in_a_header(
    harness: Harness, user_token: str
) -> None:
    missing = await harness.client.get(VERIFY, headers=proxied())
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.headers["X-Auth-Error"] == "credentials_missing"
    assert missing.json()["code"] == "credentials_missing"

    created = await harness.create_key(user_token, allowedIp=UPSTREAM)
    forged = created["key"][:-8] + "AAAAAAAA"
    bad = await harness.client.get(VERIFY, headers=proxied(forged))
    assert bad.status_code == 401
    assert bad.headers["X-Auth-Error"] == "invalid_api_key"
    assert forged not in bad.text

    token = await harness.client.get(VERIFY, headers=proxied("not.a.jwt"))
    assert token.status_code == 401
    assert token.headers["X-Auth-Error"] == "invalid_token"


async def test_two_credential_headers_are_refused(harness: Harness, user_token: str) -> None:
    """The proxy passes the client's headers on: two Authorization or Utm-Api-Key
    headers are refused (401), whichever comes first."""
    key = (await harness.create_key(user_token, allowedIp=UPSTREAM))["key"]
    for header, value in (("Authorization", f"Bearer {key}"), ("Utm-Api-Key", key)):
        headers = [*proxied().items(), (header, value), (header, value)]
        response = await harness.client.get(VERIFY, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["X-Auth-Error"] == "invalid_token"
        assert "X-Auth-User" not in response.headers
    accepted = await harness.client.get(VERIFY, headers=proxied(key))
    assert accepted.status_code == 200, accepted.text


async def test_revoked_and_expired_keys_are_refused(harness: Harness, user_token: str) -> None:
    revoked = await harness.create_key(user_token, name="revoked", allowedIp=UPSTREAM)
    assert (await harness.client.get(VERIFY, headers=proxied(revoked["key"]))).status_code == 200
    deleted = await harness.client.delete(f"{KEYS}/{revoked['id']}", headers=bearer(user_token))
    assert deleted.status_code in (200, 204)
    response = await harness.client.get(VERIFY, headers=proxied(revoked["key"]))
    assert response.status_code == 401

    expiring = await harness.create_key(user_token, name="expiring", allowedIp=UPSTREAM)
    harness.clock.advance(days=31)
    response = await harness.client.get(VERIFY, headers=proxied(expiring["key"]))
    assert response.status_code == 401
    assert response.headers["X-Auth-Error"] == "api_key_expired"


async def test_the_original_client_address_decides_the_allow_list(
    harness: Harness, user_token: str
) -> None:
    """Behind a trusted proxy the forwarded address is checked; from anyone else the
    header is ignored and the peer itself is checked."""
    created = await harness.create_key(user_token, allowedIp=["198.51.100.0/24"])
    key = created["key"]
    allowed = await harness.client.get(VERIFY, headers=proxied(key, client="198.51.100.9"))
    assert allowed.status_code == 200
    denied = await harness.client.get(VERIFY, headers=proxied(key, client="203.0.113.9"))
    assert denied.status_code == 403
    assert denied.headers["X-Auth-Error"] == "ip_not_allowed"
    async with harness.client_from("203.0.113.50") as untrusted:
        spoofed = await untrusted.get(VERIFY, headers=proxied(key, client="198.51.100.9"))
    assert spoofed.status_code == 403
    v6 = await harness.client.get(VERIFY, headers=proxied(key, client="2001:db8::1"))
    assert v6.status_code == 403


async def test_a_deactivated_owner_is_refused_at_once(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    created = await harness.create_key(user_token, allowedIp=UPSTREAM)
    assert (await harness.client.get(VERIFY, headers=proxied(created["key"]))).status_code == 200
    body = {"activated": False}
    updated = await harness.client.put("/api/users/alice", json=body, headers=bearer(admin_token))
    assert updated.status_code == 200, updated.text
    assert (await harness.client.get(VERIFY, headers=proxied(created["key"]))).status_code == 401
    assert (await harness.client.get(VERIFY, headers=proxied(user_token))).status_code == 401


async def test_the_encoded_answer_of_a_key_is_never_served_once_it_no_longer_holds(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """The fast path keeps each principal's 200 headers encoded (EncodedHeaders): a
    revoked key or a deactivated owner must never get them again, and the rate-limit
    headers are added to a copy, never to the kept answer."""
    identity = ("X-Auth-User", "X-Auth-User-Id", "X-Auth-Key-Id", "X-Auth-Scopes")
    limited = await harness.create_key(user_token, rateLimit="5/minute", allowedIp=UPSTREAM)
    first = await harness.client.get(VERIFY, headers=proxied(limited["key"]))
    again = await harness.client.get(VERIFY, headers=proxied(limited["key"]))
    assert first.status_code == again.status_code == 200
    assert [first.headers[name] for name in identity] == [again.headers[name] for name in identity]
    assert first.headers["X-Auth-Roles"] == "ROLE_USER"
    # One RateLimit header each, with its own count: added to a copy of the kept answer.
    assert [value.split(";t=")[0] for value in first.headers.get_list("RateLimit")] == ['"key";r=4']
    assert [value.split(";t=")[0] for value in again.headers.get_list("RateLimit")] == ['"key";r=3']

    kept = await harness.create_key(user_token, name="kept", allowedIp=UPSTREAM)
    assert (await harness.client.get(VERIFY, headers=proxied(kept["key"]))).status_code == 200
    deactivated = await harness.client.put(
        "/api/users/alice", json={"activated": False}, headers=bearer(admin_token)
    )
    assert deactivated.status_code == 200, deactivated.text
    refused = await harness.client.get(VERIFY, headers=proxied(kept["key"]))
    assert refused.status_code == 401
    assert not [name for name in refused.headers if name.lower().startswith("x-auth-user")]
    # (Reactivating the owner leaves the key suspended: another key shows revocation.)
    kept = await harness.create_key(admin_token, name="kept", allowedIp=UPSTREAM)
    assert (await harness.client.get(VERIFY, headers=proxied(kept["key"]))).status_code == 200
    deleted = await harness.client.delete(f"{KEYS}/{kept['id']}", headers=bearer(admin_token))
    assert deleted.status_code in (200, 204)
    revoked = await harness.client.get(VERIFY, headers=proxied(kept["key"]))
    assert revoked.status_code == 401
    assert revoked.headers["X-Auth-Error"] == "invalid_api_key"
    assert not [name for name in revoked.headers if name.lower().startswith("x-auth-user")]


async def test_rate_limited_keys_get_429_with_retry_after(
    harness: Harness, user_token: str
) -> None:
    created = await harness.create_key(user_token, rateLimit="2/minute", allowedIp=UPSTREAM)
    statuses = [
        (await harness.client.get(VERIFY, headers=proxied(created["key"]))).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    limited = await harness.client.get(VERIFY, headers=proxied(created["key"]))
    assert limited.headers["X-Auth-Error"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1


# -- rules --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "method", "uri", "status"),
    [
        (["read"], "GET", "/api/things", 200),
        (["read"], "HEAD", "/api/things", 200),
        (["read"], "POST", "/api/things", 403),
        (["write"], "GET", "/api/things", 403),  # the GET rule wants read
        (["write"], "DELETE", "/api/things/1", 200),
        (["read", "write"], "POST", "/orders/1", 403),  # needs orders:write
        (["read", "orders:write"], "POST", "/orders/1", 200),
        (["read", "orders:write"], "GET", "/orders/1", 200),  # unmatched: authenticated
        (["orders:write"], "GET", "/orders/1", 403),  # ... with read or write
        (["write"], "GET", "/orders/1", 200),
        (["orders:write"], "POST", "/orders/1", 200),  # a rule naming it decides alone
        (["read", "orders:write"], "PUT", "/orders/1", 403),  # unmatched unsafe: write
        (["read", "write"], "GET", "/internal/metrics", 403),  # allow = false
        (["read", "write"], "GET", "/admin/users", 403),  # ROLE_ADMIN only
        (["read", "write"], "GET", "/admin", 403),  # the prefix's own directory
    ],
)
async def test_rules_per_path_prefix_and_method(
    harness: Harness,
    user_token: str,
    scopes: list[str],
    method: str,
    uri: str,
    status: int,
) -> None:
    created = await harness.create_key(user_token, scopes=scopes, allowedIp=UPSTREAM)
    response = await harness.client.get(
        VERIFY, headers=proxied(created["key"], uri=uri, method=method)
    )
    assert response.status_code == status, response.text


async def test_a_rule_naming_get_decides_head_too(
    harness: Harness, user_token: str, admin_token: str
) -> None:
    """Upstreams answer HEAD with their GET handler: the GET-only ROLE_ADMIN rule on
    /reports/ holds HEAD to the role too, not to the unmatched default (any caller).
    Other methods it does not name are still left to that default."""
    created = await harness.create_key(user_token, scopes=["read", "write"], allowedIp=UPSTREAM)
    for method in ("GET", "HEAD"):
        headers = proxied(created["key"], uri="/reports/x", method=method)
        refused = await harness.client.get(VERIFY, headers=headers)
        assert refused.status_code == 403, method
        assert refused.headers["X-Auth-Error"] == "forbidden"
        allowed = proxied(admin_token, uri="/reports/x", method=method)
        assert (await harness.client.get(VERIFY, headers=allowed)).status_code == 200
    headers = proxied(created["key"], uri="/reports/x", method="POST")
    assert (await harness.client.get(VERIFY, headers=headers)).status_code == 200


@pytest.mark.parametrize(
    ("uri", "status"),
    [
        ("/api/../admin/users", 400),
        ("/api/%2e%2e/admin/users", 400),
        ("//admin//users", 400),
        ("/api/./../admin/users?x=/api/", 400),
        ("http://upstream.example/admin/users", 403),
    ],
)
async def test_no_spelling_moves_a_request_under_a_weaker_rule(
    harness: Harness, user_token: str, uri: str, status: int
) -> None:
    """A dot segment or doubled slash is refused (servers read it differently); the
    absolute form is read as its path."""
    created = await harness.create_key(user_token, scopes=["read", "write"], allowedIp=UPSTREAM)
    response = await harness.client.get(VERIFY, headers=proxied(created["key"], uri=uri))
    assert response.status_code == status
    assert response.headers["X-Auth-Error"] == (
        "forbidden" if status == 403 else "ambiguous_upstream_path"
    )


async def test_admin_rules_take_the_key_scope_into_account(
    harness: Harness, admin_token: str
) -> None:
    """An admin's key holds ROLE_ADMIN only with the admin scope."""
    plain = await harness.create_key(admin_token, name="plain", scopes=["read"], allowedIp=UPSTREAM)
    admin = await harness.create_key(
        admin_token, name="admin", scopes=["read", "admin"], allowedIp=UPSTREAM
    )
    headers = proxied(plain["key"], uri="/admin/users")
    assert (await harness.client.get(VERIFY, headers=headers)).status_code == 403
    headers = proxied(admin["key"], uri="/admin/users")
    assert (await harness.client.get(VERIFY, headers=headers)).status_code == 200


@pytest.mark.parametrize(
    "sent",
    [{}, {"X-Original-URI": "/api/things"}, {"X-Original-Method": "GET"}],
)
async def test_the_upstream_method_and_uri_are_required(
    harness: Harness, user_token: str, sent: dict[str, str]
) -> None:
    """Never guessed: verify's own method is the proxy's (a GET), not the client's. A
    caller without credentials still gets 401 first."""
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=UPSTREAM)
    headers = {"Authorization": f"Bearer {created['key']}", **sent}
    response = await harness.client.post(VERIFY, headers=headers)
    assert response.status_code == 400
    assert response.headers["X-Auth-Error"] == "validation_failed"
    assert "required" in response.json()["message"]
    assert "X-Original-URI" in response.json()["message"]
    assert (await harness.client.post(VERIFY, headers=sent)).status_code == 401


@pytest.mark.parametrize("method", ["G E T", "GET1", "X" * 21, "ÉTÉ"])
async def test_a_malformed_original_method_is_a_400(
    harness: Harness, user_token: str, method: str
) -> None:
    created = await harness.create_key(user_token, allowedIp=UPSTREAM)
    headers = proxied(created["key"])
    headers["X-Original-Method"] = method
    response = await harness.client.get(
        VERIFY, headers=[(k.encode(), v.encode("utf-8")) for k, v in headers.items()]
    )
    assert response.status_code == 400
    assert response.json()["code"] == "validation_failed"


async def test_unknown_scopes_are_refused_when_creating_keys(
    harness: Harness, user_token: str
) -> None:
    body = {"name": "x", "expiresAt": expiry(harness.clock), "scopes": ["billing:read"]}
    response = await harness.client.post(KEYS, json=body, headers=bearer(user_token))
    assert response.status_code == 422
    assert "billing:read" in response.json()["message"]
    assert "orders:write" in response.json()["message"]
    body["scopes"] = ["Not A Scope"]
    response = await harness.client.post(KEYS, json=body, headers=bearer(user_token))
    assert response.status_code == 422


async def test_unmatched_paths_can_be_denied(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    settings = test_settings(
        tmp_path / "data",
        database_url=database_url,
        forward_auth_rules=[ForwardAuthRuleSetting(path_prefix="/api/")],
        forward_auth_unmatched="deny",
    )
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services = app.state.services
        await services.users.ensure_initial_admin(ADMIN_PASSWORD)
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            login = {"username": "admin", "password": ADMIN_PASSWORD}
            token = (await client.post("/api/authenticate", json=login)).json()["id_token"]
            inside = await client.get(VERIFY, headers=proxied(token, uri="/api/x"))
            outside = await client.get(VERIFY, headers=proxied(token, uri="/other"))
    assert inside.status_code == 200
    assert outside.status_code == 403
    assert outside.headers["X-Auth-Error"] == "forbidden"


# -- logs ----------------------------------------------------------------------------------------


async def test_usage_and_audit_record_the_upstream_request(
    harness: Harness, user_token: str
) -> None:
    """The usage log shows what the caller did upstream (method, path without the
    query), not the verify call; refusals are audited with the upstream path."""
    created = await harness.create_key(
        user_token, scopes=["read", "orders:write"], allowedIp=UPSTREAM
    )
    headers = proxied(created["key"], uri="/orders/17?token=secret-in-query", method="POST")
    assert (await harness.client.get(VERIFY, headers=headers)).status_code == 200
    refused = proxied(created["key"], uri="/api/things", method="DELETE")
    assert (await harness.client.get(VERIFY, headers=refused)).status_code == 403
    await harness.services.usage.flush()
    await harness.services.audit.flush()

    response = await harness.client.get(
        f"{KEYS}/usage", params={"apiKeyId": created["id"]}, headers=bearer(user_token)
    )
    records = sorted(response.json(), key=lambda r: r["id"])
    assert [(r["requestMethod"], r["endpoint"], r["responseCode"]) for r in records] == [
        ("POST", "/orders/17", 200),
        ("DELETE", "/api/things", 403),
    ]
    assert records[0]["ipAddress"] == "198.51.100.7"
    assert records[1]["errorMessage"] == "scope_required"
    assert "secret-in-query" not in response.text

    await harness.create_user("auditor", USER_PASSWORD, admin=True)
    auditor = await harness.login("auditor", USER_PASSWORD)
    events = await harness.client.get(
        "/api/audit-events", params={"type": "API_KEY_ACCESS_FAILURE"}, headers=bearer(auditor)
    )
    assert events.status_code == 200, events.text
    paths = [event.get("path") for event in events.json()]
    assert "/api/things" in paths


async def test_the_openapi_document_describes_verify(harness: Harness) -> None:
    spec = (await harness.client.get("/v3/api-docs")).json()
    operation = spec["paths"][VERIFY]["get"]
    assert set(spec["paths"][VERIFY]) == {"get"}
    assert "X-Auth-User" in operation["responses"]["200"]["headers"]
    assert {"401", "403", "429"} <= set(operation["responses"])
    assert {"bearerAuth": []} in operation["security"]


def test_the_traefik_example_forwards_every_identity_header() -> None:
    """examples/traefik/dynamic.toml passes on exactly the headers verify answers with,
    and strips the caller's credentials (and the underscore spellings of the identity
    headers, which CGI-style upstreams read as the same) before the upstream."""
    example = Path(__file__).parents[2] / "examples" / "traefik" / "dynamic.toml"
    middlewares = tomllib.loads(example.read_text())["http"]["middlewares"]
    forward = middlewares["authgate"]["forwardAuth"]
    assert forward["address"].endswith(VERIFY)
    assert forward["trustForwardHeader"] is False
    assert set(forward["authResponseHeaders"]) == set(IDENTITY_HEADERS)
    # An allow-list of the client's headers: none that describes the request under check
    # (Traefik sets its own X-Forwarded-*), none of the identity headers.
    allowed = {name.lower() for name in forward["authRequestHeaders"]}
    assert {"authorization", "utm-api-key"} <= allowed
    assert not allowed & {"x-original-uri", "x-original-method", "x-forwarded-uri"}
    assert not allowed & {name.lower() for name in IDENTITY_HEADERS}
    assert "AUTHGATE_FORWARD_AUTH_PROXY=traefik" in example.read_text()
    stripped = middlewares["strip-credentials"]["headers"]["customRequestHeaders"]
    assert set(stripped.values()) == {""}  # an empty value removes the header
    # Every spelling with a "_" (Traefik removes no header by pattern), mixed ones too.
    underscored = set()
    for name in IDENTITY_HEADERS:
        words = name.split("-")
        for separators in itertools.product("-_", repeat=len(words) - 1):
            spelling = words[0] + "".join(s + w for s, w in zip(separators, words[1:], strict=True))
            if "_" in spelling:
                underscored.add(spelling)
    overrides = {"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}
    overrides |= {"X-Original-URL", "X-Rewrite-URL"}
    # The client's own descriptions of the request (attack review).
    described = {"X-Original-URI", "X-Original-Method", "X-Forwarded-Uri", "X-Forwarded-Method"}
    assert set(stripped) == {
        "Authorization",
        "Utm-Api-Key",
        *underscored,
        *overrides,
        *described,
    }


def test_the_nginx_example_forwards_every_identity_header() -> None:
    example = Path(__file__).parents[2] / "examples" / "nginx" / "authgate-forward-auth.conf"
    text = example.read_text()
    # Both pairs are overwritten with the real request: a client's own never get through.
    for header, value in (
        ("X-Original-URI", "$request_uri"),
        ("X-Original-Method", "$request_method"),
        ("X-Forwarded-Uri", "$request_uri"),
        ("X-Forwarded-Method", "$request_method"),
    ):
        assert f"proxy_set_header {header} {value};" in text, header
        # ...and the client's own never reach the upstream (attack review).
        assert f'proxy_set_header {header} "";' in text, header
    assert "protected_api" not in text  # "_" in the Host header: Tomcat answers 400
    for header in IDENTITY_HEADERS:
        variable = "$upstream_http_" + header.lower().replace("-", "_")
        assert variable in text, header
        assert f"proxy_set_header {header} " in text, header


# -- the request under check comes only from the proxy (issue 10, item 1) ---------------------


async def refusals(harness: Harness) -> list[dict[str, Any]]:
    """The FORWARD_AUTH_REFUSED records of the audit trail, oldest first."""
    await harness.services.audit.flush()
    await harness.create_user("auditor", USER_PASSWORD, admin=True)
    auditor = await harness.login("auditor", USER_PASSWORD)
    events = await harness.client.get(
        "/api/audit-events",
        params={"type": "FORWARD_AUTH_REFUSED", "sort": "id,asc"},
        headers=bearer(auditor),
    )
    assert events.status_code == 200, events.text
    records: list[dict[str, Any]] = events.json()
    return records


@pytest.mark.parametrize("proxy", ["traefik", "caddy"])
async def test_a_client_cannot_choose_the_checked_path_behind_traefik_or_caddy(
    harness: Harness, user_token: str
) -> None:
    """The reproduction: alice's JWT, real request GET /admin/x (the proxy sends
    X-Forwarded-Uri), the client adds X-Original-URI: /public/x. It used to pass with
    X-Auth-User: alice; now it is refused as ambiguous and audited as alice's attempt."""
    headers = {
        "Authorization": f"Bearer {user_token}",
        "X-Forwarded-Method": "GET",
        "X-Forwarded-Uri": "/admin/x?page=1",
        "X-Forwarded-For": "198.51.100.7",
        "X-Original-URI": "/public/x",  # the client's own, copied on by the proxy
    }
    response = await harness.client.get(VERIFY, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["X-Auth-Error"] == "ambiguous_upstream_request"
    assert response.json()["code"] == "ambiguous_upstream_request"
    assert "X-Auth-User" not in response.headers
    del headers["X-Original-URI"]
    honest = await harness.client.get(VERIFY, headers=headers)
    assert honest.status_code == 403  # /admin/ needs ROLE_ADMIN
    assert honest.headers["X-Auth-Error"] == "forbidden"

    (record,) = await refusals(harness)
    assert record["outcome"] == "failure"
    assert record["reason"] == "conflicting_upstream_header"
    assert record["details"] == {"header": "X-Original-URI"}
    assert record["path"] == "/admin/x"  # what the proxy said, without the query
    assert record["ipAddress"] == "198.51.100.7"
    assert record["actor"] == "alice"


@pytest.mark.parametrize(
    ("injected", "header"),
    [
        ({"X-Forwarded-Uri": "/public/x"}, "X-Forwarded-Uri"),
        ({"X-Forwarded-Method": "GET"}, "X-Forwarded-Method"),  # the real one is a DELETE
    ],
)
async def test_behind_nginx_only_the_original_pair_is_read(
    harness: Harness, user_token: str, injected: dict[str, str], header: str
) -> None:
    """The default proxy (nginx) reads X-Original-*; a disagreeing X-Forwarded-* header,
    which an nginx configured otherwise than the example would pass on from the client,
    is refused."""
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=UPSTREAM)
    headers = {**proxied(created["key"], uri="/admin/x", method="DELETE"), **injected}
    response = await harness.client.get(VERIFY, headers=headers)
    assert response.status_code == 400
    assert response.headers["X-Auth-Error"] == "ambiguous_upstream_request"
    (record,) = await refusals(harness)
    assert record["details"] == {"header": header}
    assert record["apiKeyId"] == created["id"]  # whose request it was
    await harness.services.usage.flush()
    usage = await harness.client.get(
        f"{KEYS}/usage", params={"apiKeyId": created["id"]}, headers=bearer(user_token)
    )
    assert [(r["responseCode"], r["errorMessage"]) for r in usage.json()] == [
        (400, "conflicting_upstream_header")
    ]


async def test_the_same_values_in_both_pairs_are_accepted(
    harness: Harness, user_token: str
) -> None:
    """nginx's example (and the guard) set both pairs alike."""
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=UPSTREAM)
    headers = proxied(created["key"], uri="/api/things?x=1", method="GET")
    headers.update({"X-Forwarded-Uri": "/api/things?x=1", "X-Forwarded-Method": "get"})
    assert (await harness.client.get(VERIFY, headers=headers)).status_code == 200


async def test_traefik_headers_are_refused_while_nginx_is_configured(
    harness: Harness, user_token: str
) -> None:
    """The default is nginx: a Traefik or Caddy in front, not configured, gets a 400 that
    says what to set, never a decision on the client's headers."""
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=UPSTREAM)
    headers = {
        "Authorization": f"Bearer {created['key']}",
        "X-Forwarded-Method": "GET",
        "X-Forwarded-Uri": "/api/things",
    }
    response = await harness.client.get(VERIFY, headers=headers)
    assert response.status_code == 400
    assert response.headers["X-Auth-Error"] == "ambiguous_upstream_request"
    assert "AUTHGATE_FORWARD_AUTH_PROXY=nginx" in response.json()["message"]


async def test_a_duplicated_uri_header_is_refused(harness: Harness, user_token: str) -> None:
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=UPSTREAM)
    headers = [
        (b"authorization", f"Bearer {created['key']}".encode()),
        (b"x-original-method", b"GET"),
        (b"x-original-uri", b"/api/things"),
        (b"x-original-uri", b"/admin/x"),
    ]
    response = await harness.client.get(VERIFY, headers=headers)
    assert response.status_code == 400
    assert response.headers["X-Auth-Error"] == "ambiguous_upstream_request"
    (record,) = await refusals(harness)
    assert record["reason"] == "duplicate_upstream_header"


# -- one canonical path (issue 10, item 2) ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "uri", "error"),
    [
        ("GET", "/ADMIN/x", "forbidden"),
        ("GET", "/Admin/x", "forbidden"),
        ("GET", "/%41dmin/x", "forbidden"),
        ("GET", "/INTERNAL/x", "forbidden"),
        ("GET", "/%C4%B0nternal/x", "forbidden"),  # dotted capital I: /internal to Java
        ("POST", "/Orders/1", "insufficient_scope"),
        ("POST", "/%6frders/1", "insufficient_scope"),
    ],
)
async def test_every_spelling_of_a_protected_path_meets_its_rule(
    harness: Harness, user_token: str, method: str, uri: str, error: str
) -> None:
    """Spellings every server reads as the protected path, against verify: a key with
    read and write (not orders:write) of a ROLE_USER is refused by that path's rule."""
    created = await harness.create_key(user_token, scopes=["read", "write"], allowedIp=UPSTREAM)
    response = await harness.client.get(
        VERIFY, headers=proxied(created["key"], uri=uri, method=method)
    )
    assert response.status_code == 403, response.text
    assert response.headers["X-Auth-Error"] == error


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("/public/..%2fadmin/x", "path_encoded_separator"),
        ("/public/%252e%252e/admin/x", "path_double_encoded"),
        ("/public/..%5cadmin/x", "path_encoded_separator"),
        ("/public\\..\\admin/x", "path_backslash"),
        ("/admin%00/x", "path_control_character"),
        ("/../admin/x", "path_dot_segment"),
        ("/public/%2e%2e/%2e%2e/admin", "path_dot_segment"),
        # Servlet containers read these as /admin/x, other servers as /public/... (or as
        # what is mounted at /admin, for /admin/..;/public): refused, not matched.
        ("/public/..;/admin/x", "path_parameter"),
        ("/admin/..;/public/x", "path_parameter"),
        ("/admin/%2e%2e/public/x", "path_dot_segment"),
        ("/admin;jsessionid=abc/users", "path_parameter"),
        ("/admin/./x", "path_dot_segment"),
        ("//admin/x", "path_empty_segment"),
        ("/admin./x", "path_trailing_dot"),
    ],
)
async def test_an_ambiguous_path_is_refused_and_audited(
    harness: Harness, admin_token: str, uri: str, reason: str
) -> None:
    """Refused whoever asks, even an admin: 400 ambiguous_upstream_path in the body and
    X-Auth-Error, recorded with its reason and the caller. Without valid credentials
    the answer is 401, as everywhere."""
    response = await harness.client.get(VERIFY, headers=proxied(admin_token, uri=uri))
    assert response.status_code == 400, response.text
    assert response.headers["X-Auth-Error"] == "ambiguous_upstream_path"
    assert response.json()["code"] == "ambiguous_upstream_path"
    assert "X-Auth-User" not in response.headers
    anonymous = await harness.client.get(VERIFY, headers=proxied(uri=uri))
    assert anonymous.status_code == 401
    assert anonymous.headers["X-Auth-Error"] == "credentials_missing"
    (record,) = await refusals(harness)
    assert record["reason"] == reason
    assert record["actor"] == "admin"


@pytest.mark.parametrize(("method", "uri"), [("get", "/api/things"), ("Post", "/orders/1")])
async def test_a_method_not_in_upper_case_is_refused_and_audited(
    harness: Harness, user_token: str, method: str, uri: str
) -> None:
    """Attack review: ``get`` was taken for the safe GET (a read key passed), but Caddy
    and Traefik pass it on unchanged and Go or Starlette upstreams treat it as another
    method. Upstreams disagree on it, so it is refused as ambiguous."""
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=UPSTREAM)
    response = await harness.client.get(
        VERIFY, headers=proxied(created["key"], uri=uri, method=method)
    )
    assert response.status_code == 400, response.text
    assert response.headers["X-Auth-Error"] == "ambiguous_upstream_request"
    assert "upper case" in response.json()["message"]
    upper = await harness.client.get(
        VERIFY, headers=proxied(created["key"], uri="/api/things", method="GET")
    )
    assert upper.status_code == 200
    (record,) = await refusals(harness)
    assert record["reason"] == "method_not_upper_case"
    assert record["details"] == {"header": "X-Original-Method"}


# -- method overrides (attack review) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "extra"),
    [
        ("/orders/1?_method=DELETE", {}),
        ("/orders/1?page=1&_METHOD=delete", {}),
        ("/orders/1", {"X-HTTP-Method-Override": "DELETE"}),
        ("/orders/1", {"X-HTTP-Method": "DELETE"}),
        ("/orders/1", {"X-Method-Override": "DELETE"}),
    ],
)
async def test_a_method_override_must_be_allowed_as_well(
    harness: Harness, user_token: str, uri: str, extra: dict[str, str]
) -> None:
    """The reproduction: ``POST /orders/1?_method=DELETE`` passed on the POST rule
    (orders:write) and Laravel ran a DELETE, which needs write here. Both must pass."""
    poster = await harness.create_key(user_token, scopes=["orders:write"], allowedIp=UPSTREAM)
    post = await harness.client.get(
        VERIFY, headers=proxied(poster["key"], uri="/orders/1", method="POST")
    )
    assert post.status_code == 200
    headers = {**proxied(poster["key"], uri=uri, method="POST"), **extra}
    overridden = await harness.client.get(VERIFY, headers=headers)
    assert overridden.status_code == 403, overridden.text
    assert overridden.headers["X-Auth-Error"] == "insufficient_scope"
    both = await harness.create_key(
        user_token, name="both", scopes=["orders:write", "write"], allowedIp=UPSTREAM
    )
    headers = {**proxied(both["key"], uri=uri, method="POST"), **extra}
    assert (await harness.client.get(VERIFY, headers=headers)).status_code == 200


async def test_a_read_key_cannot_turn_a_get_into_a_delete(
    harness: Harness, user_token: str
) -> None:
    """A GET is read-only for a key; with ``_method=DELETE`` it is held to DELETE's rule
    too (write under /api/), whichever method the upstream honours the override on."""
    reader = await harness.create_key(user_token, scopes=["read"], allowedIp=UPSTREAM)
    headers = proxied(reader["key"], uri="/api/things/1?_method=DELETE", method="GET")
    response = await harness.client.get(VERIFY, headers=headers)
    assert response.status_code == 403
    assert response.headers["X-Auth-Error"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("uri", "extra", "header"),
    [
        ("/orders/1?_method=", {}, "X-Original-URI"),
        ("/orders/1?_method=DEL%20ETE", {}, "X-Original-URI"),
        ("/orders/1", {"X-HTTP-Method-Override": "DELETE, PUT"}, "X-HTTP-Method-Override"),
    ],
)
async def test_a_method_override_naming_no_method_is_refused_and_audited(
    harness: Harness, admin_token: str, uri: str, extra: dict[str, str], header: str
) -> None:
    """Symfony refuses such a request, other frameworks run the method sent: refused
    (400) whoever asks, and recorded with the header that carried it."""
    headers = {**proxied(admin_token, uri=uri, method="POST"), **extra}
    response = await harness.client.get(VERIFY, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["X-Auth-Error"] == "ambiguous_upstream_request"
    (record,) = await refusals(harness)
    assert record["reason"] == "invalid_method_override"
    assert record["details"] == {"header": header}


async def test_the_usage_log_records_the_canonical_path(harness: Harness, user_token: str) -> None:
    created = await harness.create_key(user_token, scopes=["read"], allowedIp=UPSTREAM)
    uri = "/public/%54hings?q=secret"
    assert (
        await harness.client.get(VERIFY, headers=proxied(created["key"], uri=uri))
    ).status_code == 200
    await harness.services.usage.flush()
    response = await harness.client.get(
        f"{KEYS}/usage", params={"apiKeyId": created["id"]}, headers=bearer(user_token)
    )
    assert [record["endpoint"] for record in response.json()] == ["/public/Things"]


def test_the_caddy_example_copies_every_identity_header() -> None:
    example = Path(__file__).parents[2] / "examples" / "caddy" / "Caddyfile"
    text = example.read_text()
    lines = [line.strip() for line in text.splitlines()]
    copied = next(line for line in lines if line.startswith("copy_headers")).split()[1:]
    assert set(copied) == set(IDENTITY_HEADERS)
    assert "request_header -X-Auth-*" in text
    assert "request_header -*_*" in text  # X_Auth_User, X-Auth_User: HTTP_X_AUTH_USER
    assert "header_up -Authorization" in text
    assert "header_up -Utm-Api-Key" in text
    assert "AUTHGATE_FORWARD_AUTH_PROXY=caddy" in text
    # The client's own descriptions of the request are removed for the upstream, after
    # forward_auth (which must still see, and refuse, a disagreeing X-Original-*), one
    # header per directive: Caddy reads `request_header -A -B` as "remove A".
    after = lines[next(i for i, line in enumerate(lines) if line.startswith("forward_auth")) :]
    for header in ("X-Forwarded-Method", "X-Forwarded-Uri", "X-Original-Method", "X-Original-URI"):
        assert f"request_header -{header}" in after, header
    assert not [
        line for line in lines if line.startswith("request_header -") and line.count(" ") > 1
    ]
