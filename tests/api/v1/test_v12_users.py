"""UTMStack v12's ``/api/v1/users`` and ``/api/v1/roles`` contract.

Each test names the v12 source it follows, in ``backend/modules/iam``: ``routes.go``,
``dto/user.go``, ``dto/rbac.go``, ``handler/user.go``, ``handler/rbac.go``,
``usecase/user.go`` and the role seed of ``backend/migrations/000001_init.up.sql``. Who
may call what (the permission matrix, escalation attempts) is in
``tests/api/test_permissions.py``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from authgate.app import create_app
from authgate.container import Services
from authgate.security.permissions import ROLE_ID_NAMESPACE
from authgate.services.password_resets import ResetKeyInvalid
from authgate.services.user_fields import NewUser
from authgate.settings import Settings
from authgate.storage.models import User
from tests.api.test_api_keys import key_header
from tests.conftest import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    FakeClock,
    Harness,
    bearer,
    format_instant,
    test_settings,
)
from tests.mail import running_smtp_server, smtp_settings

USERS = "/api/v1/users"
ROLES = "/api/v1/roles"
NEW_PASSWORD = "a-chosen-password-for-tests"


async def _admin(harness: Harness) -> dict[str, str]:
    await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    return bearer(await harness.login("admin", ADMIN_PASSWORD))


async def _public_id(harness: Harness, login: str) -> str:
    return (await harness.services.users.get_user(login)).public_id


@asynccontextmanager
async def harness_with(settings: Settings, clock: FakeClock) -> AsyncIterator[Harness]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Harness(app=app, services=services, client=client, clock=clock)


async def test_list_is_paged_with_page_info_and_searchable(harness: Harness) -> None:
    """routes.go GET /users, handler/user.go List: ``page`` (one-based), ``page_size``,
    ``search``; the answer is ``{data, page_info}`` of UserResponse."""
    admin = await _admin(harness)
    for login, first in (("alice", "Alice"), ("bob", "Robert"), ("carol", "Carol")):
        await harness.create_user(login, USER_PASSWORD, first_name=first)
    first_page = await harness.client.get(USERS, params={"page_size": "3"}, headers=admin)
    assert first_page.status_code == 200, first_page.text
    body = first_page.json()
    assert set(body) == {"data", "page_info"}
    assert body["page_info"] == {
        "page": 1,
        "page_size": 3,
        "total_items": 4,
        "total_pages": 2,
        "has_next": True,
        "has_prev": False,
    }
    assert len(body["data"]) == 3
    assert set(body["data"][0]) == {
        "id",
        "email",
        "name",
        "status",
        "lang_key",
        "image_url",
        "federated",
        "tfa_enabled",
        "roles",
    }
    roles = {user["email"]: user["roles"] for user in body["data"]}
    assert roles["admin@example.com"] == [
        {"name": "ROLE_ADMIN", "display_name": "Administrator"},
        {"name": "ROLE_USER", "display_name": "User"},
    ]
    assert roles["alice@example.com"] == [{"name": "ROLE_USER", "display_name": "User"}]
    second = await harness.client.get(USERS, params={"page": "2", "page_size": "3"}, headers=admin)
    assert second.json()["page_info"]["has_prev"] is True
    assert second.json()["page_info"]["has_next"] is False
    listed = {user["email"] for user in body["data"] + second.json()["data"]}
    assert listed == {f"{n}@example.com" for n in ("admin", "alice", "bob", "carol")}

    by_name = await harness.client.get(USERS, params={"search": "ROBERT"}, headers=admin)
    assert [user["email"] for user in by_name.json()["data"]] == ["bob@example.com"]
    by_mail = await harness.client.get(USERS, params={"search": "carol@"}, headers=admin)
    assert [user["name"] for user in by_mail.json()["data"]] == ["Carol"]
    literal = await harness.client.get(USERS, params={"search": "%"}, headers=admin)
    assert literal.json()["data"] == []
    bad = await harness.client.get(USERS, params={"page": "0"}, headers=admin)
    assert bad.status_code == 400
    assert list(bad.json()) == ["error"]


async def test_create_with_a_password(harness: Harness) -> None:
    """dto/user.go CreateUserRequest {email, name?, lang_key?, role_names?, password?}:
    201 UserResponse; the e-mail signs in through v12's login; unknown fields ignored."""
    admin = await _admin(harness)
    response = await harness.client.post(
        USERS,
        json={
            "email": "Grace@Example.com",
            "name": "Grace Hopper",
            "lang_key": "es",
            "role_names": ["ROLE_VIEWER"],
            "password": NEW_PASSWORD,
            "status": "suspended",
            "id": "00000000-0000-0000-0000-000000000000",
        },
        headers=admin,
    )
    assert response.status_code == 201, response.text
    user = response.json()
    assert user["email"] == "grace@example.com"
    assert user["name"] == "Grace Hopper"
    assert user["lang_key"] == "es"
    assert user["status"] == "active"
    assert user["id"] != "00000000-0000-0000-0000-000000000000"
    assert response.headers["Location"] == f"{USERS}/{user['id']}"
    stored = await harness.services.users.get_user("grace@example.com")
    assert stored.authorities == frozenset({"ROLE_VIEWER"})
    login = await harness.client.post(
        "/api/v1/auth/login", json={"login": "grace@example.com", "password": NEW_PASSWORD}
    )
    assert login.status_code == 200
    assert login.json()["user"]["id"] == user["id"]


async def test_create_defaults_to_role_user(harness: Harness) -> None:
    """handler/user.go Create: without ``role_names`` (or with none) the user is a plain
    user."""
    admin = await _admin(harness)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("dora@example.com", {}),
        ("dan@example.com", {"role_names": []}),
    ]
    for email, extra in cases:
        response = await harness.client.post(
            USERS, json={"email": email, "password": NEW_PASSWORD, **extra}, headers=admin
        )
        assert response.status_code == 201
        stored = await harness.services.users.get_user(email)
        assert stored.authorities == frozenset({"ROLE_USER"})


async def test_create_without_a_password_mails_an_invitation_valid_seven_days(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """usecase/user.go Create: no password → an invitation link, valid 7 days, by mail;
    the user is ``pending`` until the link sets a password, then ``active``."""
    with running_smtp_server() as (mail, port):
        settings = test_settings(
            tmp_path / "data",
            database_url=database_url,
            **smtp_settings(port),
            public_url="https://auth.example.com",
        )
        async with harness_with(settings, clock) as harness:
            admin = await _admin(harness)
            response = await harness.client.post(
                USERS, json={"email": "ivy@example.com", "name": "Ivy"}, headers=admin
            )
            assert response.status_code == 201, response.text
            assert response.json()["status"] == "pending"
            [message] = [m for m in mail.messages() if m["To"] == "ivy@example.com"]
            text = message.get_content()
            assert "7 days" in text
            link = next(word for word in text.split() if word.startswith("https://"))
            assert link.startswith("https://auth.example.com/settings/reset?key=")
            key = parse_qs(urlsplit(link).query)["key"][0]
            assert key not in response.text  # the link goes to the user only
            async with harness.services.db.session() as session:
                stored = await session.get(
                    User, (await harness.services.users.get_user("ivy@example.com")).id
                )
                assert stored is not None
                assert stored.reset_key_expires_at is not None
                valid_for = stored.reset_key_expires_at.replace(tzinfo=None) - clock().replace(
                    tzinfo=None
                )
            assert timedelta(days=7) - timedelta(minutes=1) < valid_for <= timedelta(days=7)
            harness.clock.advance(days=6)
            await harness.services.password_resets.finish(key, NEW_PASSWORD)
            user_id = response.json()["id"]
            admin = bearer(await harness.login("admin", ADMIN_PASSWORD))  # a day later
            again = await harness.client.get(f"{USERS}/{user_id}", headers=admin)
            assert again.json()["status"] == "active"


async def test_create_without_a_password_and_without_mail(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """usecase/user.go Create: the user is created ``pending`` even when the invitation
    cannot be mailed (201; v12 only logs the failure). No link is logged; an admin's
    reset link sets the password and activates the user. Validation (400) and duplicates
    (409) come first, as with a password."""
    admin = await _admin(harness)
    await harness.create_user("alice", USER_PASSWORD)
    for body, status in (
        ({"email": "not-an-address"}, 400),
        ({"email": "alice@example.com"}, 409),
        ({"email": "ned@example.com", "role_names": ["ROLE_ROOT"]}, 400),
    ):
        refused = await harness.client.post(USERS, json=body, headers=admin)
        assert refused.status_code == status, (body, refused.text)
        assert list(refused.json()) == ["error"]
    with caplog.at_level(logging.DEBUG):
        response = await harness.client.post(
            USERS, json={"email": "ned@example.com", "name": "Ned"}, headers=admin
        )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending"
    assert "reset?key=" not in caplog.text
    _, issued = await harness.services.users.new_reset_key("ned@example.com")
    await harness.services.password_resets.finish(issued.key, NEW_PASSWORD)
    ned = await harness.client.get(f"{USERS}/{response.json()['id']}", headers=admin)
    assert ned.json()["status"] == "active"
    assert await harness.login("ned@example.com", NEW_PASSWORD)


async def test_create_errors(harness: Harness) -> None:
    """handler/user.go Create: 400 bad input (missing e-mail, unknown role), 409 e-mail
    taken; every error is ``{"error": message}``."""
    admin = await _admin(harness)
    await harness.create_user("alice", USER_PASSWORD)
    cases: list[tuple[dict[str, Any], int]] = [
        ({"password": NEW_PASSWORD}, 400),
        ({"email": "x@example.com", "password": NEW_PASSWORD, "role_names": ["ROLE_ROOT"]}, 400),
        ({"email": "not-an-address", "password": NEW_PASSWORD}, 400),
        ({"email": "alice@example.com", "password": NEW_PASSWORD}, 409),
        ({"email": "y@example.com", "password": "short"}, 400),
    ]
    for body, status in cases:
        response = await harness.client.post(USERS, json=body, headers=admin)
        assert response.status_code == status, (body, response.text)
        assert list(response.json()) == ["error"]


async def test_get_one_user_by_uuid(harness: Harness) -> None:
    """routes.go GET /users/{id}, usecase/user.go toDetail: UserDetailResponse, the user
    with ``created_at``, ``updated_at`` and ``roles`` [{name, display_name}]; an unknown
    UUID is 404, anything else (a login, garbage, the nil UUID) 400 "invalid id"
    (handler/user.go pathID), on every route that takes a user's id."""
    admin = await _admin(harness)
    await harness.create_user("alice", USER_PASSWORD, first_name="Alice")
    public_id = await _public_id(harness, "alice")
    response = await harness.client.get(f"{USERS}/{public_id.upper()}", headers=admin)
    assert response.status_code == 200
    shown = response.json()
    assert shown["id"] == public_id
    assert shown["name"] == "Alice"
    assert shown["roles"] == [{"name": "ROLE_USER", "display_name": "User"}]
    assert shown["created_at"] == shown["updated_at"] == format_instant(harness.clock())
    unknown = await harness.client.get(f"{USERS}/{uuid.uuid4()}", headers=admin)
    assert (unknown.status_code, list(unknown.json())) == (404, ["error"])
    for method, suffix, body in (
        ("GET", "", None),
        ("PUT", "", {"name": "X"}),
        ("DELETE", "", None),
        ("PUT", "/roles", {"role_names": ["ROLE_USER"]}),
    ):
        for invalid in ("alice", "123", "00000000-0000-0000-0000-000000000000", "%00"):
            refused = await harness.client.request(
                method, f"{USERS}/{invalid}{suffix}", json=body, headers=admin
            )
            assert (refused.status_code, refused.json()) == (400, {"error": "invalid id"}), (
                method,
                suffix,
                invalid,
            )


async def test_update_a_user(harness: Harness) -> None:
    """dto/user.go UpdateUserRequest {email?, name?, lang_key?}; 409 for a taken e-mail."""
    admin = await _admin(harness)
    await harness.create_user("alice", USER_PASSWORD)
    await harness.create_user("bob", USER_PASSWORD)
    public_id = await _public_id(harness, "alice")
    response = await harness.client.put(
        f"{USERS}/{public_id}",
        json={"name": "Alice Liddell", "lang_key": "fr", "role_names": ["ROLE_ADMIN"]},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Alice Liddell"
    assert response.json()["lang_key"] == "fr"
    assert response.json()["roles"] == [{"name": "ROLE_USER", "display_name": "User"}]
    assert response.json()["updated_at"] == format_instant(harness.clock())
    # Roles go through PUT /users/{id}/roles only: the field is ignored here.
    assert (await harness.services.users.get_user("alice")).authorities == {"ROLE_USER"}
    taken = await harness.client.put(
        f"{USERS}/{public_id}", json={"email": "bob@example.com"}, headers=admin
    )
    assert taken.status_code == 409
    assert list(taken.json()) == ["error"]


async def test_delete_deactivates(harness: Harness) -> None:
    """routes.go DELETE /users/{id}: deactivates (204, no body); the user's tokens stop
    working; nobody deactivates themselves."""
    admin = await _admin(harness)
    await harness.create_user("alice", USER_PASSWORD)
    alice = await harness.login("alice", USER_PASSWORD)
    public_id = await _public_id(harness, "alice")
    response = await harness.client.delete(f"{USERS}/{public_id}", headers=admin)
    assert response.status_code == 204
    assert response.content == b""
    shown = await harness.client.get(f"{USERS}/{public_id}", headers=admin)
    assert shown.json()["status"] == "inactive"
    assert (await harness.client.get("/api/account", headers=bearer(alice))).status_code == 401
    own_id = await _public_id(harness, "admin")
    myself = await harness.client.delete(f"{USERS}/{own_id}", headers=admin)
    assert myself.status_code == 409
    assert list(myself.json()) == ["error"]
    assert (await harness.services.users.get_user("admin")).activated


async def test_replace_roles(harness: Harness) -> None:
    """routes.go PUT /users/{id}/roles {role_names}: the roles are replaced; 400 for an
    unknown role; an admin cannot take their own admin role away."""
    admin = await _admin(harness)
    await harness.create_user("alice", USER_PASSWORD)
    public_id = await _public_id(harness, "alice")
    response = await harness.client.put(
        f"{USERS}/{public_id}/roles", json={"role_names": ["ROLE_ANALYST"]}, headers=admin
    )
    # handler/user.go AssignRoles: 204, no body.
    assert (response.status_code, response.content) == (204, b""), response.text
    assert (await harness.services.users.get_user("alice")).authorities == {"ROLE_ANALYST"}
    unknown = await harness.client.put(
        f"{USERS}/{public_id}/roles", json={"role_names": ["ROLE_GOD"]}, headers=admin
    )
    assert unknown.status_code == 400
    assert list(unknown.json()) == ["error"]
    own_id = await _public_id(harness, "admin")
    demote = await harness.client.put(
        f"{USERS}/{own_id}/roles", json={"role_names": ["ROLE_VIEWER"]}, headers=admin
    )
    assert demote.status_code == 409
    assert (await harness.services.users.get_user("admin")).authorities == {
        "ROLE_ADMIN",
        "ROLE_USER",
    }


async def test_roles_are_listed_with_their_permissions(harness: Harness) -> None:
    """routes.go GET /roles (dto/rbac.go RoleResponse {id, name, display_name,
    description, system}), GET /roles/{id} (RoleDetailResponse: plus ``permissions``
    [{name, description}]) and GET /roles/permissions (every PermissionResponse). The
    ids and display names of v12's three seeded roles are v12's; a role's name is
    accepted for its id too. Not a UUID: 400 "invalid role id"; unknown: 404."""
    admin = await _admin(harness)
    response = await harness.client.get(ROLES, headers=admin)
    assert response.status_code == 200
    roles = {role["name"]: role for role in response.json()}
    assert set(roles) == {"ROLE_ADMIN", "ROLE_ANALYST", "ROLE_VIEWER", "ROLE_USER"}
    assert all(
        set(role) == {"id", "name", "display_name", "description", "system"}
        and role["system"] is True
        for role in roles.values()
    )
    assert {name: (role["id"], role["display_name"]) for name, role in roles.items()} == {
        "ROLE_ADMIN": ("00000000-0000-0000-0000-00000000a001", "Administrator"),
        "ROLE_ANALYST": ("00000000-0000-0000-0000-00000000a002", "Analyst"),
        "ROLE_VIEWER": ("00000000-0000-0000-0000-00000000a003", "Viewer"),
        "ROLE_USER": (str(uuid.uuid5(ROLE_ID_NAMESPACE, "ROLE_USER")), "User"),
    }

    catalogue = await harness.client.get(f"{ROLES}/permissions", headers=admin)
    assert catalogue.status_code == 200, catalogue.text
    every = {p["name"] for p in catalogue.json()}
    assert all(set(p) == {"name", "description"} and p["description"] for p in catalogue.json())
    assert {"users.read", "users.write", "users.delete", "roles.read", "roles.write"} <= every

    details = {}
    for name, role in roles.items():
        one = await harness.client.get(f"{ROLES}/{role['id']}", headers=admin)
        assert one.status_code == 200, one.text
        assert one.json() == {**role, "permissions": one.json()["permissions"]}
        details[name] = one.json()

    def permissions(name: str) -> set[str]:
        return {p["name"] for p in details[name]["permissions"]}

    reads = {p for p in every if p.endswith(".read")}
    assert permissions("ROLE_ADMIN") == every
    assert permissions("ROLE_VIEWER") == reads
    assert reads < permissions("ROLE_ANALYST") < every
    assert permissions("ROLE_USER") == set()
    by_name = await harness.client.get(f"{ROLES}/ROLE_VIEWER", headers=admin)
    assert by_name.json() == details["ROLE_VIEWER"]
    invalid = await harness.client.get(f"{ROLES}/ROLE_ROOT", headers=admin)
    assert (invalid.status_code, invalid.json()) == (400, {"error": "invalid role id"})
    missing = await harness.client.get(f"{ROLES}/{uuid.uuid4()}", headers=admin)
    assert (missing.status_code, missing.json()) == (404, {"error": "role not found"})


async def test_roles_cannot_be_created_changed_or_deleted(harness: Harness) -> None:
    """handler/rbac.go Create, Update, Delete: authgate has only built-in roles, which
    v12 refuses to change (403 "system roles cannot be modified", usecase/rbac.go), so
    every write is 403; a malformed id is still 400 and an unknown one 404."""
    admin = await _admin(harness)
    viewer = "00000000-0000-0000-0000-00000000a003"
    role = {"name": "ROLE_AUDITOR", "permissions": ["audit.read"]}
    for method, path, status in (
        ("POST", ROLES, 403),
        ("PUT", f"{ROLES}/{viewer}", 403),
        ("DELETE", f"{ROLES}/{viewer}", 403),
        ("DELETE", f"{ROLES}/ROLE_ADMIN", 403),
        ("PUT", f"{ROLES}/not-a-role", 400),
        ("DELETE", f"{ROLES}/{uuid.uuid4()}", 404),
    ):
        response = await harness.client.request(method, path, json=role, headers=admin)
        assert response.status_code == status, (method, path, response.text)
        assert list(response.json()) == ["error"]
    refused = await harness.client.put(f"{ROLES}/{viewer}", json=role, headers=admin)
    assert refused.json() == {"error": "system roles cannot be modified"}
    created = await harness.client.post(ROLES, json=role, headers=admin)
    message = "custom roles are not supported: system roles cannot be modified"
    assert created.json() == {"error": message}  # as the README says
    listed = await harness.client.get(ROLES, headers=admin)
    assert [r["name"] for r in listed.json()] == [
        "ROLE_ADMIN",
        "ROLE_ANALYST",
        "ROLE_VIEWER",
        "ROLE_USER",
    ]


async def test_status_deactivates_and_reactivates(harness: Harness) -> None:
    """dto/user.go UpdateUserRequest ``status``, usecase/user.go Update: "inactive"
    deactivates the user (tokens stop working; never the caller, as DELETE), "active"
    reactivates; other states are 400. Reactivating gives access back: it needs a
    password session, never an API key (deactivating does not)."""
    admin = await _admin(harness)
    await harness.create_user("alice", USER_PASSWORD)
    alice = await harness.login("alice", USER_PASSWORD)
    public_id = await _public_id(harness, "alice")
    off = await harness.client.put(
        f"{USERS}/{public_id}", json={"status": "inactive"}, headers=admin
    )
    assert (off.status_code, off.json()["status"]) == (200, "inactive"), off.text
    assert (await harness.client.get("/api/account", headers=bearer(alice))).status_code == 401
    assert not (await harness.services.users.get_user("alice")).activated

    token = await harness.login("admin", ADMIN_PASSWORD)
    created = await harness.create_key(token, name="ops", scopes=["read", "write", "admin"])
    key = key_header(created["key"])
    by_key = await harness.client.put(
        f"{USERS}/{public_id}", json={"status": "active"}, headers=key
    )
    assert (by_key.status_code, list(by_key.json())) == (403, ["error"])
    assert "user session" in by_key.json()["error"]
    assert not (await harness.services.users.get_user("alice")).activated

    on = await harness.client.put(f"{USERS}/{public_id}", json={"status": "active"}, headers=admin)
    assert (on.status_code, on.json()["status"]) == (200, "active"), on.text
    assert await harness.login("alice", USER_PASSWORD)
    off_by_key = await harness.client.put(
        f"{USERS}/{public_id}", json={"status": "inactive"}, headers=key
    )
    assert (off_by_key.status_code, off_by_key.json()["status"]) == (200, "inactive")

    for status in ("pending", "suspended", "ACTIVE", 1):
        bad = await harness.client.put(
            f"{USERS}/{public_id}", json={"status": status}, headers=admin
        )
        assert (bad.status_code, list(bad.json())) == (400, ["error"]), status
    own_id = await _public_id(harness, "admin")
    myself = await harness.client.put(
        f"{USERS}/{own_id}", json={"status": "inactive"}, headers=admin
    )
    assert (myself.status_code, list(myself.json())) == (409, ["error"])
    assert (await harness.services.users.get_user("admin")).activated


async def test_an_empty_users_page_counts_one_page(harness: Harness) -> None:
    """usecase/user.go List: ``total_pages`` is at least 1, even when nothing matches
    (v12's API keys list says 0: tests/api/v1/test_v12_api_keys.py)."""
    admin = await _admin(harness)
    response = await harness.client.get(USERS, params={"search": "nobody"}, headers=admin)
    assert response.json() == {
        "data": [],
        "page_info": {
            "page": 1,
            "page_size": 20,
            "total_items": 0,
            "total_pages": 1,
            "has_next": False,
            "has_prev": False,
        },
    }


async def test_a_login_that_cannot_hold_the_email_is_refused(harness: Harness) -> None:
    """authgate names users by login on v10/v11 routes: a v12 user's login is their
    e-mail, so an address no login can hold is refused (400), not silently renamed."""
    admin = await _admin(harness)
    response = await harness.client.post(
        USERS, json={"email": "first+tag@example.com", "password": NEW_PASSWORD}, headers=admin
    )
    assert response.status_code == 400
    assert "login" in response.json()["error"]


async def test_a_created_user_is_created_by_the_caller(harness: Harness) -> None:
    """The v10/v11 view of a user created through v12 names who created it."""
    admin = await _admin(harness)
    await harness.client.post(
        USERS, json={"email": "zoe@example.com", "password": NEW_PASSWORD}, headers=admin
    )
    created = await harness.services.users.get_user("zoe@example.com")
    assert created.created_by == "admin"


async def test_user_views_carry_the_public_id(harness: Harness) -> None:
    """The service's view of a user carries the UUID v12's routes use."""
    created = await harness.services.users.create_user(
        NewUser(login="eve", email="eve@example.com", password=USER_PASSWORD)
    )
    assert len(created.public_id) == 36
    assert (await harness.services.users.get_user_by_public_id(created.public_id)).id == created.id


async def test_deactivating_an_invited_user_ends_the_invitation(harness: Harness) -> None:
    """An invited user is stored inactive until the link sets a password: deactivating
    it (DELETE, or status inactive) must end the invitation, or the link would still
    activate the account, roles included (the attack review's ROLE_ADMIN invitee)."""
    admin = await _admin(harness)
    for deactivate in ("delete", "put"):
        email = f"invitee-{deactivate}@example.com"
        response = await harness.client.post(
            USERS, json={"email": email, "role_names": ["ROLE_ADMIN"]}, headers=admin
        )
        assert response.status_code == 201, response.text
        user_id = response.json()["id"]
        _, issued = await harness.services.users.new_reset_key(email)
        if deactivate == "delete":
            done = await harness.client.delete(f"{USERS}/{user_id}", headers=admin)
        else:
            done = await harness.client.put(
                f"{USERS}/{user_id}", json={"status": "inactive"}, headers=admin
            )
        assert done.status_code in (200, 204), done.text
        shown = await harness.client.get(f"{USERS}/{user_id}", headers=admin)
        assert shown.json()["status"] == "inactive"
        with pytest.raises(ResetKeyInvalid):
            await harness.services.password_resets.finish(issued.key, NEW_PASSWORD)
        login = await harness.client.post(
            "/api/v1/auth/login", json={"login": email, "password": NEW_PASSWORD}
        )
        assert login.status_code == 401
