"""A login whose password is being hashed while an administrator resets that password
or deactivates the account (the two-node race review): what the old password buys must
not outlive the reset. The login read the account before the reset committed and checks
the password against that row; its token (and v12 session) is dated from that read, so
the reset's "every token issued until now is refused" covers it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx2
import pytest

from authgate.services.password_hashing import AsyncPasswordHasher
from tests.conftest import USER_PASSWORD, Harness, bearer

NEW_PASSWORD = "a-brand-new-passphrase-42"


async def during_the_hash(
    harness: Harness,
    monkeypatch: pytest.MonkeyPatch,
    login: Callable[[], Coroutine[Any, Any, httpx2.Response]],
    meanwhile: Callable[[], Awaitable[None]],
) -> httpx2.Response:
    """Run ``login`` and, once its password hash is done but before it answers, run
    ``meanwhile`` (a second apart on the clock each side, as time passes for real)."""
    original = AsyncPasswordHasher.verify
    hashed = asyncio.Event()
    resume = asyncio.Event()

    async def verify(self: AsyncPasswordHasher, stored_hash: str, password: str) -> Any:
        result = await original(self, stored_hash, password)
        hashed.set()
        await resume.wait()
        return result

    monkeypatch.setattr(AsyncPasswordHasher, "verify", verify)
    answer = asyncio.create_task(login())
    await asyncio.wait_for(hashed.wait(), 10)
    monkeypatch.setattr(AsyncPasswordHasher, "verify", original)
    harness.clock.advance(seconds=1)
    await meanwhile()
    harness.clock.advance(seconds=1)
    resume.set()
    return await asyncio.wait_for(answer, 10)


async def reset(harness: Harness, admin_token: str) -> None:
    done = await harness.client.put(
        "/api/users/alice/password",
        json={"newPassword": NEW_PASSWORD},
        headers=bearer(admin_token),
    )
    assert done.status_code == 204, done.text


async def test_a_token_from_a_login_racing_a_reset_is_refused(
    harness: Harness, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.create_user("alice", USER_PASSWORD)

    answer = await during_the_hash(
        harness,
        monkeypatch,
        lambda: harness.client.post(
            "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD}
        ),
        lambda: reset(harness, admin_token),
    )

    assert answer.status_code == 200, answer.text  # the password was right when read
    refused = await harness.client.get("/api/account", headers=bearer(answer.json()["id_token"]))
    assert refused.status_code == 401
    fresh = await harness.login("alice", NEW_PASSWORD)
    assert (await harness.client.get("/api/account", headers=bearer(fresh))).status_code == 200


async def test_a_v12_session_from_a_login_racing_a_reset_cannot_refresh(
    harness: Harness, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.create_user("alice", USER_PASSWORD)

    answer = await during_the_hash(
        harness,
        monkeypatch,
        lambda: harness.client.post(
            "/api/v1/auth/login", json={"login": "alice", "password": USER_PASSWORD}
        ),
        lambda: reset(harness, admin_token),
    )

    assert answer.status_code == 200, answer.text
    pair = answer.json()
    me = await harness.client.get("/api/v1/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 401
    refreshed = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 401


async def test_a_login_racing_a_deactivation_gets_nothing_back_on_reactivation(
    harness: Harness, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.create_user("alice", USER_PASSWORD)

    async def deactivate_and_reactivate() -> None:
        for activated in (False, True):
            changed = await harness.client.put(
                "/api/users",
                json={"login": "alice", "email": "alice@example.com", "activated": activated},
                headers=bearer(admin_token),
            )
            assert changed.status_code == 200, changed.text

    answer = await during_the_hash(
        harness,
        monkeypatch,
        lambda: harness.client.post(
            "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD}
        ),
        deactivate_and_reactivate,
    )

    assert answer.status_code == 200, answer.text
    refused = await harness.client.get("/api/account", headers=bearer(answer.json()["id_token"]))
    assert refused.status_code == 401
