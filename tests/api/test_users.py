"""User administration at /api/users (ROLE_ADMIN)."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from authgate.storage.models import User
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, Harness, bearer

NEW_USER = {
    "login": "Dave.Ops",
    "email": "Dave@Example.com",
    "password": "maple-password-long",
    "firstName": "Dave",
    "authorities": ["ROLE_USER"],
}


async def test_create_user_then_log_in(harness: Harness, admin_token: str) -> None:
    """POST /api/users creates a lower-cased user (201 + Location) who can log in."""
    response = await harness.client.post("/api/users", json=NEW_USER, headers=bearer(admin_token))
    assert response.status_code == 201
    body = response.json()
    assert body["login"] == "dave.ops"
    assert body["email"] == "dave@example.com"
    assert body["authorities"] == ["ROLE_USER"]
    assert response.headers["Location"] == "/api/users/dave.ops"
    assert "password" not in body
    assert await harness.login("DAVE.OPS", "maple-password-long")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"login": "bad login!"}, "login"),
        ({"email": "not-an-email"}, "email"),
        # What a mail header would read as two addresses or a display name (the Unicode
        # review: accepted, then every code mailed to it was a 500).
        ({"email": "a<b>@example.com"}, "email"),
        ({"email": "x;y@example.com"}, "email"),
        ({"email": "a,b@example.com"}, "email"),
        # Shown as another address: reversed by a bidi override, or with an invisible
        # character after the admin's own.
        ({"email": "\u202emoc.elpmaxe@nimda"}, "email"),
        ({"email": "admin@example.com\u200b"}, "email"),
        ({"email": "x\x9b31m@example.com"}, "email"),
        ({"password": "short"}, "password"),
        ({"authorities": ["ROLE_ROOT"]}, "authorities"),
        ({"authorities": []}, "authorities"),
        ({"langKey": "english language"}, "langKey"),
    ],
)
async def test_create_user_validates_every_field(
    harness: Harness, admin_token: str, change: dict[str, object], field: str
) -> None:
    """Each invalid field is named in a 400 fieldErrors entry."""
    response = await harness.client.post(
        "/api/users", json={**NEW_USER, **change}, headers=bearer(admin_token)
    )
    assert response.status_code == 400
    fields = [error["field"].split("[")[0] for error in response.json()["fieldErrors"]]
    assert field in fields


@pytest.mark.parametrize("login", ["authorities", "system", "User", "ANONYMOUSUSER"])
async def test_reserved_logins_are_refused_in_any_case(
    harness: Harness, admin_token: str, login: str
) -> None:
    """UTMStack's UI lists no user called system or user, and its backend no
    anonymoususer: a user so called would be an account no admin sees there. Logins are
    lower-cased, so "User" is "user". The document says so, for paths and new users."""
    response = await harness.client.post(
        "/api/users", json={**NEW_USER, "login": login}, headers=bearer(admin_token)
    )
    assert response.status_code == 400
    [error] = response.json()["fieldErrors"]
    assert error["field"] == "login"
    assert "is reserved" in error["message"]
    document = (await harness.client.get("/v3/api-docs")).json()
    reserved = {"not": {"enum": ["anonymoususer", "authorities", "system", "user"]}}
    [path_login] = document["paths"]["/api/users/{login}"]["get"]["parameters"]
    assert reserved.items() <= path_login["schema"].items()
    created = document["components"]["schemas"]["UserCreate"]["properties"]["login"]
    assert reserved.items() <= created.items()


async def test_duplicate_login_and_email_are_409(harness: Harness, admin_token: str) -> None:
    """Login and e-mail are unique, case-insensitively."""
    assert (
        await harness.client.post("/api/users", json=NEW_USER, headers=bearer(admin_token))
    ).status_code == 201
    same_login = await harness.client.post(
        "/api/users",
        json={**NEW_USER, "login": "DAVE.OPS", "email": "other@example.com"},
        headers=bearer(admin_token),
    )
    assert same_login.status_code == 409
    assert same_login.json()["message"] == "Login name already used!"
    same_email = await harness.client.post(
        "/api/users",
        json={**NEW_USER, "login": "dave2", "email": "DAVE@example.com"},
        headers=bearer(admin_token),
    )
    assert same_email.status_code == 409
    assert same_email.json()["message"] == "Email is already in use!"


async def test_list_users_is_paged_with_jhipster_headers(
    harness: Harness, admin_token: str
) -> None:
    """page/size/sort work and X-Total-Count and Link describe the pages."""
    for index in range(5):
        await harness.create_user(f"user{index}")
    response = await harness.client.get(
        "/api/users",
        params={"page": 1, "size": 2, "sort": "login,desc"},
        headers=bearer(admin_token),
    )
    assert response.status_code == 200
    assert response.headers["X-Total-Count"] == "6"
    assert [user["login"] for user in response.json()] == ["user2", "user1"]
    link = response.headers["Link"]
    for rel in ("next", "prev", "last", "first"):
        assert f'rel="{rel}"' in link
    assert "page=2" in link
    assert "sort=login%2Cdesc" in link or "sort=login,desc" in link


@pytest.mark.parametrize("field", ["createdBy", "lastModifiedBy"])
async def test_list_users_sorts_by_who_created_and_changed_them(
    harness: Harness, admin_token: str, field: str
) -> None:
    """sort=lastModifiedBy (UTMStack's users page) and createdBy order by the login kept
    in the column, ids breaking ties; users without one (imported from UTMStack) come
    last ascending and first descending, on SQLite as on PostgreSQL."""
    column = {"createdBy": User.created_by, "lastModifiedBy": User.last_modified_by}[field]
    by = {"admin": "system", "carol": "zoe", "bob": None, "dave": "ann", "erin": "zoe"}
    for login in ("carol", "bob", "dave", "erin"):
        await harness.create_user(login)
    async with harness.services.db.transaction() as session:
        for login, who in by.items():
            await session.execute(update(User).where(User.login == login).values({column: who}))

    async def logins(direction: str) -> list[str]:
        response = await harness.client.get(
            "/api/users", params={"sort": f"{field},{direction}"}, headers=bearer(admin_token)
        )
        assert response.status_code == 200, response.text
        users = response.json()
        assert [user[field] for user in users] == [by[user["login"]] for user in users]
        return [user["login"] for user in users]

    assert await logins("asc") == ["dave", "admin", "carol", "erin", "bob"]
    assert await logins("desc") == ["bob", "carol", "erin", "admin", "dave"]


@pytest.mark.parametrize(
    "params",
    [{"sort": "password,asc"}, {"sort": "login,sideways"}, {"size": 0}, {"page": -1}],
)
async def test_list_users_rejects_bad_paging(
    harness: Harness, admin_token: str, params: dict[str, str | int]
) -> None:
    """Unknown sort fields, bad directions and out-of-range paging are 400."""
    response = await harness.client.get("/api/users", params=params, headers=bearer(admin_token))
    assert response.status_code == 400


async def test_get_unknown_user_is_404(harness: Harness, admin_token: str) -> None:
    """A missing user is a JSON 404."""
    response = await harness.client.get("/api/users/nobody", headers=bearer(admin_token))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_deactivating_a_user_revokes_their_tokens(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """activated=false refuses existing tokens and new logins; reactivation does not
    resurrect old tokens."""
    response = await harness.client.put(
        "/api/users/alice", json={"activated": False}, headers=bearer(admin_token)
    )
    assert response.status_code == 200
    assert response.json()["activated"] is False
    refused = await harness.client.get("/api/account", headers=bearer(user_token))
    assert refused.status_code == 401
    login = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD}
    )
    assert login.status_code == 401

    await harness.client.put(
        "/api/users/alice", json={"activated": True}, headers=bearer(admin_token)
    )
    assert (await harness.client.get("/api/account", headers=bearer(user_token))).status_code == 401
    harness.clock.advance(milliseconds=1)
    assert await harness.login("alice", USER_PASSWORD)


async def test_update_user_changes_profile(harness: Harness, admin_token: str) -> None:
    """PUT changes only the given fields."""
    await harness.create_user("erin", first_name="Erin", last_name="Old")
    response = await harness.client.put(
        "/api/users/erin",
        json={"lastName": "New", "email": "erin.new@example.com"},
        headers=bearer(admin_token),
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["firstName"], body["lastName"], body["email"]) == (
        "Erin",
        "New",
        "erin.new@example.com",
    )


async def test_admin_reset_password_revokes_tokens(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """PUT /api/users/{login}/password sets a new password and ends the user's sessions."""
    response = await harness.client.put(
        "/api/users/alice/password",
        json={"newPassword": "reset-by-the-admin"},
        headers=bearer(admin_token),
    )
    assert response.status_code == 204
    assert (await harness.client.get("/api/account", headers=bearer(user_token))).status_code == 401
    harness.clock.advance(milliseconds=1)
    assert await harness.login("alice", "reset-by-the-admin")


async def test_delete_user(harness: Harness, admin_token: str, user_token: str) -> None:
    """DELETE removes the user; their token stops working; a second DELETE is 404."""
    response = await harness.client.delete("/api/users/alice", headers=bearer(admin_token))
    assert response.status_code == 204
    assert (await harness.client.get("/api/account", headers=bearer(user_token))).status_code == 401
    again = await harness.client.delete("/api/users/alice", headers=bearer(admin_token))
    assert again.status_code == 404


async def test_admin_cannot_remove_themselves_or_the_last_admin(
    harness: Harness, admin_token: str
) -> None:
    """Self-deactivation and demoting the last admin are 409."""
    for body in ({"activated": False}, {"authorities": ["ROLE_USER"]}):
        response = await harness.client.put(
            "/api/users/admin", json=body, headers=bearer(admin_token)
        )
        assert response.status_code == 409, body
    assert (await harness.client.get("/api/users", headers=bearer(admin_token))).status_code == 200


async def test_deleting_the_last_admin_is_400_even_oneself(
    harness: Harness, admin_token: str
) -> None:
    """The only admin deleting themselves hears UTMStack's 400 "Cannot delete the last
    admin user." (UserService.deleteUser; its delete dialog shows the message only on a
    400), not the self-delete 409: the last admin is checked first."""
    response = await harness.client.delete("/api/users/admin", headers=bearer(admin_token))

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_failed"
    assert body["message"] == body["detail"] == "Cannot delete the last admin user."
    assert response.headers["X-UtmStack-error"] == "Cannot delete the last admin user."
    assert (await harness.client.get("/api/users/admin", headers=bearer(admin_token))).is_success


async def test_an_admin_cannot_delete_themselves_while_another_admin_remains(
    harness: Harness, admin_token: str
) -> None:
    """With a second admin, deleting oneself is still refused: 409, "You cannot delete
    your own account."; that other admin may delete them."""
    await harness.create_user("root2", ADMIN_PASSWORD, admin=True)

    response = await harness.client.delete("/api/users/admin", headers=bearer(admin_token))

    assert response.status_code == 409
    assert response.json()["message"] == "You cannot delete your own account."
    root2 = await harness.login("root2", ADMIN_PASSWORD)
    deleted = await harness.client.delete("/api/users/admin", headers=bearer(root2))
    assert deleted.status_code == 204


async def test_second_admin_can_be_demoted(harness: Harness, admin_token: str) -> None:
    """With two active admins, one of them may lose the role."""
    await harness.create_user("root2", admin=True)
    response = await harness.client.put(
        "/api/users/root2", json={"authorities": ["ROLE_USER"]}, headers=bearer(admin_token)
    )
    assert response.status_code == 200
    assert response.json()["authorities"] == ["ROLE_USER"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/users"),
        ("POST", "/api/users"),
        ("GET", "/api/users/alice"),
        ("PUT", "/api/users/alice"),
        ("PUT", "/api/users/alice/password"),
        ("DELETE", "/api/users/alice"),
    ],
)
async def test_user_administration_requires_admin(
    harness: Harness, user_token: str, method: str, path: str
) -> None:
    """Every /api/users operation is 403 for ROLE_USER and 401 without a token."""
    forbidden = await harness.client.request(method, path, json={}, headers=bearer(user_token))
    assert forbidden.status_code == 403
    anonymous = await harness.client.request(method, path, json={})
    assert anonymous.status_code == 401
