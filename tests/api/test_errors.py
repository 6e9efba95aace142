"""Every error is JSON in one shape; nothing leaks; oversized bodies are refused early."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi import APIRouter
from redis.asyncio import from_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc

from authgate.api.middleware import BodyTooLarge, RequestBodyLimit
from authgate.services.redis_link import RedisLink
from tests.conftest import USER_PASSWORD, Harness, bearer

JSON = {"Content-Type": "application/json"}
ERROR_KEYS = {"timestamp", "status", "error", "code", "message", "detail", "path"}


async def test_unknown_path_is_json_404(harness: Harness) -> None:
    """An unknown route answers the usual JSON error shape."""
    response = await harness.client.get("/api/does-not-exist")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) >= ERROR_KEYS
    assert response.json()["code"] == "not_found"


async def test_wrong_method_is_json_405_with_allow(harness: Harness) -> None:
    """A wrong method answers 405 JSON; Allow names every method of every route at the path
    (HEAD with GET: api/routing.py)."""
    response = await harness.client.delete("/api/authenticate")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert response.headers["Allow"] == "GET, HEAD, POST"


async def test_every_error_body_carries_the_message_as_detail(
    harness: Harness, user_token: str
) -> None:
    """``detail`` repeats ``message`` in every error body (UTMStack's Angular client reads
    problem JSON's ``detail``): framework, authentication, authorization, validation and
    field-rule errors alike; /api/v1 keeps v12's own shape."""
    responses = [
        await harness.client.get("/api/does-not-exist"),
        await harness.client.delete("/api/authenticate"),
        await harness.client.get("/api/account"),
        await harness.client.get("/api/users", headers=bearer(user_token)),
        await harness.client.post("/api/authenticate", content=b"{", headers=JSON),
        await harness.client.post("/api/api-keys", json={}, headers=bearer(user_token)),
    ]
    assert [r.status_code for r in responses] == [404, 405, 401, 403, 400, 422]
    for response in responses:
        body = response.json()
        assert set(body) >= ERROR_KEYS, body
        assert body["detail"] == body["message"] != "", body
    v12 = await harness.client.get("/api/v1/api-keys")
    assert set(v12.json()) == {"error"}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", None, "text/json"]
)
async def test_a_json_body_under_another_content_type_is_415(
    harness: Harness, user_token: str, content_type: str | None
) -> None:
    """A JSON body sent as text, a form or without a type: 415 with a message naming the
    fix, as Spring answers a @RequestBody so (it was 400 or 422, "Input should be a valid
    dictionary or object to extract fields from"), on every route reading JSON: logins,
    the key routes (whose validation status is 422), ``/api/v1`` (in v12's shape)
    (black-box review, item 2)."""
    headers = {"Content-Type": content_type} if content_type else {}
    login = await harness.client.post(
        "/api/authenticate",
        content=b'{"username": "alice", "password": "x"}',
        headers=headers,
    )
    key = await harness.client.post(
        "/api/api-keys", content=b'{"name": "k"}', headers={**headers, **bearer(user_token)}
    )
    v12 = await harness.client.post(
        "/api/v1/auth/login", content=b'{"login": "alice", "password": "x"}', headers=headers
    )

    for response in (login, key):
        assert response.status_code == 415, response.text
        assert response.json()["code"] == "unsupported_media_type"
        assert response.json()["message"] == "Content-Type must be application/json"
        assert set(response.json()) == ERROR_KEYS  # no fieldErrors
    assert (v12.status_code, v12.json()) == (
        415,
        {"error": "Content-Type must be application/json"},
    )


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/vnd.api+json"],
)
async def test_json_under_any_json_content_type_is_read(
    harness: Harness, content_type: str
) -> None:
    """application/json with a charset, and application/*+json, are JSON."""
    await harness.create_user("alice")
    response = await harness.client.post(
        "/api/authenticate",
        content=b'{"username": "alice", "password": "%s"}' % USER_PASSWORD.encode(),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 200, response.text


async def test_routes_reading_text_or_forms_are_not_refused_415(harness: Harness) -> None:
    """The reset-link request takes its address as a text body (UTMStack's UI posts it
    so), the sign-in page a form: neither route reads JSON, neither answers 415; nor
    does a JSON route whose body is empty (the body is missing: 400)."""
    reset = await harness.client.post(
        "/api/account/reset-password/init",
        content=b"nobody@example.com",
        headers={"Content-Type": "text/plain"},
    )
    page = await harness.client.post(
        "/settings/login",
        content=b"username=alice&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    empty = await harness.client.post(
        "/api/authenticate", content=b"", headers={"Content-Type": "text/plain"}
    )
    assert reset.status_code == 200
    assert page.status_code != 415
    assert empty.status_code == 400


async def test_field_errors_name_public_fields_and_say_only_the_rule(
    harness: Harness, admin_token: str
) -> None:
    """A field error names the field as the API does (the alert rule's ``id``, not the
    handler's ``rule_id``) and carries the validator's own message, without pydantic's
    "Value error, " in front (black-box review, item 3)."""
    rule = await harness.client.get("/api/alert-rules/abc", headers=bearer(admin_token))
    usage = await harness.client.post(
        "/api/api-keys/usage", json={"apiKeyId": "nope"}, headers=bearer(admin_token)
    )

    assert rule.status_code == 422, rule.text
    assert [e["field"] for e in rule.json()["fieldErrors"]] == ["id"]
    assert usage.status_code == 422, usage.text
    (error,) = usage.json()["fieldErrors"]
    assert error["field"] == "apiKeyId"
    assert error["message"] == "not a key id: a UUID (or a numeric id, deprecated)"
    assert usage.json()["message"] == error["message"]


async def test_declared_oversized_body_is_413_before_parsing(harness: Harness) -> None:
    """A Content-Length above the limit is refused with 413 JSON."""
    limit = harness.services.settings.http.max_body_bytes
    response = await harness.client.post(
        "/api/authenticate",
        content=b"{" + b" " * limit + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_asked_for() -> None:
    """The diff review: reading the first part first made the server send "100 Continue"
    (or wait for a body never coming) before the 413."""
    asked: list[str] = []

    async def receive() -> dict[str, Any]:
        asked.append("receive")
        return {"type": "http.request", "body": b"", "more_body": False}

    async def reads_its_body(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent before the refusal")

    limited = RequestBodyLimit(reads_its_body, max_bytes=10)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/authenticate",
        "headers": [(b"content-length", b"11")],
    }
    with pytest.raises(BodyTooLarge):
        await limited(scope, receive, send)
    assert asked == []


async def test_streamed_oversized_body_is_413(harness: Harness) -> None:
    """A chunked body without Content-Length is cut off once it passes the limit."""
    limit = harness.services.settings.http.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 1024 + 2):
            yield b" " * 1024

    response = await harness.client.post(
        "/api/authenticate", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"  # as for a declared length


async def test_a_trailing_slash_is_a_404_not_a_redirect_built_from_host(harness: Harness) -> None:
    """Starlette answered ``/api/users/`` (and ``/api/api-keys/%2F``) with a 307 whose
    Location took the request's Host header (evil.example), before authentication, for
    every method: a 307 repeats a PUT or DELETE, and a cache in front could keep it."""
    for method, path in [
        ("GET", "/api/users/"),
        ("PUT", "/api/api-keys/%2F"),
        ("DELETE", "/api/users/"),
        ("GET", "/api/v1/users/"),
    ]:
        response = await harness.client.request(method, path, headers={"Host": "evil.example"})
        assert response.status_code in (404, 405), (method, path, response.status_code)
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("application/json")


async def test_unexpected_exception_is_generic_500(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug answers a generic 500 JSON body: no trace, no exception text."""
    router = APIRouter()

    @router.get("/api/test-explode")
    async def explode() -> None:
        raise RuntimeError("secret-internal-detail")

    harness.app.include_router(router)
    with caplog.at_level(logging.ERROR):
        response = await harness.client.get("/api/test-explode")
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal_error"
    assert body["message"] == "Internal server error"
    assert "secret-internal-detail" not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text


class _PostgresError(Exception):
    """What asyncpg's errors look like behind SQLAlchemy: the SQLSTATE as ``sqlstate``."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "error",
    [
        sa_exc.IntegrityError(
            "UPDATE api_keys SET name=$1",
            {},
            _PostgresError("duplicate key: Key (name)=(secret-name) already exists", "23505"),
        ),
        sa_exc.IntegrityError(
            "INSERT INTO one_time_codes", {}, Exception("FOREIGN KEY constraint failed")
        ),
        orm_exc.StaleDataError(
            "UPDATE statement on table 'alert_rules' expected to update 1 row(s); 0 were matched."
        ),
    ],
    ids=["unique-key", "user-deleted", "row-deleted"],
)
async def test_a_write_a_concurrent_change_refused_is_409(
    harness: Harness, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    """The race review: a rename to a name another request just took, an update of a row
    another request just deleted, answered 500 (and the connection closed). A retry sees
    the new state: 409, the row's values neither in the body nor in the log."""
    router = APIRouter()

    @router.put("/api/test-concurrent-write")
    async def concurrent_write() -> None:
        raise error

    harness.app.include_router(router)
    with caplog.at_level(logging.WARNING):
        response = await harness.client.put("/api/test-concurrent-write")
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert set(response.json()) >= ERROR_KEYS
    assert "secret-name" not in response.text + caplog.text
    assert "answered 409" in caplog.text


async def test_a_settings_form_a_concurrent_change_refused_is_a_409_page(
    harness: Harness,
) -> None:
    """As every refusal under /settings/: a page a browser shows, not the API's JSON."""
    router = APIRouter()

    @router.post("/settings/test-concurrent-form")
    async def concurrent_form() -> None:
        raise orm_exc.StaleDataError("UPDATE statement on table 'users' expected 1 row")

    harness.app.include_router(router)
    response = await harness.client.post("/settings/test-concurrent-form")
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("text/html")
    assert "Changed meanwhile" in response.text


@pytest.mark.parametrize(
    "orig",
    [_PostgresError("null value in column", "23502"), Exception("NOT NULL constraint failed")],
    ids=["postgres", "sqlite"],
)
async def test_an_integrity_error_no_race_explains_stays_a_500(
    harness: Harness, orig: Exception
) -> None:
    """A NOT NULL violation is a bug of the statement, not another request's doing: the
    diff review saw every integrity error answered 409 and logged without a trace."""
    router = APIRouter()

    @router.put("/api/test-broken-write")
    async def broken_write() -> None:
        raise sa_exc.IntegrityError("INSERT INTO users", {}, orig)

    harness.app.include_router(router)
    response = await harness.client.put("/api/test-broken-write")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"


async def test_security_headers_on_every_response(harness: Harness, user_token: str) -> None:
    """nosniff, frame denial and no-store on API answers."""
    for response in (
        await harness.client.get("/api/account", headers=bearer(user_token)),
        await harness.client.get("/api/account"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "error",
    [
        sa_exc.OperationalError("UPDATE users SET x", {}, Exception("database is locked")),
        sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
        ConnectionRefusedError("connection refused"),
    ],
    ids=["sqlite-busy", "pool-exhausted", "unreachable"],
)
async def test_an_unavailable_database_is_503_with_retry_after(
    harness: Harness, error: Exception
) -> None:
    """Overload or a database outage is not a bug: 503 with Retry-After, nothing of the
    statement or the driver's message in the body."""
    router = APIRouter()

    @router.get("/api/test-database-down")
    async def database_down() -> None:
        raise error

    harness.app.include_router(router)
    response = await harness.client.get("/api/test-database-down")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    body = response.json()
    assert body["code"] == "database_unavailable"
    for leaked in ("UPDATE", "locked", "QueuePool", "refused"):
        assert leaked not in response.text


async def test_ping_health_and_info_are_public(harness: Harness) -> None:
    """Liveness, health (with the database) and version need no credentials."""
    ping = await harness.client.get("/api/ping")
    assert (ping.status_code, ping.json()) == (200, "OK")
    health = await harness.client.get("/management/health")
    assert health.status_code == 200
    body = health.json()
    assert (body["status"], body["components"]["db"]) == ("UP", {"status": "UP"})
    # The node registry, and Redis when configured (the PostgreSQL + Redis run), too.
    assert set(body["components"]) <= {"db", "redis", "cluster"}
    assert all(component["status"] == "UP" for component in body["components"].values())
    info = await harness.client.get("/management/info")
    assert info.json()["app"]["name"] == "authgate"


async def test_health_is_503_when_the_database_is_down(harness: Harness) -> None:
    """With the database unusable, health says DOWN with 503."""

    async def broken_ping() -> None:
        raise ConnectionError("database unreachable")

    harness.services.db.ping = broken_ping  # type: ignore[method-assign]
    response = await harness.client.get("/management/health")
    assert response.status_code == 503
    assert response.json()["status"] == "DOWN"


async def test_health_stays_up_and_reports_redis_down(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead Redis is reported, but the node keeps serving (throttling, rate limits and
    change notifications have fallbacks), so the overall status stays UP."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe is closed
    link = RedisLink(from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.2))
    # Services is a frozen registry: the health route gets a copy holding the dead link
    # (routes read ``app.services``; ``app.state.services`` is the same object).
    dead_redis = replace(harness.services, redis=link)
    monkeypatch.setattr(harness.app, "services", dead_redis)
    monkeypatch.setattr(harness.app.state, "services", dead_redis)
    try:
        for _ in range(2):  # the second answer comes from the open breaker
            response = await harness.client.get("/management/health")
            assert response.status_code == 200
            body = response.json()
            assert body["status"] == "UP"
            assert body["components"]["redis"]["status"] == "DOWN"
            assert link.is_down
    finally:
        await link.close()
