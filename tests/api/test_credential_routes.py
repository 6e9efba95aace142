"""Setting credentials needs a user session from a password login, never an API key
(issue 10, item 3): a key with the scopes read, write and admin, owned by an admin,
could replace the owner's password and create administrators with a chosen password.

Every credential-setting route carries the ``sets_credentials`` mark; the first test
lists the app's routes and checks that exactly the expected ones carry it and that
their handlers enforce it; the others attack each REST route with such a key."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute

from authgate.api.access import AuthenticatedRoute, credential_setting_of
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from authgate.web.pages import PageRoute
from tests.api.test_api_keys import KEYS, expiry, key_header
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, Harness, bearer

NEW_PASSWORD = "chosen-by-whoever-holds-the-key"

# Every route that sets credentials: passwords, users with a password, roles and
# activation, API keys created, edited, regenerated or re-enabled. (A new e-mail address
# is told from the one sent back only by the user's record: the user-editing endpoints
# check it themselves, `require_password_session_for_target`, and
# test_a_key_cannot_redirect_a_users_email attacks each, PUT /api/v1/users/{id} included.)
CREDENTIAL_ROUTES = {
    ("POST", "/api/users"),
    ("POST", "/api/users/local"),
    ("PUT", "/api/users"),
    ("PUT", "/api/users/{login}"),
    ("PUT", "/api/users/{login}/password"),
    ("POST", "/api/account/change-password"),
    ("POST", "/api/api-keys"),
    ("PUT", "/api/api-keys/{key_id:key_ref}"),
    ("POST", "/api/api-keys/{key_id:key_ref}/generate"),
    ("POST", "/api/api-keys/{key_id:key_ref}/resume"),
    ("POST", "/settings/account/password"),
    ("POST", "/settings/users"),
    ("POST", "/settings/users/{login}/edit"),
    ("POST", "/settings/users/{login}/password"),
    ("POST", "/settings/users/{login}/reset-link"),
    ("POST", "/settings/api-keys"),
    ("POST", "/settings/api-keys/{key_id}/edit"),
    ("POST", "/settings/api-keys/{key_id}/regenerate"),
    ("POST", "/settings/api-keys/{key_id}/resume"),
    # The second factor (issue 14): enrolling, new recovery codes, turning off, reset.
    ("POST", "/api/tfa/init"),
    ("POST", "/api/tfa/verify"),
    ("POST", "/api/tfa/complete"),
    ("POST", "/api/account/tfa/recovery-codes"),
    ("POST", "/api/account/tfa/disable"),
    ("DELETE", "/api/users/{login}/tfa"),
    ("POST", "/settings/account/tfa/start"),
    ("POST", "/settings/account/tfa/confirm"),
    ("POST", "/settings/account/tfa/recovery-codes"),
    ("POST", "/settings/account/tfa/disable"),
    ("POST", "/settings/users/{login}/tfa/reset"),
    # UTMStack v12's /api/v1 (issue 17).
    ("POST", "/api/v1/auth/change-password"),
    ("POST", "/api/v1/api-keys"),
    ("PUT", "/api/v1/api-keys/{key_id:v12_key_id}"),
    ("POST", "/api/v1/api-keys/{key_id:v12_key_id}/generate"),
    ("POST", "/api/v1/users"),
    ("PUT", "/api/v1/users/{user_id}"),
    ("PUT", "/api/v1/users/{user_id}/roles"),
    ("POST", "/api/v1/tfa/enroll"),
    ("POST", "/api/v1/tfa/disable"),
    ("POST", "/api/v1/users/{user_id}/tfa/disable"),
    # Ending the caller's other sessions: a session that skipped the second factor must
    # not end those that passed it (DELETE of one session other than the caller's own
    # checks it in the handler, `require_password_session_for_target`).
    ("DELETE", "/api/v1/auth/sessions"),
    # Service credentials give another service access to internal endpoints (issue 17).
    ("POST", "/api/service-credentials"),
    ("PUT", "/api/service-credentials/{credential_id}"),
    ("POST", "/api/service-credentials/{credential_id}/rotate"),
    ("POST", "/settings/service-credentials"),
    ("POST", "/settings/service-credentials/{credential_id}/rotate"),
    ("POST", "/settings/account/sessions/revoke-others"),
    ("POST", "/settings/account/logout-all"),
    ("POST", "/api/account/logout-all"),
}
# Public routes that *check* a password (the logins): nothing to protect with a session.
PASSWORD_CHECKING_LOGINS = {
    ("POST", "/api/authenticate"),
    ("POST", "/settings/login"),
    ("POST", "/api/v1/auth/login"),
}
# Public password recovery: asking for a link sets nothing; finishing is authorised by
# the single-use key of the link, not by a session (issue 13).
PASSWORD_RECOVERY = {
    ("POST", "/api/account/reset-password/init"),
    ("POST", "/api/account/reset-password/finish"),
    ("POST", "/settings/reset"),
    ("POST", "/settings/reset/finish"),
    ("POST", "/api/v1/auth/reset-password/init"),
    ("POST", "/api/v1/auth/reset-password/finish"),
}
# Checks the caller's own password like a login (throttled, counted); sets nothing.
PASSWORD_CHECKS = {("POST", "/api/check-credentials")}
# Words in a path or body field that mean a route probably sets credentials.
TELLTALE_WORDS = ("password", "generate", "regenerate")


def routes_of(harness: Harness) -> list[tuple[str, str, APIRoute]]:
    return [
        (method, route.path, route)
        for route in harness.app.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods or ())
    ]


def body_fields(route: APIRoute) -> set[str]:
    body = route.body_field
    if body is None:
        return set()
    model = body.field_info.annotation
    fields = getattr(model, "model_fields", None)
    return set(fields) if fields else {body.name}


def test_exactly_the_credential_setting_routes_are_marked_and_enforced(harness: Harness) -> None:
    routes = routes_of(harness)
    marked = {(method, path) for method, path, route in routes if _enforced(route)}
    assert marked == CREDENTIAL_ROUTES
    for method, path, route in routes:
        # A mark is only worth something on a route class that enforces it, and a mark
        # the handler ignores (decorators in the wrong order) is a bug.
        if credential_setting_of(route.endpoint) is not None:
            assert isinstance(route, AuthenticatedRoute | PageRoute), path
            assert _enforced(route), f"{method} {path}: marked, but not enforced"
        # A new route that looks like it sets credentials must be marked (or justified).
        words = {path.lower(), *(field.lower() for field in body_fields(route))}
        if any(w in text for w in TELLTALE_WORDS for text in words):
            assert (method, path) in CREDENTIAL_ROUTES | PASSWORD_CHECKING_LOGINS | (
                PASSWORD_RECOVERY | PASSWORD_CHECKS
            ) | {
                ("GET", path)  # reading a page or resource is not setting anything
            }, f"{method} {path} looks credential-setting but is not marked"


def _enforced(route: APIRoute) -> bool:
    return getattr(route, "credential_setting", None) is not None


@pytest.fixture
async def admin_key(harness: Harness, admin_token: str) -> str:
    """A key with every scope, owned by the administrator ``admin``."""
    created = await harness.create_key(
        admin_token, name="all-scopes", scopes=["read", "write", "admin"]
    )
    key: str = created["key"]
    return key


async def refused(harness: Harness, key: str, method: str, path: str, body: Any = None) -> None:
    response = await harness.client.request(method, path, json=body, headers=key_header(key))
    assert response.status_code == 403, (path, response.text)
    assert response.json()["code"] == "session_required"
    assert "user session" in response.json()["message"]


async def can_log_in(harness: Harness, login: str, password: str) -> bool:
    response = await harness.client.post(
        "/api/authenticate", json={"username": login, "password": password}
    )
    return response.status_code == 200


async def test_a_key_cannot_reset_a_password(harness: Harness, admin_key: str) -> None:
    await refused(
        harness, admin_key, "PUT", "/api/users/admin/password", {"newPassword": NEW_PASSWORD}
    )
    assert await can_log_in(harness, "admin", ADMIN_PASSWORD)
    assert not await can_log_in(harness, "admin", NEW_PASSWORD)


async def test_a_key_cannot_create_a_user(harness: Harness, admin_key: str) -> None:
    body = {
        "login": "mallory",
        "email": "mallory@example.com",
        "password": NEW_PASSWORD,
        "authorities": ["ROLE_ADMIN", "ROLE_USER"],
    }
    await refused(harness, admin_key, "POST", "/api/users", body)
    assert not await can_log_in(harness, "mallory", NEW_PASSWORD)
    missing = await harness.client.get("/api/users/mallory", headers=key_header(admin_key))
    assert missing.status_code == 404


async def test_a_key_cannot_grant_admin_or_reactivate(
    harness: Harness, admin_key: str, admin_token: str
) -> None:
    await harness.create_user("alice")
    for body in (
        {"authorities": ["ROLE_ADMIN", "ROLE_USER"]},
        {"authorities": ["ROLE_ADMIN"], "email": "alice@example.com"},
        {"authorities": "ROLE_ADMIN"},  # not a list: refused before validation
        {"activated": True},
        {"activated": "true"},  # pydantic would read it as True
    ):
        await refused(harness, admin_key, "PUT", "/api/users/alice", body)
    # A body that cannot be read is taken to set credentials.
    response = await harness.client.put(
        "/api/users/alice",
        content=b'{"authorities": ["ROLE_ADMIN"',
        headers={**key_header(admin_key), "Content-Type": "application/json"},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "session_required"
    alice = (await harness.client.get("/api/users/alice", headers=bearer(admin_token))).json()
    assert alice["authorities"] == ["ROLE_USER"]


async def test_a_key_may_still_deactivate_and_demote(
    harness: Harness, admin_key: str, admin_token: str
) -> None:
    """Taking access away is not setting credentials: an admin-scoped key can lock an
    account in an emergency, but cannot turn it back on."""
    await harness.create_user("alice")
    await harness.create_user("bob", admin=True)
    off = await harness.client.put(
        "/api/users/alice", json={"activated": False}, headers=key_header(admin_key)
    )
    assert off.status_code == 200, off.text
    assert off.json()["activated"] is False
    demoted = await harness.client.put(
        "/api/users/bob",
        json={"authorities": ["ROLE_USER"], "firstName": "Bob"},
        headers=key_header(admin_key),
    )
    assert demoted.status_code == 200, demoted.text
    assert demoted.json()["authorities"] == ["ROLE_USER"]
    await refused(harness, admin_key, "PUT", "/api/users/alice", {"activated": True})
    # The same changes from a password session work.
    on = await harness.client.put(
        "/api/users/alice", json={"activated": True}, headers=bearer(admin_token)
    )
    assert on.status_code == 200, on.text


async def test_a_key_cannot_redirect_a_users_email(
    harness: Harness, admin_key: str, admin_token: str
) -> None:
    """The e-mail address receives password-reset links and e-mailed codes: a key that
    could set it would reset the password through it (the attack review's account
    takeover). A new address needs a password session on every route that sets it;
    the unchanged address a whole DTO sends back does not."""
    await harness.create_user("alice")
    alice = await harness.services.users.get_user("alice")
    admin = await harness.services.users.get_user("admin")
    taken = {"email": "attacker@evil.example"}
    await refused(harness, admin_key, "PUT", "/api/users/alice", taken)
    await refused(harness, admin_key, "PUT", "/api/users/admin", taken)
    await refused(harness, admin_key, "PUT", "/api/users", {"login": "alice", **taken})
    v12 = await harness.client.put(
        f"/api/v1/users/{admin.public_id}", json=taken, headers=key_header(admin_key)
    )
    assert v12.status_code == 403, v12.text  # (v12's error body has no code)
    assert "user session" in v12.text
    for before in (alice, admin):
        assert (await harness.services.users.get_user(before.login)).email == before.email
    # A whole DTO with the same address (as stored, or in other case) is no credential
    # change: the emergency deactivation still works.
    dto = (await harness.client.get("/api/users/alice", headers=bearer(admin_token))).json()
    off = await harness.client.put(
        "/api/users",
        json={**dto, "email": dto["email"].upper(), "activated": False},
        headers=key_header(admin_key),
    )
    assert off.status_code == 200, off.text
    renamed = await harness.client.put(
        f"/api/v1/users/{alice.public_id}",
        json={"email": "alice@example.com", "name": "Alice Liddell"},
        headers=key_header(admin_key),
    )
    assert renamed.status_code == 200, renamed.text
    # A password session may set it.
    moved = await harness.client.put(
        "/api/users/alice", json={"email": "alice@new.example"}, headers=bearer(admin_token)
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["email"] == "alice@new.example"
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=("API_KEY_ACCESS_FAILURE",)), PageRequest(size=50)
    )
    refusals = [event for event in page.items if event.reason == "session_required"]
    assert len(refusals) == 4


async def test_a_key_cannot_change_its_owners_password(harness: Harness, admin_key: str) -> None:
    body = {"currentPassword": ADMIN_PASSWORD, "newPassword": NEW_PASSWORD}
    await refused(harness, admin_key, "POST", "/api/account/change-password", body)
    assert await can_log_in(harness, "admin", ADMIN_PASSWORD)


async def test_a_key_cannot_create_edit_or_regenerate_keys(
    harness: Harness, admin_key: str, admin_token: str
) -> None:
    other = await harness.create_key(admin_token, name="other")
    body = {"name": "minted", "allowedIp": [], "expiresAt": expiry(harness.clock)}
    await refused(harness, admin_key, "POST", KEYS, body)
    await refused(harness, admin_key, "PUT", f"{KEYS}/{other['id']}", {**body, "name": "other"})
    await refused(harness, admin_key, "POST", f"{KEYS}/{other['id']}/generate")
    listed = await harness.client.get(KEYS, headers=bearer(admin_token))
    assert sorted(key["name"] for key in listed.json()) == ["all-scopes", "other"]
    unchanged = await harness.client.get(f"{KEYS}/{other['id']}", headers=bearer(admin_token))
    assert unchanged.json()["allowedIp"] == other["allowedIp"]
    assert unchanged.json()["generatedAt"] == other["generatedAt"]


async def test_refusals_are_audited_with_the_key(harness: Harness, admin_key: str) -> None:
    await refused(
        harness, admin_key, "PUT", "/api/users/admin/password", {"newPassword": NEW_PASSWORD}
    )
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=("API_KEY_ACCESS_FAILURE",)), PageRequest(size=50)
    )
    reasons = {(event.reason, event.api_key_name, event.actor_login) for event in page.items}
    assert ("session_required", "all-scopes", "admin") in reasons


async def test_password_sessions_still_set_credentials(harness: Harness, admin_token: str) -> None:
    """The same requests with the administrator's token work (the mark refuses keys, not
    people)."""
    created = await harness.client.post(
        "/api/users",
        json={"login": "carol", "email": "carol@example.com", "password": USER_PASSWORD},
        headers=bearer(admin_token),
    )
    assert created.status_code == 201, created.text
    reset = await harness.client.put(
        "/api/users/carol/password",
        json={"newPassword": NEW_PASSWORD},
        headers=bearer(admin_token),
    )
    assert reset.status_code == 204, reset.text
    assert await can_log_in(harness, "carol", NEW_PASSWORD)
