"""HEAD is answered wherever GET is (RFC 9110 9.1, 9.3.2; api/routing.py): the REST API,
the Settings UI, Swagger UI, the probes. The same status, headers and checks as GET,
and no body; a ``read`` key may use it. (tests/test_http_limits.py checks the bytes a
real ``authgate serve`` writes.)"""

from __future__ import annotations

import re

import httpx2
from starlette.routing import Route

from tests.api.test_api_keys import KEYS, key_header
from tests.conftest import Harness, bearer

# A value for each path parameter that names something the test creates; any other
# parameter gets "1" (the GET and the HEAD then agree on a 404 or a 400).
PATH_PARAMETER = re.compile(r"{(\w+)(?::\w+)?}")


def answers_alike(get: httpx2.Response, head: httpx2.Response, again: httpx2.Response) -> list[str]:
    """How ``head`` differs from the GET answered before and after it: the status, and
    every header both GETs agree on (``date``, a fresh CSRF cookie or the length of a
    body that changes, such as the metrics, may differ from one GET to the next)."""
    differences = []
    if head.status_code != get.status_code:
        differences.append(f"status {head.status_code}, GET {get.status_code}")
    if head.content:
        differences.append(f"{len(head.content)} body bytes")
    for name in set(get.headers) | set(head.headers):
        value = get.headers.get_list(name)
        if value == again.headers.get_list(name) != head.headers.get_list(name):
            differences.append(f"{name}: {head.headers.get_list(name)}, GET {value}")
    return differences


async def test_every_get_route_answers_head_as_get(harness: Harness, admin_token: str) -> None:
    """Each route that answers GET answers HEAD with the GET's status and headers
    (Content-Length included) and no body: to a stranger (401, or the Settings UI's way
    to its login page) and to an admin with a token, which the pages take as their
    session cookie."""
    created = await harness.create_key(admin_token)
    me = await harness.client.get("/api/v1/auth/me", headers=bearer(admin_token))
    values = {"login": "admin", "key_id": str(created["id"]), "user_id": me.json()["id"]}
    admin = {**bearer(admin_token), "Cookie": f"__Host-authgate_session={admin_token}"}
    paths = [
        PATH_PARAMETER.sub(lambda found: values.get(found[1], "1"), route.path)
        for route in harness.app.routes
        if isinstance(route, Route) and "GET" in (route.methods or ())
    ]
    assert len(paths) > 50, paths  # the API's and the UI's, not only a few
    differences = {}
    for caller, headers in (("stranger", {}), ("admin", admin)):
        for path in paths:
            get = await harness.client.get(path, headers=headers)
            head = await harness.client.head(path, headers=headers)
            again = await harness.client.get(path, headers=headers)
            found = answers_alike(get, head, again)
            if found:
                differences[f"{caller} HEAD {path}"] = found
    assert differences == {}


async def test_a_read_key_may_use_head_and_it_is_recorded_as_head(
    harness: Harness, user_token: str
) -> None:
    """A key with only the ``read`` scope may send HEAD (a safe method, as GET) to its own
    API: 200 with the GET's Content-Length and no body. What it may not GET, it may not
    HEAD either (403, the GET's answer), and its usage records name the method HEAD."""
    created = await harness.create_key(user_token, name="reader", scopes=["read"])
    reader = key_header(created["key"])
    assert (await harness.client.get(KEYS, headers=reader)).status_code == 200  # first use
    head = await harness.client.head(KEYS, headers=reader)
    get = await harness.client.get(KEYS, headers=reader)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == get.headers["content-length"] != "0"
    assert head.headers["x-total-count"] == get.headers["x-total-count"] == "1"

    refused_head = await harness.client.head("/api/users", headers=reader)
    refused_get = await harness.client.get("/api/users", headers=reader)
    assert (refused_head.status_code, refused_head.content) == (403, b"")
    assert refused_head.headers["content-length"] == refused_get.headers["content-length"]
    assert refused_get.json()["code"] == "insufficient_scope"

    await harness.services.usage.flush()
    usage = await harness.client.get(
        f"{KEYS}/usage", params={"apiKeyId": created["id"]}, headers=bearer(user_token)
    )
    records = {(r["requestMethod"], r["endpoint"], r["responseCode"]) for r in usage.json()}
    assert {("HEAD", KEYS, 200), ("HEAD", "/api/users", 403)} <= records
