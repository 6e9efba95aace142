"""While the database cannot be reached, every route answers 503 with Retry-After (JSON;
a page under /settings/), whatever layer the failure comes from, and the access log
records the 503 really sent. In-process, with a database whose every connection is
refused; tests/test_database_outage.py stops a real PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from authgate.app import create_app
from authgate.security import keys
from authgate.services.user_fields import NewUser
from tests.conftest import ADMIN_PASSWORD, FakeClock, bearer, test_settings


@asynccontextmanager
async def _refused(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
    raise ConnectionRefusedError(111, "Connection refused")
    yield  # pragma: no cover - an async generator that never yields


async def _call_refused(*args: Any) -> None:
    raise ConnectionRefusedError(111, "Connection refused")


async def test_every_route_class_answers_503_with_retry_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = test_settings(tmp_path / "data", access_log=True)
    app = create_app(settings, clock=FakeClock())
    async with app.router.lifespan_context(app):
        services = app.state.services
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            await services.users.create_user(
                NewUser(
                    login="admin",
                    email="admin@example.com",
                    password=ADMIN_PASSWORD,
                    authorities=frozenset({"ROLE_ADMIN", "ROLE_USER"}),
                )
            )
            login = await client.post(
                "/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            token = login.json()["id_token"]
            # Every way in: sessions, transactions, and the bare connections of the hot
            # paths (a login reads the user and its blocks with ``point_rows``).
            for way_in in ("session", "transaction", "connection", "begin"):
                monkeypatch.setattr(services.db, way_in, _refused)
            for way_in in ("ping", "read", "point_rows"):
                monkeypatch.setattr(services.db, way_in, _call_refused)
            caplog.set_level(logging.INFO, logger="authgate.access")

            for method, path in (("GET", "/api/users"), ("GET", "/api/api-keys")):
                response = await client.request(method, path, headers=bearer(token))
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"] == "1"
                assert response.json()["code"] == "database_unavailable"
            login = await client.post(
                "/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            assert login.status_code == 503
            unknown_key = await client.get(
                "/api/account", headers=bearer("agk_AAAAAAAAAAAA_" + "B" * 49)
            )
            assert unknown_key.status_code in (401, 503)  # a bad checksum needs no lookup

            page = await client.get(
                "/settings/users", headers={"Cookie": f"__Host-authgate_session={token}"}
            )
            assert page.status_code == 503
            assert page.headers["Retry-After"] == "1"
            assert page.headers["content-type"].startswith("text/html")
            assert "Temporarily unavailable" in page.text
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]

            health = await client.get("/management/health")
            assert health.status_code == 503
            assert health.headers["Retry-After"] == "1"
            assert health.json()["components"]["db"]["status"] == "DOWN"
            monkeypatch.undo()  # the database is back before the app stops

    lines = [record.getMessage() for record in caplog.records if record.name == "authgate.access"]
    assert any(" GET /api/users 503 " in line for line in lines), lines
    assert any(" POST /api/authenticate 503 " in line for line in lines), lines
    assert any(" GET /settings/users 503 " in line for line in lines), lines
    assert not any(" 500 " in line for line in lines), lines


async def test_cached_credentials_outlive_their_cache_lifetime_while_the_database_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the caches' TTL a known token and a known key still authenticate while the
    database cannot be reached (the last state known is used); an unknown key cannot be
    checked (503); once the database is back, the caches refresh as usual."""
    clock = FakeClock()
    settings = test_settings(
        tmp_path / "data", user_cache_ttl_seconds=1, api_key_cache_ttl_seconds=1
    )
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services = app.state.services
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            await services.users.create_user(
                NewUser(login="admin", email="admin@example.com", password=ADMIN_PASSWORD,
                        authorities=frozenset({"ROLE_ADMIN", "ROLE_USER"}))
            )  # fmt: skip
            login = await client.post(
                "/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            token = login.json()["id_token"]
            expires = (clock() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
            created = await client.post(
                "/api/api-keys",
                json={"name": "cached", "expiresAt": expires, "allowedIp": []},
                headers=bearer(token),
            )
            key = created.json()["key"]
            await services.feed.poll_once()  # the creation's change, read now
            for credential in (token, key):
                response = await client.get("/api/authenticate", headers=bearer(credential))
                assert response.status_code == 200

            clock.advance(seconds=5)  # past every cache lifetime
            for name in ("session", "transaction", "connection"):
                monkeypatch.setattr(services.db, name, _refused)
            for credential in (token, key):
                response = await client.get("/api/authenticate", headers=bearer(credential))
                assert response.status_code == 200, response.text
                assert response.text == "admin"
            unknown = await client.get("/api/authenticate", headers=bearer(unknown_key()))
            assert unknown.status_code == 503
            monkeypatch.undo()
            assert (await client.get("/api/authenticate", headers=bearer(key))).status_code == 200


def unknown_key() -> str:
    """A well-formed key (valid checksum) with an id the server does not know."""
    return keys.generate_secret_for("ZZZZZZZZZZZZ").plaintext
