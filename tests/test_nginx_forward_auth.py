"""Real nginx protects a sample upstream with authgate (``auth_request``).

nginx (Debian's package), `authgate serve` and a small upstream run as processes on
loopback ports; nginx uses the configuration documented in the README
(``examples/nginx/authgate-forward-auth.conf``) with only the ports changed. Skipped
where nginx is not installed (CI installs it). ``test_tomcat_forward_auth.py`` runs the
same configuration in front of a real servlet container.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx2
import pytest

from tests.processes import Process, free_port
from tests.proxies import (
    OVERRIDES,
    REQUEST_DESCRIPTION,
    Stack,
    echo_upstream,
    in_,
    needs_nginx,
    raw_request,
    start_authgate,
    start_nginx,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow, needs_nginx]


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    with echo_upstream() as port:
        yield port


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, upstream: int) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("nginx-forward-auth")
    authgate, admin_token, user_token = start_authgate(
        workdir / "authgate",
        {
            "AUTHGATE_FORWARD_AUTH_RULES": json.dumps(
                [
                    {"path_prefix": "/api/", "methods": ["GET", "HEAD"], "scopes": ["read"]},
                    {"path_prefix": "/api/", "scopes": ["write"]},
                    {"path_prefix": "/admin/", "roles": ["ROLE_ADMIN"]},
                ]
            ),
        },
    )
    nginx: Process | None = None
    try:
        nginx, port = start_nginx(
            workdir / "nginx", authgate_port=authgate.port, upstream_port=upstream
        )
        yield Stack(authgate, port, admin_token, user_token)
    finally:
        if nginx is not None:
            nginx.stop()
        authgate.stop()


# -- allowed ---------------------------------------------------------------------------------


def test_a_valid_key_reaches_the_upstream_with_identity_headers(stack: Stack) -> None:
    key = stack.create_key("reader", scopes=["read"])
    response = stack.call(
        "GET",
        "/api/orders?page=2",
        headers={"Authorization": f"Bearer {key}", "X-Auth-User": "spoofed-admin"},
    )
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["path"] == "/api/orders?page=2"
    headers = seen["headers"]
    assert headers["x-auth-user"] == "admin"  # not the client's spoofed value
    assert headers["x-auth-method"] == "api_key"
    assert headers["x-auth-key-id"] == key[4:16]
    assert headers["x-auth-scopes"] == "read"
    assert headers["x-auth-roles"] == "ROLE_USER"  # an admin's key without the admin scope
    assert key not in json.dumps(headers)  # the secret stays with nginx
    assert "authorization" not in headers or headers["authorization"] == ""


def test_a_user_token_and_the_utmstack_header_pass_too(stack: Stack) -> None:
    by_token = stack.call(
        "DELETE", "/admin/cache", headers={"Authorization": f"Bearer {stack.admin_token}"}
    )
    assert by_token.status_code == 200, by_token.text
    assert by_token.json()["headers"]["x-auth-method"] == "jwt"
    assert by_token.json()["headers"]["x-auth-roles"] == "ROLE_ADMIN,ROLE_USER"

    key = stack.create_key("utm-header", scopes=["read", "write"])
    by_header = stack.call("PUT", "/api/orders/1", headers={"Utm-Api-Key": key}, json={"n": 1})
    assert by_header.status_code == 200, by_header.text
    assert by_header.json()["body"] == '{"n":1}'  # the body reaches the upstream intact


def test_forged_identity_spellings_and_connection_tokens_never_reach_the_upstream(
    stack: Stack,
) -> None:
    """nginx drops a client's header with a ``_`` in its name (``underscores_in_headers``
    off, its default), which CGI-style upstreams would read as ``HTTP_X_AUTH_USER``, and
    never removes the headers a client's ``Connection`` names (Caddy does): a scoped
    key's request reaches the upstream with authgate's identity, scopes included."""
    key = stack.create_key("nginx-hop", token=stack.user_token, scopes=["read"])
    response = raw_request(
        stack.proxy_port,
        "GET",
        "/api/orders",
        {
            "Authorization": f"Bearer {key}",
            "Connection": "X-Auth-User, X-Auth-Roles, X-Auth-Scopes, X-Auth-Key-Id, X-Auth-Method",
            "X-Auth_User": "admin",
            "X_Auth-Roles": "ROLE_ADMIN",
            "x_auth_method": "jwt",
        },
    )
    assert response.status == 200, response.body
    seen = json.loads(response.body)
    assert not [name for name in seen["headers"] if "_" in name]
    environ = seen["environ"]
    assert environ["HTTP_X_AUTH_USER"] == "alice"
    assert environ["HTTP_X_AUTH_ROLES"] == "ROLE_USER"
    assert environ["HTTP_X_AUTH_METHOD"] == "api_key"
    assert environ["HTTP_X_AUTH_SCOPES"] == "read"
    assert environ["HTTP_X_AUTH_KEY_ID"] == key[4:16]


def test_the_clients_own_request_description_never_reaches_the_upstream(stack: Stack) -> None:
    """A client's X-Forwarded-Method/-Uri and X-Original-Method/-URI (the latter pair
    agreeing with the request, so that authgate lets it through) are removed: an
    upstream reading them would act on what the client wrote, not what was checked."""
    key = stack.create_key("nginx-described", scopes=["read"])
    response = stack.call(
        "GET", "/api/orders", headers={"Authorization": f"Bearer {key}", **REQUEST_DESCRIPTION}
    )
    assert response.status_code == 200, response.text
    headers = response.json()["headers"]
    assert not {name.lower() for name in REQUEST_DESCRIPTION} & set(headers)


def test_method_and_path_override_headers_never_reach_the_upstream(stack: Stack) -> None:
    """Frameworks that honour them would route another method or path than the one
    authgate checked (a read key's GET run as a DELETE). nginx passes them on to the
    auth request, so authgate holds the request to the override's method as well: a
    read key is refused, one that may also DELETE passes, without the headers."""
    reader = stack.create_key("nginx-override", scopes=["read"])
    response = stack.call(
        "GET", "/api/orders", headers={"Authorization": f"Bearer {reader}", **OVERRIDES}
    )
    assert response.status_code == 403, response.text
    assert response.json() == {"status": 403, "code": "insufficient_scope"}
    writer = stack.create_key("nginx-override-writer", scopes=["read", "write"])
    response = stack.call(
        "GET", "/api/orders", headers={"Authorization": f"Bearer {writer}", **OVERRIDES}
    )
    assert response.status_code == 200, response.text
    headers = response.json()["headers"]
    assert not {name.lower() for name in OVERRIDES} & set(headers)


def test_a_method_override_in_the_query_is_held_to_the_rules_of_both_methods(
    stack: Stack,
) -> None:
    """``POST /api/orders?_method=DELETE`` reaches the upstream as sent (Laravel would
    run a DELETE): a key is let through only if both methods are allowed."""
    reader = stack.create_key("nginx-query-override", scopes=["read"])
    auth = {"Authorization": f"Bearer {reader}"}
    assert stack.call("GET", "/api/orders?page=1", headers=auth).status_code == 200
    refused = stack.call("GET", "/api/orders?_method=DELETE", headers=auth)
    assert refused.status_code == 403
    invalid = stack.call("GET", "/api/orders?_method=", headers=auth)
    assert invalid.status_code == 400
    assert invalid.json() == {"status": 400, "code": "ambiguous_upstream_request"}


# -- refused -----------------------------------------------------------------------------------


def test_missing_and_bad_credentials_are_refused_by_nginx_with_401(stack: Stack) -> None:
    missing = stack.call("GET", "/api/orders")
    assert missing.status_code == 401
    assert missing.json() == {"status": 401, "code": "credentials_missing"}
    # authgate's own challenge, passed on by auth_request; the example adds no second
    # one (it did: two WWW-Authenticate headers, the README-driven review).
    assert missing.headers.get_list("WWW-Authenticate") == ['Bearer realm="authgate"']

    key = stack.create_key("tampered")
    bad = stack.call("GET", "/api/orders", headers={"Authorization": f"Bearer {key[:-6]}AAAAAA"})
    assert bad.status_code == 401
    assert bad.json()["code"] == "invalid_api_key"
    (challenge,) = bad.headers.get_list("WWW-Authenticate")
    assert challenge.startswith('Bearer realm="authgate", error="invalid_token"')


def test_revoked_keys_are_refused_at_once(stack: Stack) -> None:
    key = stack.create_key("to-revoke")
    headers = {"Authorization": f"Bearer {key}"}
    assert stack.call("GET", "/api/orders", headers=headers).status_code == 200
    stack.revoke(key)
    refused = stack.call("GET", "/api/orders", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_api_key"


def test_expired_keys_are_refused(stack: Stack) -> None:
    key = stack.create_key("short-lived", expiresAt=in_(timedelta(seconds=2)))
    headers = {"Authorization": f"Bearer {key}"}
    assert stack.call("GET", "/api/orders", headers=headers).status_code == 200
    time.sleep(2.2)
    refused = stack.call("GET", "/api/orders", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["code"] == "api_key_expired"


def test_ip_denied_keys_are_refused_with_403(stack: Stack) -> None:
    """nginx forwards the client's address (127.0.0.1); the key allows another network."""
    key = stack.create_key("elsewhere", allowedIp=["192.0.2.0/24"])
    refused = stack.call("GET", "/api/orders", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 403
    assert refused.json()["code"] == "ip_not_allowed"


def test_scope_and_role_rules_are_enforced_through_nginx(stack: Stack) -> None:
    key = stack.create_key("read-only", scopes=["read"])
    headers = {"Authorization": f"Bearer {key}"}
    assert stack.call("GET", "/api/orders", headers=headers).status_code == 200
    write = stack.call("POST", "/api/orders", headers=headers, json={})
    assert write.status_code == 403
    assert write.json()["code"] == "insufficient_scope"
    admin = stack.call("GET", "/admin/users", headers=headers)
    assert admin.status_code == 403
    assert admin.json()["code"] == "forbidden"
    sneaky = stack.call("GET", "/api/../admin/users", headers=headers)
    assert sneaky.status_code in (400, 403)  # nginx itself or authgate's rules


def test_rate_limited_keys_get_429_and_retry_after_from_nginx(stack: Stack) -> None:
    key = stack.create_key("limited", rateLimit="1/minute")
    headers = {"Authorization": f"Bearer {key}"}
    assert stack.call("GET", "/api/orders", headers=headers).status_code == 200
    limited = stack.call("GET", "/api/orders", headers=headers)
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1


def test_a_client_cannot_choose_the_checked_request(stack: Stack) -> None:
    """Issue 10, item 1, through nginx: alice asks for /admin/x and adds headers naming
    /public/x (both pairs) and a GET for a DELETE. nginx overwrites both pairs with the
    real request, so the /admin/ rule decides: 403, and nothing reaches the upstream."""
    forged = {
        "Authorization": f"Bearer {stack.user_token}",
        "X-Original-URI": "/public/x",
        "X-Forwarded-Uri": "/public/x",
        "X-Original-Method": "GET",
        "X-Forwarded-Method": "GET",
    }
    refused = stack.call("DELETE", "/admin/x", headers=forged)
    assert refused.status_code == 403
    assert refused.json() == {"status": 403, "code": "forbidden"}
    key = stack.create_key("reader-forging", scopes=["read"])
    forged["Authorization"] = f"Bearer {key}"
    write = stack.call("DELETE", "/api/orders/1", headers=forged)
    assert write.status_code == 403
    assert write.json()["code"] == "insufficient_scope"


@pytest.mark.parametrize(
    "target", ["/api/%252e%252e/admin/users", "/api/..%2fadmin/users", "/api/..%5cadmin/users"]
)
def test_ambiguous_paths_are_refused_by_nginx_with_authgates_400(stack: Stack, target: str) -> None:
    """The raw target goes to authgate as nginx received it; authgate's 400 and code come
    back through nginx's error page, and nothing reaches the upstream."""
    key = stack.create_key(f"ambiguous-{uuid.uuid4().hex[:8]}", scopes=["read"])
    response = raw_request(stack.proxy_port, "GET", target, {"Authorization": f"Bearer {key}"})
    assert response.status == 400, response.body
    assert json.loads(response.body) == {"status": 400, "code": "ambiguous_upstream_path"}


def test_nginx_answers_503_when_authgate_is_unreachable(tmp_path: Path, upstream: int) -> None:
    nginx, port = start_nginx(tmp_path, authgate_port=free_port(), upstream_port=upstream)
    try:
        response = httpx2.get(f"http://127.0.0.1:{port}/api/orders", timeout=10.0)
    finally:
        nginx.stop()
    assert response.status_code == 503
    assert response.json()["code"] == "authgate_unavailable"
