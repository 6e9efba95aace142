"""Remediation reaches API keys (issue 10, item 10): a deactivation suspends the owner's
keys, and they stay suspended after a reactivation until the owner or an admin
re-enables them; an admin's password reset and "log out everywhere" can revoke the
keys too; every such action is audited and reaches every app on the database."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import httpx2
from sqlalchemy import select, update

from authgate.app import create_app
from authgate.exceptions import ApiKeyRejected
from authgate.services.api_key_auth import ApiKeyAuthenticator
from authgate.services.key_refs import key_ref
from authgate.settings import Settings
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.models import ApiKey
from authgate.storage.paging import PageRequest
from tests.api.test_api_keys import KEYS, key_header
from tests.conftest import USER_PASSWORD, FakeClock, Harness, bearer

NEW_PASSWORD = "a-fresh-password-for-her"
WAIT_SECONDS = 10.0  # a safety net for the change feed, not a measured limit
LOOPBACK = ipaddress.ip_address("127.0.0.1")


async def works(harness: Harness, key: str) -> httpx2.Response:
    return await harness.client.get("/api/account", headers=key_header(key))


async def refusal_there(keys: ApiKeyAuthenticator, key: str) -> str | None:
    """The code another app's authenticator refuses ``key`` with, None if it accepts it."""
    try:
        await keys.authenticate(key, LOOPBACK)
    except ApiKeyRejected as error:
        return error.code
    return None


async def eventually_there(keys: ApiKeyAuthenticator, key: str, expected: str | None) -> None:
    """Wait until another app's authenticator answers ``key`` with ``expected``."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while await refusal_there(keys, key) != expected:
        assert asyncio.get_running_loop().time() < deadline, expected
        await asyncio.sleep(0.02)


async def audited(harness: Harness, event: str) -> list[Any]:
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=(event,)), PageRequest(size=100)
    )
    return list(page.items)


async def test_deactivation_suspends_keys_until_they_are_re_enabled(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    first = await harness.create_key(user_token, name="first")
    second = await harness.create_key(user_token, name="second")
    assert (await works(harness, first["key"])).status_code == 200

    off = await harness.client.put(
        "/api/users/alice", json={"activated": False}, headers=bearer(admin_token)
    )
    assert off.status_code == 200
    on = await harness.client.put(
        "/api/users/alice", json={"activated": True}, headers=bearer(admin_token)
    )
    assert on.status_code == 200

    for created in (first, second):
        refused = await works(harness, created["key"])
        assert refused.status_code == 401
        assert refused.json()["code"] == "api_key_suspended"  # not api_key_owner_inactive
    harness.clock.advance(milliseconds=1)
    token = await harness.login("alice", USER_PASSWORD)  # the owner is active again
    listed = {
        key["name"]: key for key in (await harness.client.get(KEYS, headers=bearer(token))).json()
    }
    assert listed["first"]["status"] == "suspended"
    assert listed["first"]["suspendedAt"] is not None

    resumed = await harness.client.post(f"{KEYS}/{first['id']}/resume", headers=bearer(token))
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "active"
    assert resumed.json()["suspendedAt"] is None
    assert (await works(harness, first["key"])).status_code == 200
    assert (await works(harness, second["key"])).json()["code"] == "api_key_suspended"
    # An admin may re-enable someone else's key.
    by_admin = await harness.client.post(
        f"{KEYS}/{second['id']}/resume", headers=bearer(admin_token)
    )
    assert by_admin.status_code == 200
    assert (await works(harness, second["key"])).status_code == 200

    suspended = await audited(harness, "API_KEY_SUSPENDED")
    assert sorted(event.api_key_name for event in suspended) == ["first", "second"]
    assert all(event.details == {"cause": "deactivated"} for event in suspended)
    assert all(event.actor_login == "admin" for event in suspended)
    deactivated = await audited(harness, "USER_DEACTIVATED")
    assert deactivated[0].details["suspendedApiKeys"] == 2
    resumes = await audited(harness, "API_KEY_RESUMED")
    assert sorted((e.api_key_name, e.actor_login) for e in resumes) == [
        ("first", "alice"),
        ("second", "admin"),
    ]


async def test_a_key_cannot_re_enable_itself_and_revoked_stays_revoked(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    created = await harness.create_key(user_token, name="first")
    other = await harness.create_key(user_token, name="other")
    await harness.client.put(
        "/api/users/alice", json={"activated": False}, headers=bearer(admin_token)
    )
    await harness.client.put(
        "/api/users/alice", json={"activated": True}, headers=bearer(admin_token)
    )
    # A suspended key cannot even authenticate; an active one of the same owner may not
    # re-enable it (setting credentials needs a password session).
    harness.clock.advance(milliseconds=1)
    token = await harness.login("alice", USER_PASSWORD)
    await harness.client.post(f"{KEYS}/{other['id']}/resume", headers=bearer(token))
    denied = await harness.client.post(
        f"{KEYS}/{created['id']}/resume", headers=key_header(other["key"])
    )
    assert denied.status_code == 403
    assert denied.json()["code"] == "session_required"
    revoked = await harness.client.delete(f"{KEYS}/{created['id']}", headers=bearer(token))
    assert revoked.status_code == 204
    again = await harness.client.post(f"{KEYS}/{created['id']}/resume", headers=bearer(token))
    assert again.status_code == 409
    assert (await works(harness, created["key"])).json()["code"] == "invalid_api_key"


async def test_a_password_reset_can_revoke_the_keys(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    kept = await harness.create_key(user_token, name="kept")
    reset = await harness.client.put(
        "/api/users/alice/password", json={"newPassword": NEW_PASSWORD}, headers=bearer(admin_token)
    )
    assert reset.status_code == 204
    assert (await works(harness, kept["key"])).status_code == 200  # without the flag

    harness.clock.advance(milliseconds=1)
    token = await harness.login("alice", NEW_PASSWORD)
    doomed = await harness.create_key(token, name="doomed")
    reset = await harness.client.put(
        "/api/users/alice/password",
        json={"newPassword": USER_PASSWORD + "-2", "revokeApiKeys": True},
        headers=bearer(admin_token),
    )
    assert reset.status_code == 204
    for created in (kept, doomed):
        refused = await works(harness, created["key"])
        assert refused.status_code == 401
        assert refused.json()["code"] == "invalid_api_key"
    revocations = await audited(harness, "API_KEY_REVOKED")
    assert sorted((e.api_key_name, e.details["cause"]) for e in revocations) == [
        ("doomed", "password_reset"),
        ("kept", "password_reset"),
    ]
    resets = await audited(harness, "PASSWORD_RESET")
    assert sorted(str(event.details.get("revokedApiKeys")) for event in resets) == ["2", "None"]


async def test_log_out_everywhere_can_revoke_the_keys(harness: Harness, user_token: str) -> None:
    kept = await harness.create_key(user_token, name="kept")
    plain = await harness.client.post("/api/account/logout-all", headers=bearer(user_token))
    assert plain.status_code == 204
    assert (await works(harness, kept["key"])).status_code == 200

    harness.clock.advance(milliseconds=1)
    token = await harness.login("alice", USER_PASSWORD)
    revoking = await harness.client.post(
        "/api/account/logout-all", json={"revokeApiKeys": True}, headers=bearer(token)
    )
    assert revoking.status_code == 204
    assert (await works(harness, kept["key"])).json()["code"] == "invalid_api_key"
    assert (await harness.client.get("/api/account", headers=bearer(token))).status_code == 401
    logouts = await audited(harness, "LOGOUT_ALL")
    assert sorted(str((e.details or {}).get("revokedApiKeys")) for e in logouts) == ["1", "None"]
    revoked = await audited(harness, "API_KEY_REVOKED")
    assert [(e.api_key_name, e.details) for e in revoked] == [("kept", {"cause": "logout_all"})]
    bad = await harness.client.post(
        "/api/account/logout-all", json={"revokeApiKeys": "maybe"}, headers=bearer(token)
    )
    assert bad.status_code == 401  # the token is dead already: never a 500


async def test_review_lists_keys_open_to_every_address_as_unrestricted(
    harness: Harness, admin_token: str
) -> None:
    for name, allowed in (
        ("none", []),
        ("all-v4", ["0.0.0.0/0"]),
        ("all-v6", ["10.0.0.0/8", "::/0"]),
        ("halves", ["0.0.0.0/1", "128.0.0.0/1"]),
        ("restricted", ["10.0.0.0/8", "2001:db8::/32"]),
    ):
        await harness.create_key(admin_token, name=name, allowedIp=allowed)
    review = await harness.client.get(f"{KEYS}/review", headers=bearer(admin_token))
    assert review.status_code == 200
    assert sorted(key["name"] for key in review.json()["unrestricted"]) == [
        "all-v4",
        "all-v6",
        "halves",
        "none",
    ]


async def test_suspension_and_resumption_reach_another_app(
    harness: Harness, settings: Settings, clock: FakeClock, admin_token: str, user_token: str
) -> None:
    """Another app on the same database (a worker or node) that has the key cached
    refuses it once the owner is deactivated, and keeps refusing after the owner is
    reactivated, until the key is re-enabled (the change feed, as for revocations)."""
    created = await harness.create_key(user_token, name="shared")
    key = created["key"]
    other = create_app(settings, clock=clock)
    async with other.router.lifespan_context(other):
        keys = other.state.services.key_auth
        assert (await keys.authenticate(key, LOOPBACK)).login == "alice"  # cached
        admin = bearer(admin_token)
        await harness.client.put("/api/users/alice", json={"activated": False}, headers=admin)
        await eventually_there(keys, key, "api_key_owner_inactive")
        await harness.client.put("/api/users/alice", json={"activated": True}, headers=admin)
        # The owner is back, the key is not.
        await eventually_there(keys, key, "api_key_suspended")
        await asyncio.sleep(0.2)  # several more polls of the change feed
        assert await refusal_there(keys, key) == "api_key_suspended"
        resumed = await harness.client.post(f"{KEYS}/{created['id']}/resume", headers=admin)
        assert resumed.status_code == 200
        await eventually_there(keys, key, None)


async def test_regenerating_a_suspended_key_re_enables_it_with_the_new_secret_only(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """UTMStack's UI offers no "re-enable", only regenerate: the owner's regeneration
    (a password session) lifts the suspension, the held-back secret never works again
    (no grace, even when asked for), and both are audited."""
    created = await harness.create_key(user_token, name="held")
    admin = bearer(admin_token)
    for activated in (False, True):
        changed = await harness.client.put(
            "/api/users/alice", json={"activated": activated}, headers=admin
        )
        assert changed.status_code == 200
    harness.clock.advance(milliseconds=1)
    token = await harness.login("alice", USER_PASSWORD)

    regenerated = await harness.client.post(
        f"{KEYS}/{created['id']}/generate?graceSeconds=3600", headers=bearer(token)
    )

    assert regenerated.status_code == 200, regenerated.text
    assert (await works(harness, regenerated.text)).status_code == 200
    assert (await works(harness, created["key"])).json()["code"] == "invalid_api_key"
    listed = (await harness.client.get(KEYS, headers=bearer(token))).json()
    assert [key["status"] for key in listed if key["name"] == "held"] == ["active"]
    [resumed] = await audited(harness, "API_KEY_RESUMED")
    assert (resumed.api_key_name, resumed.actor_login, resumed.details) == (
        "held",
        "alice",
        {"cause": "regenerated"},
    )
    [rotation] = await audited(harness, "API_KEY_REGENERATED")
    assert rotation.details == {"graceSeconds": 0}


async def test_the_operators_regeneration_leaves_a_suspended_key_suspended(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """`authgate keys rotate` (no caller) on the key of an owner who may still be
    deactivated: the new secret stays suspended (a reactivation without
    AUTHGATE_API_KEY_RESUME_ON_REACTIVATION must not bring the key back)."""
    created = await harness.create_key(user_token, name="held")
    off = await harness.client.put(
        "/api/users/alice", json={"activated": False}, headers=bearer(admin_token)
    )
    assert off.status_code == 200
    plaintext = await harness.services.api_keys.regenerate(None, key_ref(created["id"]))
    on = await harness.client.put(
        "/api/users/alice", json={"activated": True}, headers=bearer(admin_token)
    )
    assert on.status_code == 200
    assert (await works(harness, plaintext)).json()["code"] == "api_key_suspended"
    assert await audited(harness, "API_KEY_RESUMED") == []


async def test_a_deactivation_ends_a_rotations_grace_for_good(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """A leaked key rotated with a grace period, then its owner deactivated: the
    previous secret must not come back when the key is re-enabled (attack review)."""
    created = await harness.create_key(user_token, name="leaked")
    rotated = await harness.client.post(
        f"{KEYS}/{created['id']}/generate?graceSeconds=3600", headers=bearer(user_token)
    )
    assert rotated.status_code == 200, rotated.text
    assert (await works(harness, created["key"])).status_code == 200  # in its grace
    admin = bearer(admin_token)
    for activated in (False, True):
        changed = await harness.client.put(
            "/api/users/alice", json={"activated": activated}, headers=admin
        )
        assert changed.status_code == 200
        async with harness.services.db.session() as session:
            grace = await session.scalar(
                select(ApiKey.previous_secret_hash).where(ApiKey.name == "leaked")
            )
        assert grace is None  # ended by the suspension itself
    harness.clock.advance(milliseconds=1)
    token = await harness.login("alice", USER_PASSWORD)

    resumed = await harness.client.post(f"{KEYS}/{created['id']}/resume", headers=bearer(token))

    assert resumed.status_code == 200, resumed.text
    assert (await works(harness, rotated.text)).status_code == 200
    assert (await works(harness, created["key"])).json()["code"] == "invalid_api_key"


async def test_re_enabling_ends_a_grace_a_suspension_left(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """A key suspended while its grace was left running (as before the fix above): the
    re-enabling ends it."""
    created = await harness.create_key(user_token, name="older")
    rotated = await harness.client.post(
        f"{KEYS}/{created['id']}/generate?graceSeconds=3600", headers=bearer(user_token)
    )
    assert rotated.status_code == 200
    async with harness.services.db.session() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.name == "older"))
        assert row is not None
        previous = (row.previous_secret_hash, row.previous_valid_until)
    off = await harness.client.put(
        "/api/users/alice", json={"activated": False}, headers=bearer(admin_token)
    )
    assert off.status_code == 200
    async with harness.services.db.transaction() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.name == "older")
            .values(previous_secret_hash=previous[0], previous_valid_until=previous[1])
        )
    on = await harness.client.put(
        "/api/users/alice", json={"activated": True}, headers=bearer(admin_token)
    )
    assert on.status_code == 200

    resumed = await harness.client.post(
        f"{KEYS}/{created['id']}/resume", headers=bearer(admin_token)
    )

    assert resumed.status_code == 200, resumed.text
    assert (await works(harness, created["key"])).json()["code"] == "invalid_api_key"
    assert (await works(harness, rotated.text)).status_code == 200
