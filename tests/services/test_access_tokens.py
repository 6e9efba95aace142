"""Access tokens end to end through the app: signing-key rotation while running, HS512
mode, the opt-in query parameter, and password rehashing at login."""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta
from pathlib import Path

import httpx2
import jwt
import pytest

from authgate.app import create_app
from authgate.security.passwords import Argon2Parameters, PasswordHasher
from authgate.settings import Settings
from authgate.storage.db import Database
from authgate.storage.models import User
from authgate.storage.repositories import UserRepository
from tests.conftest import USER_PASSWORD, FakeClock, Harness, bearer, test_settings


async def test_rotated_signing_key_is_picked_up_while_running(harness: Harness) -> None:
    """After `signing-keys rotate` rewrites the key file, the running app signs with the
    new key within a second, and tokens signed with the old key keep working."""
    await harness.create_user("alice")
    old_token = await harness.login("alice", USER_PASSWORD)
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    key_file = harness.services.key_file
    assert key_file is not None

    new_kid = key_file.rotate(keep_for=timedelta(days=8)).active.kid
    assert new_kid != old_kid

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    kid = old_kid
    while loop.time() < deadline and kid == old_kid:
        await asyncio.sleep(0.02)
        kid = jwt.get_unverified_header(await harness.login("alice", USER_PASSWORD))["kid"]
    assert kid == new_kid
    assert (await harness.client.get("/api/account", headers=bearer(old_token))).status_code == 200
    jwks = (await harness.client.get("/.well-known/jwks.json")).json()
    assert {key["kid"] for key in jwks["keys"]} == {old_kid, new_kid}


async def test_hs512_mode_issues_jhipster_verifiable_tokens(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """With a shared secret, tokens are HS512 (verifiable by JHipster code holding the
    secret) and the JWKS publishes nothing."""
    secret = bytes(range(64))
    settings = test_settings(
        tmp_path / "data",
        database_url=database_url,
        jwt_algorithm="HS512",
        jwt_secret=base64.b64encode(secret).decode(),
    )
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services = app.state.services
        await services.users.ensure_initial_admin("hs512-operator-password")
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            login = await client.post(
                "/api/authenticate",
                json={"username": "admin", "password": "hs512-operator-password"},
            )
            token = login.json()["id_token"]
            claims = jwt.decode(token, secret, algorithms=["HS512"], audience="authgate")
            assert claims["sub"] == "admin"
            account = await client.get("/api/account", headers=bearer(token))
            assert account.status_code == 200
            assert (await client.get("/.well-known/jwks.json")).json() == {"keys": []}
    assert not (settings.data_dir / "signing-keys.json").exists()


async def test_access_token_query_parameter_when_enabled(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """With AUTHGATE_ACCESS_TOKEN_QUERY_PARAM on, ?access_token= authenticates."""
    settings = test_settings(
        tmp_path / "data", database_url=database_url, access_token_query_param=True
    )
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services = app.state.services
        await services.users.ensure_initial_admin("query-operator-password")
        user = await services.accounts.authenticate("admin", "query-operator-password")
        token = services.tokens.issue(user, remember_me=False).token
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/api/account", params={"access_token": token})
            assert response.status_code == 200
            assert response.json()["login"] == "admin"


async def test_login_rehashes_a_password_made_with_old_parameters(
    harness: Harness, settings: Settings
) -> None:
    """A hash made with other Argon2 parameters is replaced at the next successful login."""
    user_id = await harness.create_user("alice")
    old_hash = PasswordHasher(Argon2Parameters(time_cost=3, memory_kib=16, parallelism=1)).hash(
        USER_PASSWORD
    )
    db = Database(settings.effective_database_url)
    try:
        async with db.transaction() as session:
            stored = await UserRepository(session).get(user_id)
            assert stored is not None
            stored.password_hash = old_hash

        await harness.login("alice", USER_PASSWORD)

        async with db.session() as session:
            user = await session.get(User, user_id)
            assert user is not None
            assert user.password_hash != old_hash
            assert "m=8,t=1,p=1" in user.password_hash
    finally:
        await db.close()
    await harness.login("alice", USER_PASSWORD)


@pytest.mark.parametrize("size", [0, 1])
async def test_token_cache_size_zero_or_tiny_still_authenticates(
    tmp_path: Path, database_url: str, clock: FakeClock, size: int
) -> None:
    """A disabled or one-entry cache changes speed, never the answer."""
    settings = test_settings(tmp_path / "data", database_url=database_url, token_cache_size=size)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services = app.state.services
        await services.users.ensure_initial_admin("cache-operator-password")
        user = await services.accounts.authenticate("admin", "cache-operator-password")
        first = services.tokens.issue(user, remember_me=False)
        clock.advance(milliseconds=5)
        second = services.tokens.issue(user, remember_me=False)
        for _ in range(3):
            for issued in (first, second):
                principal = await services.tokens.authenticate(issued.token)
                assert principal.credential_id == issued.claims.token_id
        assert services.tokens.cache_sizes()["verified_tokens"] <= size
