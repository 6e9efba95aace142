"""nginx with authgate in front of a real servlet container (Tomcat 10.1).

Issue 10, item 2, end to end: servlet containers strip ``;params`` from every path
segment before they resolve ``..``, so ``/public/..;/admin/x`` is ``/admin/x`` to Tomcat.
Here Debian's ``tomcat10`` (default connector settings) runs as a plain process from a
private CATALINA_BASE with a small JSP app whose areas (``/admin/*``, ``/public/*``,
``/api/orders``, ``/internal/*``) answer a marker naming the area; nginx runs the
documented example configuration; requests go out as raw request lines, so every
variant reaches nginx exactly as written. No refused variant may reach a marker.

The authgate stack runs twice, with the admin rule written ``/admin/`` and ``/admin``,
and ``forward_auth_unmatched = "deny"`` (which did not help before: the variants
matched ``/public/``). Skipped where nginx, tomcat10 or java are missing (CI installs
them).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.processes import Process
from tests.proxies import (
    RawResponse,
    Stack,
    marker,
    needs_nginx,
    needs_tomcat,
    raw_request,
    start_authgate,
    start_nginx,
    start_tomcat,
)

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow, needs_nginx, needs_tomcat]


@pytest.fixture(scope="module")
def tomcat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    process, port = start_tomcat(tmp_path_factory.mktemp("tomcat-base"))
    try:
        # Compile the JSP once, straight from Tomcat (no proxy in between).
        warm = raw_request(port, "GET", "/public/warm-up", {})
        assert marker("public") in warm.body, process.diagnostics()
        yield port
    finally:
        process.stop()


@dataclass
class TomcatStack:
    stack: Stack
    read_write_key: str  # alice's key with read and write, without orders:write

    def get(self, target: str, *, token: str | None = None) -> RawResponse:
        credential = token or self.stack.user_token
        return self.stack.raw("GET", target, {"Authorization": f"Bearer {credential}"})


@pytest.fixture(scope="module", params=["/admin/", "/admin"], ids=["admin-slash", "admin"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tomcat: int
) -> Iterator[TomcatStack]:
    workdir = tmp_path_factory.mktemp("tomcat-forward-auth")
    authgate, admin_token, user_token = start_authgate(
        workdir / "authgate",
        {
            "AUTHGATE_FORWARD_AUTH_UNMATCHED": "deny",
            "AUTHGATE_API_KEY_EXTRA_SCOPES": "orders:write",
            "AUTHGATE_FORWARD_AUTH_RULES": json.dumps(
                [
                    {"path_prefix": "/public/"},
                    {"path_prefix": request.param, "roles": ["ROLE_ADMIN"]},
                    {"path_prefix": "/internal", "allow": False},
                    {"path_prefix": "/api/orders", "methods": ["GET", "HEAD"]},
                    {
                        "path_prefix": "/api/orders",
                        "methods": ["POST", "PUT", "DELETE"],
                        "scopes": ["orders:write"],
                    },
                ]
            ),
        },
    )
    nginx: Process | None = None
    try:
        nginx, port = start_nginx(
            workdir / "nginx", authgate_port=authgate.port, upstream_port=tomcat
        )
        stack = Stack(authgate, port, admin_token, user_token)
        key = stack.create_key(f"rw-{uuid.uuid4().hex[:8]}", token=user_token)
        yield TomcatStack(stack, key)
    finally:
        if nginx is not None:
            nginx.stop()
        authgate.stop()


# -- what passes: the setup works, so a missing marker below means a refusal --------------------


def test_the_areas_are_served_to_those_allowed(stack: TomcatStack) -> None:
    admin = stack.get("/admin/x", token=stack.stack.admin_token)
    assert admin.status == 200, admin.body
    assert marker("admin") in admin.body
    assert "user=admin" in admin.body  # nginx passed authgate's identity on to Tomcat
    public = stack.get("/public/x")
    assert public.status == 200, public.body
    assert marker("public") in public.body
    assert "user=alice" in public.body

    writer = stack.stack.create_key(
        f"orders-{uuid.uuid4().hex[:8]}", token=stack.stack.user_token, scopes=["orders:write"]
    )
    order = stack.stack.raw("POST", "/api/orders", {"Authorization": f"Bearer {writer}"})
    assert order.status == 200, order.body
    assert f"{marker('orders')} method=POST" in order.body


def test_the_admin_area_is_refused_to_a_user(stack: TomcatStack) -> None:
    response = stack.get("/admin/x")
    assert response.status == 403
    assert marker("admin") not in response.body


# -- the variants of issue 10 ----------------------------------------------------------------

ADMIN_VARIANTS = [
    "/public/..;/admin/x",
    "/public/%2e%2e;/admin/x",
    "/public/..;a=b/admin/x",
    "/;/admin/x",
    "/x/..;/admin/x",
    "/admin;x/secret",
    "/admin;jsessionid=abc/users",
    "/public/..;/ADMIN/x",
    "/public/%2E%2E;/admin/x",
    "/public/.;/..;/admin/x",
    "/public/%2e%2e;x=1/admin/x",
    "/public/x/..;/..;/admin/x",
    "/public/..;/admin",
    "/public/..%3b/admin/x",
    "/public/..%2fadmin/x",
    "/public/%252e%252e;/admin/x",
    "/public/..;%2fadmin/x",
    "/admin./x",
    "/ADMIN/x",
    "/Admin/x",
    "//admin/x",
    "/./admin/x",
]


@pytest.mark.parametrize("target", ADMIN_VARIANTS)
def test_no_variant_reaches_the_admin_area(stack: TomcatStack, target: str) -> None:
    """As raw request lines through nginx to Tomcat, with a ROLE_USER token: refused by
    authgate (403 by the admin rule, 400 ambiguous) or by nginx or Tomcat themselves
    (400, 404), never served."""
    response = stack.get(target)
    assert marker("admin") not in response.body, (target, response.status, response.body)
    assert response.status in (400, 403, 404), (target, response.status, response.body)


@pytest.mark.parametrize(
    "target",
    ["/public/..;/internal/x", "/INTERNAL/x", "/internal;x/y", "/public/%2e%2e;/internal/x"],
)
def test_no_variant_reaches_the_refused_area(stack: TomcatStack, target: str) -> None:
    """``/internal`` refuses everyone, even an admin."""
    response = stack.get(target, token=stack.stack.admin_token)
    assert marker("internal") not in response.body, (target, response.status, response.body)
    assert response.status in (400, 403, 404), (target, response.status, response.body)


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("POST", "/public/..;/api/orders"),
        ("POST", "/public/%2e%2e;/api/orders"),
        ("POST", "/api/orders;x"),
        ("POST", "/api/orders;jsessionid=1/"),
        ("PUT", "/public/..;a=b/api/orders/17"),
        ("DELETE", "/;/api/orders/17"),
        ("POST", "/api/%6frders"),
    ],
)
def test_no_variant_changes_an_order_without_the_scope(
    stack: TomcatStack, method: str, target: str
) -> None:
    """A key with read and write, without orders:write, reaches no order change."""
    response = stack.stack.raw(method, target, {"Authorization": f"Bearer {stack.read_write_key}"})
    assert marker("orders") not in response.body, (target, response.status, response.body)
    assert response.status in (400, 403, 404), (target, response.status, response.body)
