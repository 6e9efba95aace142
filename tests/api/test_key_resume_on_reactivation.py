"""``AUTHGATE_API_KEY_RESUME_ON_REACTIVATION``: UTMStack checks a key's owner per request,
so its keys work again once the owner is reactivated (and its UI cannot re-enable a key).
With the setting on, every reactivation resumes the keys the deactivation suspended, in
the same transaction, on every app on the database, each audited; revoked and expired
keys stay as they are. Off (the default), tests/api/test_key_remediation.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from authgate.app import create_app
from authgate.services.user_fields import UserChanges
from authgate.settings import Settings
from authgate.storage.models import ApiKey
from tests.api.test_api_keys import KEYS
from tests.api.test_key_remediation import LOOPBACK, audited, eventually_there, works
from tests.conftest import FakeClock, Harness, bearer, test_settings


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return test_settings(
        tmp_path / "data", database_url=database_url, api_key_resume_on_reactivation=True
    )


async def suspended_at(harness: Harness, name: str) -> object:
    async with harness.services.db.session() as session:
        return await session.scalar(select(ApiKey.suspended_at).where(ApiKey.name == name))


async def test_a_reactivation_resumes_the_keys_its_deactivation_suspended(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """The live keys work again; a key revoked meanwhile stays revoked, and one that
    expired while its owner was away stays suspended (extending it re-enables nothing)."""
    live = await harness.create_key(user_token, name="live")
    revoked = await harness.create_key(user_token, name="revoked")
    expiring = await harness.create_key(user_token, name="expiring", days=0.001)  # 86 s
    admin = bearer(admin_token)
    off = await harness.client.put("/api/users/alice", json={"activated": False}, headers=admin)
    assert off.status_code == 200
    assert (await works(harness, live["key"])).json()["code"] == "api_key_owner_inactive"
    gone = await harness.client.delete(f"{KEYS}/{revoked['id']}", headers=admin)
    assert gone.status_code == 204
    harness.clock.advance(minutes=2)

    on = await harness.client.put("/api/users/alice", json={"activated": True}, headers=admin)

    assert on.status_code == 200, on.text
    assert (await works(harness, live["key"])).status_code == 200
    assert (await works(harness, revoked["key"])).json()["code"] == "invalid_api_key"
    assert (await works(harness, expiring["key"])).json()["code"] == "api_key_expired"
    assert await suspended_at(harness, "live") is None
    assert await suspended_at(harness, "expiring") is not None
    resumed = await audited(harness, "API_KEY_RESUMED")
    assert [(e.api_key_name, e.actor_login, e.details) for e in resumed] == [
        ("live", "admin", {"cause": "reactivated"})
    ]
    [reactivated] = [
        event
        for event in await audited(harness, "USER_UPDATED")
        if "activated" in event.details["changed"]
    ]
    assert reactivated.details["resumedApiKeys"] == 1


Reactivation = Callable[[Harness, str], Awaitable[None]]


async def _put_dto(harness: Harness, admin_token: str) -> None:
    admin = bearer(admin_token)
    dto = (await harness.client.get("/api/users/alice", headers=admin)).json()
    response = await harness.client.put(
        "/api/users", json={**dto, "activated": True}, headers=admin
    )
    assert response.status_code == 200, response.text


async def _put_by_login(harness: Harness, admin_token: str) -> None:
    response = await harness.client.put(
        "/api/users/alice", json={"activated": True}, headers=bearer(admin_token)
    )
    assert response.status_code == 200, response.text


async def _v12_status(harness: Harness, admin_token: str) -> None:
    public_id = (await harness.services.users.get_user("alice")).public_id
    response = await harness.client.put(
        f"/api/v1/users/{public_id}", json={"status": "active"}, headers=bearer(admin_token)
    )
    assert response.status_code == 200, response.text


async def _service(harness: Harness, admin_token: str) -> None:
    """What ``authgate users reactivate`` and the Settings UI's user form call."""
    await harness.services.users.update_user(
        "alice", UserChanges(activated=True), acting_user_id=None
    )


@pytest.mark.parametrize("reactivate", [_put_dto, _put_by_login, _v12_status, _service])
async def test_every_reactivation_resumes_the_keys(
    harness: Harness, admin_token: str, user_token: str, reactivate: Reactivation
) -> None:
    created = await harness.create_key(user_token, name="ci")
    await harness.services.users.deactivate("alice", acting_user_id=None)
    assert (await works(harness, created["key"])).status_code == 401
    await reactivate(harness, admin_token)
    assert (await works(harness, created["key"])).status_code == 200
    assert [e.api_key_name for e in await audited(harness, "API_KEY_RESUMED")] == ["ci"]


async def test_resumption_reaches_another_app(
    harness: Harness, settings: Settings, clock: FakeClock, admin_token: str, user_token: str
) -> None:
    """Another app on the same database that had the key cached (a worker or a node)
    accepts it again once the owner is reactivated (the change feed)."""
    key = (await harness.create_key(user_token, name="shared"))["key"]
    other = create_app(settings, clock=clock)
    async with other.router.lifespan_context(other):
        keys = other.state.services.key_auth
        assert (await keys.authenticate(key, LOOPBACK)).login == "alice"  # cached
        admin = bearer(admin_token)
        await harness.client.put("/api/users/alice", json={"activated": False}, headers=admin)
        await eventually_there(keys, key, "api_key_owner_inactive")
        await harness.client.put("/api/users/alice", json={"activated": True}, headers=admin)
        await eventually_there(keys, key, None)
