"""A login whose password is being hashed while an administrator resets that password
or deactivates the account (the two-node race review): what the old password buys must
not outlive the reset. Two layers, each tested alone:

- after the hash the login reads the account again: changed meanwhile, it is refused
  (401, ``password_changed_meanwhile``);
- its token (and v12 session) is dated from the first read, so a change that commits
  after the second read, before the token is issued, still refuses it (the change's
  "every token issued until now")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx2
import pytest
from sqlalchemy import select, update

from authgate.security.passwords import Argon2Parameters, PasswordHasher
from authgate.services.password_hashing import AsyncPasswordHasher
from authgate.storage.db import Database
from authgate.storage.models import User
from tests.conftest import USER_PASSWORD, Harness, bearer

NEW_PASSWORD = "a-brand-new-passphrase-42"

Login = Callable[[], Coroutine[Any, Any, httpx2.Response]]
Change = Callable[[], Awaitable[None]]


async def interleaved(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, owner: type[Any], name: str, *,
    call: int, login: Login, meanwhile: Change,
) -> httpx2.Response:  # fmt: skip
    """Run ``login``; once its ``call``-th call of ``owner.name`` has returned, run
    ``meanwhile`` before it goes on (a second apart on the clock each side)."""
    original = getattr(owner, name)
    calls = 0
    reached = asyncio.Event()
    resume = asyncio.Event()

    async def wrapped(self: Any, *args: Any, **options: Any) -> Any:
        nonlocal calls
        result = await original(self, *args, **options)
        calls += 1
        if calls == call:
            reached.set()
            await resume.wait()
        return result

    monkeypatch.setattr(owner, name, wrapped)
    answer = asyncio.create_task(login())
    await asyncio.wait_for(reached.wait(), 10)
    monkeypatch.setattr(owner, name, original)
    harness.clock.advance(seconds=1)
    await meanwhile()
    harness.clock.advance(seconds=1)
    resume.set()
    return await asyncio.wait_for(answer, 10)


async def assert_v12_pair_dead(harness: Harness, pair: dict[str, Any]) -> None:
    """A v12 access token and its refresh token are both refused (401)."""
    me = await harness.client.get("/api/v1/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 401, me.text
    refreshed = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 401, refreshed.text


def v10_login(harness: Harness) -> Login:
    return lambda: harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD}
    )


def v12_login(harness: Harness) -> Login:
    return lambda: harness.client.post(
        "/api/v1/auth/login", json={"login": "alice", "password": USER_PASSWORD}
    )


def reset(harness: Harness, admin_token: str) -> Change:
    async def change() -> None:
        done = await harness.client.put(
            "/api/users/alice/password",
            json={"newPassword": NEW_PASSWORD},
            headers=bearer(admin_token),
        )
        assert done.status_code == 204, done.text

    return change


def deactivate_and_reactivate(harness: Harness, admin_token: str) -> Change:
    async def change() -> None:
        for activated in (False, True):
            changed = await harness.client.put(
                "/api/users",
                json={"login": "alice", "email": "alice@example.com", "activated": activated},
                headers=bearer(admin_token),
            )
            assert changed.status_code == 200, changed.text

    return change


@pytest.mark.parametrize("login", [v10_login, v12_login], ids=["v10", "v12"])
async def test_a_login_whose_account_changed_during_the_hash_is_refused(
    harness: Harness, admin_token: str, monkeypatch: pytest.MonkeyPatch, login: Any
) -> None:
    await harness.create_user("alice", USER_PASSWORD)

    answer = await interleaved(
        harness, monkeypatch, AsyncPasswordHasher, "verify", call=1,
        login=login(harness), meanwhile=reset(harness, admin_token),
    )  # fmt: skip

    assert answer.status_code == 401, answer.text
    fresh = await harness.login("alice", NEW_PASSWORD)
    assert (await harness.client.get("/api/account", headers=bearer(fresh))).status_code == 200


async def test_a_token_from_a_login_racing_a_reset_is_refused(
    harness: Harness, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reset commits after the login's second read of the account: the token is
    issued, and refused, since it is dated from the first read."""
    await harness.create_user("alice", USER_PASSWORD)

    answer = await interleaved(
        harness, monkeypatch, Database, "login_row", call=2,
        login=v10_login(harness), meanwhile=reset(harness, admin_token),
    )  # fmt: skip

    assert answer.status_code == 200, answer.text  # the account had not changed yet
    refused = await harness.client.get("/api/account", headers=bearer(answer.json()["id_token"]))
    assert refused.status_code == 401


async def test_a_v12_session_from_a_login_racing_a_reset_cannot_refresh(
    harness: Harness, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.create_user("alice", USER_PASSWORD)

    answer = await interleaved(
        harness, monkeypatch, Database, "login_row", call=2,
        login=v12_login(harness), meanwhile=reset(harness, admin_token),
    )  # fmt: skip

    assert answer.status_code == 200, answer.text
    await assert_v12_pair_dead(harness, answer.json())


async def test_a_login_racing_a_deactivation_gets_nothing_back_on_reactivation(
    harness: Harness, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.create_user("alice", USER_PASSWORD)

    answer = await interleaved(
        harness, monkeypatch, Database, "login_row", call=2,
        login=v10_login(harness), meanwhile=deactivate_and_reactivate(harness, admin_token),
    )  # fmt: skip

    assert answer.status_code == 200, answer.text
    refused = await harness.client.get("/api/account", headers=bearer(answer.json()["id_token"]))
    assert refused.status_code == 401


async def test_another_logins_upgrade_of_the_hash_refuses_no_one(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two logins at once to an account whose hash is upgraded at its first login (old
    Argon2 parameters, or a UTMStack bcrypt hash): the second read of the one still
    hashing sees another hash, of the same password; it is not refused for that."""
    await harness.create_user("alice", USER_PASSWORD)
    old = PasswordHasher(Argon2Parameters(time_cost=2, memory_kib=16, parallelism=2))
    async with harness.services.db.transaction() as session:
        await session.execute(
            update(User).where(User.login == "alice").values(password_hash=old.hash(USER_PASSWORD))
        )

    async def other_login() -> None:
        # From another address: one address's password checks are evaluated one at a time.
        async with harness.client_from("198.51.100.9") as client:
            other = await client.post(
                "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD}
            )
        assert other.status_code == 200, other.text

    answer = await interleaved(
        harness, monkeypatch, AsyncPasswordHasher, "verify", call=1,
        login=v10_login(harness), meanwhile=other_login,
    )  # fmt: skip

    async with harness.services.db.session() as session:
        stored = await session.scalar(select(User.password_hash).where(User.login == "alice"))
    assert stored is not None
    assert old.needs_rehash(stored)  # upgraded by the other login
    assert answer.status_code == 200, answer.text
    token = answer.json()["id_token"]
    assert (await harness.client.get("/api/account", headers=bearer(token))).status_code == 200
