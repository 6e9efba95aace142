"""Legacy (UTMStack) API keys: the 43-character key keeps working in both headers,
with its allow list and expiry, is marked ``legacy`` everywhere, and rotates to an
``agk_`` key with the usual grace period."""

from __future__ import annotations

import asyncio
import base64
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest

from authgate.app import create_app
from authgate.security import keys
from authgate.services.user_fields import NewUser
from authgate.storage.models import ApiKey
from tests.api.test_api_keys import KEYS, key_header
from tests.api.test_database_unavailable import _refused
from tests.conftest import USER_PASSWORD, FakeClock, Harness, bearer, test_settings


def legacy_plaintext() -> str:
    """What UTMStack generates: 32 random bytes, unpadded URL-safe base64."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


async def insert_legacy_key(
    harness: Harness,
    owner_id: int,
    plaintext: str,
    *,
    name: str = "utm-integration",
    allowed: str = "",
    expires_at: datetime | None = None,
) -> int:
    """A key as ``authgate import utmstack`` stores it: only its digest."""
    now = harness.clock()
    digest = keys.key_digest(harness.services.server_secret, plaintext)
    key = ApiKey(
        user_id=owner_id,
        name=name,
        key_id=keys.new_key_id(),
        key_tail="",
        secret_hash=digest,
        legacy_digest=digest,
        legacy_id=secrets.token_hex(16),
        allowed_networks=allowed,
        scopes="read,write",
        created_at=now,
        generated_at=now,
        updated_at=now,
        expires_at=expires_at,
    )
    async with harness.services.db.transaction() as session:
        session.add(key)
        await session.flush()
        return key.id


def test_format_detection_is_by_shape() -> None:
    """43 URL-safe base64 characters are a legacy key; an agk_ key and a JWT are not,
    and near misses (42/44 characters, other characters, dots) are not either."""
    legacy = legacy_plaintext()
    assert keys.is_legacy_key(legacy)
    assert keys.looks_like_api_key(legacy)
    agk = keys.generate_key().plaintext
    assert not keys.is_legacy_key(agk)
    assert keys.looks_like_api_key(agk)
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
    assert not keys.looks_like_api_key(jwt)
    for near in (legacy[:-1], legacy + "A", legacy[:-1] + ".", legacy[:-1] + "=", "eyJ" + "."):
        assert not keys.is_legacy_key(near), near
    # The length tells the kinds apart, even for a legacy key that begins with agk_.
    assert keys.is_legacy_key("agk_" + legacy[4:])
    keys.check_key_shape(legacy)
    keys.check_key_shape(agk)


async def test_legacy_key_works_in_both_headers_with_its_allow_list(
    harness: Harness, user_token: str
) -> None:
    """Utm-Api-Key and Authorization: Bearer both accept the legacy key from an allowed
    address; elsewhere it is 403 with UTMStack's message."""
    owner = (await harness.client.get("/api/account", headers=bearer(user_token))).json()["id"]
    plaintext = legacy_plaintext()
    await insert_legacy_key(harness, owner, plaintext, allowed="10.1.0.0/16,127.0.0.1/32,::1/128")
    for headers in (key_header(plaintext), bearer(plaintext)):
        response = await harness.client.get("/api/account", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["login"] == "alice"
    async with harness.client_from("10.1.200.3") as client:
        assert (await client.get("/api/account", headers=bearer(plaintext))).status_code == 200
    async with harness.client_from("10.2.0.1") as client:
        refused = await client.get("/api/account", headers=key_header(plaintext))
    assert refused.status_code == 403
    assert refused.json()["code"] == "ip_not_allowed"


async def test_unknown_and_expired_legacy_keys_are_refused(
    harness: Harness, user_token: str
) -> None:
    """An unknown 43-character key is "Invalid API key" (and cached as unknown); an
    expired one says when it expired."""
    owner = (await harness.client.get("/api/account", headers=bearer(user_token))).json()["id"]
    for _ in range(2):  # the second answer comes from the negative cache
        response = await harness.client.get("/api/account", headers=key_header(legacy_plaintext()))
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_api_key"
    expired = legacy_plaintext()
    await insert_legacy_key(
        harness, owner, expired, expires_at=harness.clock() + timedelta(hours=1)
    )
    assert (await harness.client.get("/api/account", headers=bearer(expired))).status_code == 200
    harness.clock.advance(hours=2)
    response = await harness.client.get("/api/account", headers=bearer(expired))
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


async def test_cache_hit_needs_no_query(harness: Harness, user_token: str) -> None:
    """After the first use, the key is verified from the cache: deleting its row (which
    no feed announces) does not change the answer until the cached record expires."""
    owner = (await harness.client.get("/api/account", headers=bearer(user_token))).json()["id"]
    plaintext = legacy_plaintext()
    key_id = await insert_legacy_key(harness, owner, plaintext)
    assert (await harness.client.get("/api/account", headers=bearer(plaintext))).status_code == 200
    async with harness.services.db.transaction() as session:
        await session.delete(await session.get(ApiKey, key_id))
    assert (await harness.client.get("/api/account", headers=bearer(plaintext))).status_code == 200


async def test_legacy_key_is_marked_and_rotates_to_an_agk_key_with_grace(
    harness: Harness, user_token: str, admin_token: str
) -> None:
    """The DTO and the review say ``legacy``; regenerating gives an agk_ key, the legacy
    key works until the grace period ends, and the key is legacy no more."""
    owner = (await harness.client.get("/api/account", headers=bearer(user_token))).json()["id"]
    plaintext = legacy_plaintext()
    key_id = await insert_legacy_key(harness, owner, plaintext)
    dto = (await harness.client.get(f"{KEYS}/{key_id}", headers=bearer(user_token))).json()
    assert dto["legacy"] is True
    assert plaintext[:8] not in dto["prefix"]
    assert plaintext[-4:] not in dto["prefix"]
    review = (await harness.client.get(f"{KEYS}/review", headers=bearer(admin_token))).json()
    assert [k["id"] for k in review["legacy"]] == [dto["id"]]
    assert [k["id"] for k in review["beyondExpiryPolicy"]] == [dto["id"]]  # no expiry

    response = await harness.client.post(
        f"{KEYS}/{key_id}/generate", params={"graceSeconds": 3600}, headers=bearer(user_token)
    )
    assert response.status_code == 200
    new_key = response.text
    assert new_key.startswith("agk_")
    assert keys.parse_key(new_key)
    for key in (plaintext, new_key):
        assert (await harness.client.get("/api/account", headers=bearer(key))).status_code == 200
    dto = (await harness.client.get(f"{KEYS}/{key_id}", headers=bearer(user_token))).json()
    assert dto["legacy"] is False
    assert dto["status"] == "rotating"

    harness.clock.advance(seconds=3601)
    old = await harness.client.get("/api/account", headers=key_header(plaintext))
    assert old.status_code == 401
    assert (await harness.client.get("/api/account", headers=bearer(new_key))).status_code == 200


async def test_revoked_legacy_key_stops_at_once(harness: Harness, user_token: str) -> None:
    owner = (await harness.client.get("/api/account", headers=bearer(user_token))).json()["id"]
    plaintext = legacy_plaintext()
    key_id = await insert_legacy_key(harness, owner, plaintext)
    assert (await harness.client.get("/api/account", headers=bearer(plaintext))).status_code == 200
    await harness.client.delete(f"{KEYS}/{key_id}", headers=bearer(user_token))
    assert (await harness.client.get("/api/account", headers=bearer(plaintext))).status_code == 401


async def test_concurrent_misses_share_one_load(harness: Harness, user_token: str) -> None:
    """Concurrent first uses of one legacy key query the database once (single-flight)
    and all succeed."""
    owner = (await harness.client.get("/api/account", headers=bearer(user_token))).json()["id"]
    plaintext = legacy_plaintext()
    await insert_legacy_key(harness, owner, plaintext)
    authenticator = harness.services.key_auth
    fetch = authenticator._fetch_legacy
    calls = []

    async def slow_fetch(digest: str) -> Any:
        calls.append(digest)
        await asyncio.sleep(0.05)
        return await fetch(digest)

    authenticator._fetch_legacy = slow_fetch  # type: ignore[method-assign]
    responses = await asyncio.gather(
        *(harness.client.get("/api/account", headers=bearer(plaintext)) for _ in range(5))
    )
    assert [r.status_code for r in responses] == [200] * 5
    assert len(calls) == 1


async def test_known_legacy_key_outlives_its_cache_lifetime_while_the_database_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like an agk_ key: past the cache TTL a legacy key verified before still works
    while the database cannot be reached; an unknown legacy key gets 503."""
    clock = FakeClock()
    settings = test_settings(
        tmp_path / "data", user_cache_ttl_seconds=1, api_key_cache_ttl_seconds=1
    )
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services = app.state.services
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            owner = await services.users.create_user(
                NewUser(login="erin", email="erin@example.com", password=USER_PASSWORD)
            )
            plaintext = legacy_plaintext()
            await insert_legacy_key(
                SimpleNamespace(services=services, clock=clock),  # type: ignore[arg-type]
                owner.id,
                plaintext,
            )
            assert (
                await client.get("/api/authenticate", headers=bearer(plaintext))
            ).status_code == 200

            clock.advance(seconds=5)  # past every cache lifetime
            for name in ("session", "transaction", "connection"):
                monkeypatch.setattr(services.db, name, _refused)
            response = await client.get("/api/authenticate", headers=bearer(plaintext))
            assert response.status_code == 200, response.text
            assert response.text == "erin"
            unknown = await client.get("/api/authenticate", headers=bearer(legacy_plaintext()))
            assert unknown.status_code == 503
            monkeypatch.undo()
            assert (
                await client.get("/api/authenticate", headers=bearer(plaintext))
            ).status_code == 200
