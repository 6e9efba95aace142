"""Roles with permissions (issue 17): who may call what on the admin API, escalation
attempts, API keys never exceeding their owner, forward-auth rules with a permission,
and the ``roles``/``permissions`` claims of tokens.

The roles are UTMStack v12's (``backend/modules/iam``: ROLE_ADMIN every permission,
ROLE_ANALYST every read plus alert rules, ROLE_VIEWER every read) beside v10/v11's
ROLE_USER, which grants no permission.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest

from authgate.api.access import AdminRoute
from authgate.services.forward_auth import ForwardAuthRuleSetting
from authgate.services.user_fields import NewUser, UserChanges
from authgate.settings import Settings
from tests.api.test_alert_rules import NEW_RULE
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, Harness, bearer, test_settings

V1_USERS = "/api/v1/users"
VERIFY = "/api/auth/verify"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return test_settings(
        tmp_path / "data",
        database_url=database_url,
        trusted_proxies=["127.0.0.1"],
        forward_auth_rules=[
            ForwardAuthRuleSetting(path_prefix="/reports/", permission="audit.read")
        ],
    )


async def _token(harness: Harness, login: str, *roles: str) -> str:
    """A user holding ``roles`` (and ROLE_USER), signed in."""
    await harness.services.users.create_user(
        NewUser(
            login=login,
            email=f"{login}@example.com",
            password=USER_PASSWORD,
            authorities=frozenset({"ROLE_USER", *roles}),
        )
    )
    return await harness.login(login, USER_PASSWORD)


async def _admin(harness: Harness) -> str:
    await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    return await harness.login("admin", ADMIN_PASSWORD)


async def _public_id(harness: Harness, login: str) -> str:
    return (await harness.services.users.get_user(login)).public_id


# Safe requests every read permission covers, across the admin API.
READS = [
    V1_USERS,
    "/api/v1/roles",
    "/api/users",
    "/api/users/authorities",
    "/api/audit-events",
    "/api/alert-rules",
    "/api/alerts",
    "/api/api-keys/review",
    "/management/prometheus",
]


async def _writes(harness: Harness, target: str) -> list[tuple[str, str, Any]]:
    """Changes on the admin API (one per permission that writes)."""
    public_id = await _public_id(harness, target)
    return [
        ("PUT", f"{V1_USERS}/{public_id}", {"name": "Changed"}),
        ("DELETE", f"{V1_USERS}/{public_id}", None),
        ("PUT", f"/api/users/{target}", {"activated": False}),
        ("DELETE", f"/api/users/{target}", None),
        ("DELETE", f"/api/users/{target}/tfa", None),
    ]


async def test_a_viewer_reads_everything_and_changes_nothing(harness: Harness) -> None:
    await harness.create_user("alice", USER_PASSWORD)
    viewer = bearer(await _token(harness, "vera", "ROLE_VIEWER"))
    for path in READS:
        response = await harness.client.get(path, headers=viewer)
        assert response.status_code == 200, (path, response.text)
    for method, path, body in await _writes(harness, "alice"):
        response = await harness.client.request(method, path, json=body, headers=viewer)
        assert response.status_code == 403, (method, path, response.text)
    creating = await harness.client.post(
        V1_USERS, json={"email": "new@example.com", "password": "a-long-password-1"}, headers=viewer
    )
    assert creating.status_code == 403
    assert creating.json() == {"error": "This needs the users.write permission"}
    rule = await harness.client.post("/api/alert-rules", json=NEW_RULE, headers=viewer)
    assert rule.status_code == 403
    assert rule.json()["code"] == "forbidden"
    assert (await harness.services.users.get_user("alice")).activated


async def test_an_analyst_reads_and_manages_alert_rules_only(harness: Harness) -> None:
    await harness.create_user("alice", USER_PASSWORD)
    analyst = bearer(await _token(harness, "anna", "ROLE_ANALYST"))
    for path in READS:
        response = await harness.client.get(path, headers=analyst)
        assert response.status_code == 200, (path, response.text)
    rule = await harness.client.post("/api/alert-rules", json=NEW_RULE, headers=analyst)
    assert rule.status_code == 201, rule.text
    for method, path, body in await _writes(harness, "alice"):
        response = await harness.client.request(method, path, json=body, headers=analyst)
        assert response.status_code == 403, (method, path, response.text)


async def test_a_plain_user_has_no_admin_permission(harness: Harness) -> None:
    user = bearer(await _token(harness, "ursula"))
    for path in READS:
        response = await harness.client.get(path, headers=user)
        assert response.status_code == 403, (path, response.text)
    # Their own account stays theirs.
    assert (await harness.client.get("/api/v1/auth/me", headers=user)).status_code == 200
    assert (await harness.client.get("/api/api-keys", headers=user)).status_code == 200


async def test_an_admin_holds_every_permission(harness: Harness) -> None:
    admin = bearer(await _admin(harness))
    await harness.create_user("alice", USER_PASSWORD)
    for path in READS:
        assert (await harness.client.get(path, headers=admin)).status_code == 200, path
    public_id = await _public_id(harness, "alice")
    roles = await harness.client.put(
        f"{V1_USERS}/{public_id}/roles", json={"role_names": ["ROLE_VIEWER"]}, headers=admin
    )
    assert roles.status_code == 204
    deleted = await harness.client.delete(f"{V1_USERS}/{public_id}", headers=admin)
    assert deleted.status_code == 204


# -- escalation ---------------------------------------------------------------------------


async def test_a_viewer_cannot_give_themselves_roles(harness: Harness) -> None:
    """The attack: a viewer PUTs ROLE_ADMIN on their own account, through v12 and v10."""
    viewer = bearer(await _token(harness, "vera", "ROLE_VIEWER"))
    own_id = await _public_id(harness, "vera")
    v12 = await harness.client.put(
        f"{V1_USERS}/{own_id}/roles", json={"role_names": ["ROLE_ADMIN"]}, headers=viewer
    )
    assert v12.status_code == 403
    v10 = await harness.client.put(
        "/api/users/vera", json={"authorities": ["ROLE_ADMIN", "ROLE_USER"]}, headers=viewer
    )
    assert v10.status_code == 403
    assert (await harness.services.users.get_user("vera")).authorities == {
        "ROLE_USER",
        "ROLE_VIEWER",
    }


async def test_an_analyst_cannot_promote_anyone(harness: Harness) -> None:
    await harness.create_user("alice", USER_PASSWORD)
    analyst = bearer(await _token(harness, "anna", "ROLE_ANALYST"))
    for login in ("alice", "anna"):
        response = await harness.client.put(
            f"{V1_USERS}/{await _public_id(harness, login)}/roles",
            json={"role_names": ["ROLE_ADMIN"]},
            headers=analyst,
        )
        assert response.status_code == 403, login
    assert (await harness.services.users.get_user("anna")).authorities == {
        "ROLE_USER",
        "ROLE_ANALYST",
    }


async def test_an_admin_key_without_the_admin_scope_has_no_permission(harness: Harness) -> None:
    """A key of an admin holds permissions only with the admin scope."""
    admin = await _admin(harness)
    key = (await harness.create_key(admin, "no-admin", scopes=["read", "write"]))["key"]
    response = await harness.client.get(V1_USERS, headers={"Utm-Api-Key": key})
    assert response.status_code == 403
    assert "admin scope" in response.json()["error"]


async def test_an_admin_scoped_key_follows_its_owners_permissions(harness: Harness) -> None:
    """The admin scope lends the owner's permissions, never more: an owner demoted to
    viewer leaves the key able to read and unable to change, at once."""
    admin = await _admin(harness)
    await harness.create_user("root2", ADMIN_PASSWORD, admin=True)  # the last admin stays
    key = (await harness.create_key(admin, "ops", scopes=["read", "write", "admin"]))["key"]
    headers = {"Utm-Api-Key": key}
    assert (await harness.client.get(V1_USERS, headers=headers)).status_code == 200
    await harness.services.users.update_user(
        "admin",
        UserChanges(authorities=frozenset({"ROLE_USER", "ROLE_VIEWER"})),
        acting_user_id=None,
    )
    assert (await harness.client.get(V1_USERS, headers=headers)).status_code == 200
    public_id = await _public_id(harness, "root2")
    change = await harness.client.put(
        f"{V1_USERS}/{public_id}", json={"name": "Taken over"}, headers=headers
    )
    assert change.status_code == 403
    assert change.json() == {"error": "This needs the users.write permission"}


async def test_a_key_cannot_hand_out_roles_even_with_the_admin_scope(harness: Harness) -> None:
    """Giving a role with permissions sets credentials: a password session only."""
    admin = await _admin(harness)
    await harness.create_user("alice", USER_PASSWORD)
    key = (await harness.create_key(admin, "ops", scopes=["read", "write", "admin"]))["key"]
    response = await harness.client.put(
        f"{V1_USERS}/{await _public_id(harness, 'alice')}/roles",
        json={"role_names": ["ROLE_ADMIN"]},
        headers={"Utm-Api-Key": key},
    )
    assert response.status_code == 403
    created = await harness.client.post(
        V1_USERS,
        json={"email": "mallory@example.com", "password": "chosen-by-the-key-holder"},
        headers={"Utm-Api-Key": key},
    )
    assert created.status_code == 403
    assert (await harness.services.users.get_user("alice")).authorities == {"ROLE_USER"}


@pytest.mark.parametrize(
    "names",
    [[" ROLE_ADMIN"], ["ROLE_ADMIN "], ["ROLE_ADMIN\t"], ["role_admin"], [["ROLE_ADMIN"]], [1]],
    ids=["leading-space", "trailing-space", "tab", "lower-case", "nested-list", "number"],
)
async def test_a_key_cannot_hand_out_roles_with_odd_spellings(
    harness: Harness, names: list[object]
) -> None:
    """The attack review's bypass: ``[" ROLE_ADMIN"]`` passed the session check (which
    compared names as sent) and the endpoint, which strips names, granted ROLE_ADMIN.
    Any spelling that is not exactly an unprivileged role needs a password session."""
    admin = await _admin(harness)
    await harness.create_user("alice", USER_PASSWORD)
    key = (await harness.create_key(admin, "ops", scopes=["read", "write", "admin"]))["key"]
    public_id = await _public_id(harness, "alice")
    response = await harness.client.put(
        f"{V1_USERS}/{public_id}/roles", json={"role_names": names}, headers={"Utm-Api-Key": key}
    )
    assert response.status_code == 403, response.text
    v10 = await harness.client.put(
        "/api/users/alice",
        json={"login": "alice", "authorities": names},
        headers={"Utm-Api-Key": key},
    )
    assert v10.status_code == 403, v10.text
    assert (await harness.services.users.get_user("alice")).authorities == {"ROLE_USER"}
    # ROLE_USER exactly grants no permission: a key may still give it.
    plain = await harness.client.put(
        f"{V1_USERS}/{public_id}/roles",
        json={"role_names": ["ROLE_USER"]},
        headers={"Utm-Api-Key": key},
    )
    assert plain.status_code == 204, plain.text


@pytest.mark.parametrize("path", ["/api/users", "/api/users/alice", "v12-roles"])
async def test_a_body_nested_too_deep_for_the_parser_is_refused_not_a_500(
    harness: Harness, path: str
) -> None:
    """The robustness review's 500: a key's body nested 1,000 deep made the session
    check's JSON parse raise RecursionError. It is a body that cannot be read: 403."""
    admin = await _admin(harness)
    await harness.create_user("alice", USER_PASSWORD)
    key = (await harness.create_key(admin, "ops", scopes=["read", "write", "admin"]))["key"]
    if path == "v12-roles":
        path = f"{V1_USERS}/{await _public_id(harness, 'alice')}/roles"
    response = await harness.client.put(
        path,
        content=b"[" * 5_000 + b"]" * 5_000,
        headers={"Utm-Api-Key": key, "Content-Type": "application/json"},
    )
    assert response.status_code == 403, response.text


async def test_a_key_cannot_rename_a_user_even_with_the_admin_scope(harness: Harness) -> None:
    """A new login is the name a user signs in with and the identity forward-auth hands
    upstream: renaming is for a password session, as granting a role is. The whole DTO
    sent back with its own login (a profile change) is not a rename."""
    admin = await _admin(harness)
    alice_id = await harness.create_user("alice", USER_PASSWORD)
    key = (await harness.create_key(admin, "ops", scopes=["read", "write", "admin"]))["key"]
    headers = {"Utm-Api-Key": key}
    renamed = await harness.client.put(
        "/api/users", json={"id": alice_id, "login": "root"}, headers=headers
    )
    profile = await harness.client.put(
        "/api/users", json={"id": alice_id, "login": "alice", "lastName": "L"}, headers=headers
    )
    assert (renamed.status_code, renamed.json()["code"]) == (403, "session_required")
    assert profile.status_code == 200, profile.text
    assert (await harness.services.users.get_user_by_id(alice_id)).login == "alice"
    by_session = await harness.client.put(
        "/api/users", json={"id": alice_id, "login": "root"}, headers=bearer(admin)
    )
    assert (by_session.status_code, by_session.json()["login"]) == (200, "root")


async def test_a_viewers_key_cannot_get_the_admin_scope(harness: Harness) -> None:
    viewer = await _token(harness, "vera", "ROLE_VIEWER")
    response = await harness.client.post(
        "/api/api-keys",
        json={"name": "try", "allowedIp": ["127.0.0.1"], "scopes": ["read", "admin"]},
        headers=bearer(viewer),
    )
    assert response.status_code == 422
    read_key = (await harness.create_key(viewer, "reader", scopes=["read"]))["key"]
    refused = await harness.client.get(V1_USERS, headers={"Utm-Api-Key": read_key})
    assert refused.status_code == 403


# -- forward-auth and tokens -----------------------------------------------------------------


def _proxied(token: str, uri: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "X-Original-URI": uri,
        "X-Original-Method": "GET",
        "X-Forwarded-For": "198.51.100.7",
    }


async def test_a_forward_auth_rule_may_require_a_permission(harness: Harness) -> None:
    """``permission = "audit.read"`` on /reports/: a viewer passes (its permissions are
    forwarded in X-Auth-Permissions), a plain user gets 403; other paths are unaffected."""
    viewer = await _token(harness, "vera", "ROLE_VIEWER")
    user = await _token(harness, "ursula")
    allowed = await harness.client.get(VERIFY, headers=_proxied(viewer, "/reports/weekly"))
    assert allowed.status_code == 200, allowed.text
    assert "audit.read" in allowed.headers["X-Auth-Permissions"].split(",")
    assert "users.write" not in allowed.headers["X-Auth-Permissions"]
    refused = await harness.client.get(VERIFY, headers=_proxied(user, "/reports/weekly"))
    assert refused.status_code == 403
    assert "audit.read" in refused.json()["message"]
    elsewhere = await harness.client.get(VERIFY, headers=_proxied(user, "/orders"))
    assert elsewhere.status_code == 200
    assert elsewhere.headers["X-Auth-Permissions"] == ""


def test_a_rule_with_an_unknown_permission_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown permission"):
        ForwardAuthRuleSetting(path_prefix="/reports/", permission="reports.raed")


async def test_tokens_carry_roles_and_permissions(harness: Harness) -> None:
    """v12's clients read ``roles`` and ``permissions`` (pkg/jwt); v10 and v12 logins
    issue both."""
    await _token(harness, "vera", "ROLE_VIEWER")
    v10 = await harness.login("vera", USER_PASSWORD)
    v12 = await harness.client.post(
        "/api/v1/auth/login", json={"login": "vera@example.com", "password": USER_PASSWORD}
    )
    for token in (v10, v12.json()["access_token"]):
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["roles"] == ["ROLE_USER", "ROLE_VIEWER"]
        assert "users.read" in claims["permissions"]
        assert not [p for p in claims["permissions"] if not p.endswith(".read")]


async def test_a_removed_role_takes_its_permissions_away_at_once(harness: Harness) -> None:
    """The token's claims are what it was issued with; authgate reads the roles the
    user still holds, so a demoted viewer's token stops reading at once."""
    admin = bearer(await _admin(harness))
    viewer = bearer(await _token(harness, "vera", "ROLE_VIEWER"))
    assert (await harness.client.get(V1_USERS, headers=viewer)).status_code == 200
    demoted = await harness.client.put(
        f"{V1_USERS}/{await _public_id(harness, 'vera')}/roles",
        json={"role_names": ["ROLE_USER"]},
        headers=admin,
    )
    assert demoted.status_code == 204
    assert (await harness.client.get(V1_USERS, headers=viewer)).status_code == 403


def test_every_admin_route_names_its_permission(harness: Harness) -> None:
    """An admin endpoint without ``requires_permission`` would need ROLE_ADMIN itself and
    shut the analyst and viewer out unnoticed: every one is marked, and the v12 routes
    with the permission issue 17 names."""
    marked = {
        (method, route.path): route.required_permission
        for route in harness.app.routes
        if isinstance(route, AdminRoute)
        for method in route.methods or ()
    }
    unmarked = sorted(key for key, permission in marked.items() if permission is None)
    assert unmarked == []
    assert marked[("GET", "/api/v1/users")] == "users.read"
    assert marked[("POST", "/api/v1/users")] == "users.write"
    assert marked[("PUT", "/api/v1/users/{user_id}")] == "users.write"
    assert marked[("DELETE", "/api/v1/users/{user_id}")] == "users.delete"
    assert marked[("GET", "/api/v1/roles")] == "roles.read"
    assert marked[("GET", "/api/v1/roles/{role_id:v12_role_id}")] == "roles.read"
    assert marked[("GET", "/api/v1/roles/permissions")] == "roles.read"
    assert marked[("POST", "/api/v1/roles")] == "roles.write"


async def test_api_keys_read_sees_every_key_and_only_api_keys_write_revokes_them(
    harness: Harness,
) -> None:
    """A viewer (``api_keys.read``) lists and reads everyone's keys; revoking someone
    else's needs ``api_keys.write`` (the key stays "not found" to a viewer), which an
    admin holds."""
    admin = bearer(await _admin(harness))
    await harness.create_user("alice", USER_PASSWORD)
    alice_key = await harness.create_key(await harness.login("alice", USER_PASSWORD), "alice-ci")
    viewer = bearer(await _token(harness, "vera", "ROLE_VIEWER"))
    listed = await harness.client.get("/api/api-keys", params={"all": "true"}, headers=viewer)
    assert [key["name"] for key in listed.json()] == ["alice-ci"]
    shown = await harness.client.get(f"/api/api-keys/{alice_key['id']}", headers=viewer)
    assert shown.status_code == 200
    revoke = f"/api/api-keys/{alice_key['id']}"
    assert (await harness.client.delete(revoke, headers=viewer)).status_code == 404
    user = bearer(await _token(harness, "ursula"))
    mine_only = await harness.client.get("/api/api-keys", params={"all": "true"}, headers=user)
    assert mine_only.json() == []
    assert (await harness.client.delete(revoke, headers=admin)).status_code == 204
