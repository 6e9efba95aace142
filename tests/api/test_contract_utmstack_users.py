"""Contract tests for issue 13, sections 1 and 2: bodies read the way Spring reads them,
and user administration as UTMStack's UI calls it.

Each test names the UTMStack source it reproduces (utmstack/UTMStack, branches v10 and
v11): the Angular ``frontend/src/app/core/user/user.service.ts`` and the Java
``backend/.../web/rest/UserResource.java`` and ``service/dto/UserDTO.java``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import text

from authgate.app import create_app
from authgate.container import Services
from authgate.settings import Settings
from tests.api.test_api_keys import key_header
from tests.api.test_key_remediation import LOOPBACK, WAIT_SECONDS, audited
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, FakeClock, Harness, bearer, test_settings
from tests.mail import running_smtp_server

USERS = "/api/users"
REFRESH = "/api/v1/auth/refresh"


async def _admin(harness: Harness) -> dict[str, str]:
    await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    return bearer(await harness.login("admin", ADMIN_PASSWORD))


async def _login_status(harness: Harness, username: str, password: str) -> int:
    response = await harness.client.post(
        "/api/authenticate", json={"username": username, "password": password}
    )
    return response.status_code


@asynccontextmanager
async def harness_with(settings: Settings, clock: FakeClock) -> AsyncIterator[Harness]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Harness(app=app, services=services, client=client, clock=clock)


# -- section 1: lenient bodies, no mass assignment ------------------------------------------


async def test_put_users_accepts_the_whole_dto_a_get_returned(harness: Harness) -> None:
    """user.service.ts ``update(user)``: PUT /api/users with the UserDTO the UI fetched
    (id, audit fields, ``password: null``) edits and deactivates; UserResource.updateUser
    answers 200 with the user (the UI checks for 200)."""
    admin = await _admin(harness)
    await harness.create_user("bob", first_name="Bob")
    dto = (await harness.client.get(f"{USERS}/bob", headers=admin)).json()
    dto.update(firstName="Robert", lastName=None, activated=False, password=None)
    dto["tfaSecret"] = None  # UTMStack's UserDTO has more fields than authgate's

    response = await harness.client.put(USERS, json=dto, headers=admin)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["firstName"] == "Robert"
    assert body["activated"] is False
    assert body["createdDate"] == dto["createdDate"]
    assert body["lastModifiedBy"] == "admin"
    assert await _login_status(harness, "bob", USER_PASSWORD) == 401


async def test_put_users_by_login_only(harness: Harness) -> None:
    """UserResource.updateUser also finds the user by the DTO's login (no id sent)."""
    admin = await _admin(harness)
    await harness.create_user("bob")
    response = await harness.client.put(
        USERS, json={"login": "BOB", "email": "bob@example.com", "lastName": "B"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["lastName"] == "B"


async def test_user_bodies_never_mass_assign(harness: Harness) -> None:
    """UserDTO's read-only fields (id, createdBy, createdDate, lastModifiedBy, dates) and a
    password sent back in a PUT body are ignored; an id or login naming another user is
    refused (400), never followed. With the id, PUT /api/users takes the login as a new
    name (a rename): another user's login is taken (409), and nobody changes."""
    admin = await _admin(harness)
    bob_id = await harness.create_user("bob")
    carol_id = await harness.create_user("carol")
    before = (await harness.client.get(f"{USERS}/bob", headers=admin)).json()
    sneaky: dict[str, Any] = {
        "createdBy": "mallory",
        "createdDate": "2000-01-01T00:00:00Z",
        "lastModifiedDate": "2000-01-01T00:00:00Z",
        "password": "a-new-password-nobody-chose",
        "passwordHash": "x",
        "resetKey": "1234",
        "firstName": "Bobby",
    }

    ok = await harness.client.put(f"{USERS}/bob", json={**sneaky, "id": bob_id}, headers=admin)
    other_id = await harness.client.put(f"{USERS}/bob", json={"id": carol_id}, headers=admin)
    other_login = await harness.client.put(f"{USERS}/bob", json={"login": "carol"}, headers=admin)
    by_dto = await harness.client.put(
        USERS, json={"id": bob_id, "login": "carol", "firstName": "X"}, headers=admin
    )

    assert ok.status_code == 200, ok.text
    assert ok.json()["createdBy"] == before["createdBy"]
    assert ok.json()["createdDate"] == before["createdDate"]
    assert ok.json()["firstName"] == "Bobby"
    assert (other_id.status_code, other_id.json()["code"]) == (400, "validation_failed")
    assert other_login.status_code == 400
    assert (by_dto.status_code, by_dto.json()["message"]) == (409, "Login name already used!")
    carol = (await harness.client.get(f"{USERS}/carol", headers=admin)).json()
    assert carol["id"] == carol_id
    assert carol["firstName"] is None
    assert (await harness.client.get(f"{USERS}/bob", headers=admin)).json()["firstName"] == "Bobby"
    assert await _login_status(harness, "bob", USER_PASSWORD) == 200
    assert await _login_status(harness, "bob", sneaky["password"]) == 401


# -- renaming: UTMStack's user dialog keeps the login editable ---------------------------------


async def test_put_users_with_the_id_renames_and_ends_the_sessions(
    harness: Harness, settings: Settings, clock: FakeClock
) -> None:
    """user-management-update.component.html leaves Login editable and PUTs the whole DTO;
    UserService.updateUser sets the new login, lower-cased. The old name signs in no
    more and no token goes on under it (tokens name the login); the user's API key keeps
    working and presents the new login, here and on another app on the same database
    (a worker or node that had the old state cached); the rename is audited."""
    admin = await _admin(harness)
    await harness.create_user("bob")
    token = await harness.login("bob", USER_PASSWORD)
    key = (await harness.create_key(token, "ci"))["key"]
    v12 = await harness.client.post(
        "/api/v1/auth/login", json={"login": "bob@example.com", "password": USER_PASSWORD}
    )
    other = create_app(settings, clock=clock)
    async with other.router.lifespan_context(other):
        elsewhere = other.state.services.key_auth
        assert (await elsewhere.authenticate(key, LOOPBACK)).login == "bob"  # cached there
        assert (await harness.client.get("/api/account", headers=key_header(key))).json()[
            "login"
        ] == "bob"
        dto = (await harness.client.get(f"{USERS}/bob", headers=admin)).json()

        response = await harness.client.put(
            USERS, json={**dto, "login": " Robert ", "firstName": "Rob"}, headers=admin
        )

        assert response.status_code == 200, response.text
        assert (response.json()["login"], response.json()["firstName"]) == ("robert", "Rob")
        assert (await harness.client.get("/api/account", headers=bearer(token))).status_code == 401
        refresh = {"refresh_token": v12.json()["refresh_token"]}
        assert (await harness.client.post(REFRESH, json=refresh)).status_code == 401
        assert await _login_status(harness, "bob", USER_PASSWORD) == 401
        harness.clock.advance(milliseconds=1)
        assert await _login_status(harness, "robert", USER_PASSWORD) == 200
        by_key = await harness.client.get("/api/account", headers=key_header(key))
        assert (by_key.status_code, by_key.json()["login"]) == (200, "robert")
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while (await elsewhere.authenticate(key, LOOPBACK)).login != "robert":
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
    assert (await harness.client.get(f"{USERS}/bob", headers=admin)).status_code == 404
    [event] = await audited(harness, "USER_UPDATED")
    assert event.details == {
        "user": "robert",
        "previousLogin": "bob",
        "changed": sorted(
            [
                "login",
                "email",
                "firstName",
                "lastName",
                "langKey",
                "activated",
                "authorities",
                "imageUrl",
            ]
        ),
    }


async def test_a_rename_is_checked_as_a_new_login(harness: Harness) -> None:
    """The new login follows creation's rules (LOGIN_REGEX, reserved logins) and must be
    free (409, UTMStack's "Login name already used!"); a login sent back unchanged, in
    another case, renames nothing; the login of a body without id, and the body's login
    on PUT /api/users/{login}, only select (the path names the user): they never rename."""
    admin = await _admin(harness)
    bob_id = await harness.create_user("bob")
    await harness.create_user("carol")

    async def rename(login: str) -> httpx2.Response:
        return await harness.client.put(USERS, json={"id": bob_id, "login": login}, headers=admin)

    taken = await rename("Carol")
    invalid = await rename("bob smith")
    reserved = await rename("System")
    same = await rename(" BOB ")
    without_id = await harness.client.put(USERS, json={"login": "robert"}, headers=admin)
    by_path = await harness.client.put(f"{USERS}/bob", json={"login": "robert"}, headers=admin)

    assert (taken.status_code, taken.json()["message"]) == (409, "Login name already used!")
    for refused in (invalid, reserved):
        assert refused.status_code == 400
        assert [error["field"] for error in refused.json()["fieldErrors"]] == ["login"]
    assert "UTMStack's built-in account" in reserved.json()["fieldErrors"][0]["message"]
    assert (same.status_code, same.json()["login"]) == (200, "bob")
    assert without_id.status_code == 404
    assert (by_path.status_code, by_path.json()["code"]) == (400, "validation_failed")
    assert (await harness.services.users.get_user_by_id(bob_id)).login == "bob"
    assert await _login_status(harness, "bob", USER_PASSWORD) == 200  # no session ended
    [unchanged] = [
        event for event in await audited(harness, "USER_UPDATED") if event.details["user"] == "bob"
    ]
    assert "previousLogin" not in unchanged.details
    assert "login" not in unchanged.details["changed"]


async def test_a_user_whose_login_is_reserved_since_can_still_be_edited(
    harness: Harness,
) -> None:
    """Second attack review: the whole DTO of a user created before ``user`` was
    reserved sends that login back; the edit (or a deactivation) must not fail on it.
    Only a new login is checked."""
    admin = await _admin(harness)
    legacy_id = await harness.create_user("legacy")
    async with harness.services.db.transaction() as session:
        await session.execute(
            text("UPDATE users SET login = 'user' WHERE id = :id"), {"id": legacy_id}
        )
    edited = await harness.client.put(
        USERS, json={"id": legacy_id, "login": "user", "firstName": "Edited"}, headers=admin
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["firstName"] == "Edited"


async def test_no_login_is_another_users_e_mail_nor_the_reverse(harness: Harness) -> None:
    """Second attack review: a user signs in with their login or e-mail and a login
    wins, so alice renamed (or created) as ``bob@corp.io`` took bob's e-mail sign-in
    (v12 signs in by e-mail: bob's login resolved to alice). Now 409 for a login that is
    someone's e-mail and an e-mail that is someone's login; one's own is fine."""
    admin = await _admin(harness)
    await harness.create_user("bob", email="bob@corp.io")
    await harness.create_user("dave@corp.io", email="dave.real@corp.io")
    alice_id = await harness.create_user("alice", email="alice@corp.io")

    renamed = await harness.client.put(
        USERS, json={"id": alice_id, "login": "bob@corp.io"}, headers=admin
    )
    created = await harness.client.post(
        USERS, json={"login": "bob@corp.io", "email": "other@corp.io"}, headers=admin
    )
    emailed = await harness.client.put(
        USERS, json={"id": alice_id, "login": "alice", "email": "Dave@corp.io"}, headers=admin
    )
    created_email = await harness.client.post(
        USERS, json={"login": "carol", "email": "dave@corp.io"}, headers=admin
    )
    own = await harness.client.put(
        USERS, json={"id": alice_id, "login": "alice@corp.io"}, headers=admin
    )

    assert (renamed.status_code, renamed.json()["message"]) == (409, "Login name already used!")
    assert (created.status_code, created.json()["message"]) == (409, "Login name already used!")
    for refused in (emailed, created_email):
        assert (refused.status_code, refused.json()["message"]) == (409, "Email is already in use!")
    assert (own.status_code, own.json()["login"]) == (200, "alice@corp.io"), own.text
    v12 = await harness.client.post(
        "/api/v1/auth/login", json={"login": "bob@corp.io", "password": USER_PASSWORD}
    )
    assert v12.status_code == 200
    assert v12.json()["user"]["email"] == "bob@corp.io"


async def test_a_boolean_is_not_an_id(harness: Harness) -> None:
    """Second attack review: pydantic's lax int read ``"id": true`` as 1, so
    ``{"id": true, "login": "zz"}`` renamed user 1, the first admin."""
    admin = await _admin(harness)
    response = await harness.client.put(USERS, json={"id": True, "login": "zz"}, headers=admin)
    assert response.status_code == 400, response.text
    assert [error["field"] for error in response.json()["fieldErrors"]] == ["id"]
    assert (await harness.services.users.get_user_by_id(1)).login == "admin"


async def test_create_user_ignores_read_only_fields(harness: Harness) -> None:
    """ManagedUserVM as the UI posts it: ``id: null``, audit fields; they are ignored."""
    admin = await _admin(harness)
    response = await harness.client.post(
        USERS,
        json={
            "id": 999,
            "login": "dave",
            "email": "dave@example.com",
            "password": USER_PASSWORD,
            "createdBy": "mallory",
            "createdDate": "2000-01-01T00:00:00Z",
            "lastModifiedBy": "mallory",
            "authorities": ["ROLE_USER"],
        },
        headers=admin,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"] != 999
    assert body["createdBy"] == "admin"
    assert body["lastModifiedBy"] == "admin"


async def test_api_key_bodies_accept_the_dto_and_never_mass_assign(harness: Harness) -> None:
    """v11 ``api-keys`` UI sends back the ApiKeyResponseDTO on edit (id, createdAt,
    generatedAt, ...); Spring ignores what it does not own. Owner, id, dates, status and
    usage fields are never written from a body."""
    admin = await _admin(harness)
    await harness.create_user("bob")
    bob = bearer(await harness.login("bob", USER_PASSWORD))
    expiry = (harness.clock() + timedelta(days=30)).strftime("%Y-%m-%dT00:00:00.000Z")
    created = await harness.client.post(
        "/api/api-keys",
        json={"name": "ci", "allowedIp": [], "expiresAt": expiry, "id": 77, "userId": 1},
        headers=bob,
    )
    assert created.status_code == 201, created.text
    dto = created.json()
    assert dto["id"] != 77
    bob_id = dto["userId"]
    assert bob_id != 1

    sent = {
        **dto,
        "name": "ci-renamed",
        "userId": 1,
        "createdAt": "2000-01-01T00:00:00Z",
        "generatedAt": "2000-01-01T00:00:00Z",
        "lastUsedAt": "2000-01-01T00:00:00Z",
        "lastUsedIp": "1.2.3.4",
        "status": "active",
        "revokedAt": None,
        "prefix": "agk_forged",
        "apiKey": "forged",
    }
    updated = await harness.client.put(f"/api/api-keys/{dto['id']}", json=sent, headers=bob)

    assert updated.status_code == 200, updated.text
    after = updated.json()
    assert after["name"] == "ci-renamed"
    for field in ("userId", "createdAt", "generatedAt", "lastUsedAt", "lastUsedIp", "prefix"):
        assert after[field] == dto[field], field
    listed = await harness.client.get("/api/api-keys", headers=admin)
    assert all(key["name"] != "ci-renamed" for key in listed.json())  # still bob's, not admin's


# -- section 2: user administration -----------------------------------------------------------


async def test_authorities(harness: Harness) -> None:
    """user.service.ts ``authorities()``: GET /api/users/authorities → the role names
    (UTMStack's two, and v12's analyst and viewer, which authgate serves to both APIs)."""
    admin = await _admin(harness)
    response = await harness.client.get(f"{USERS}/authorities", headers=admin)
    assert response.status_code == 200
    assert response.json() == ["ROLE_ADMIN", "ROLE_ANALYST", "ROLE_USER", "ROLE_VIEWER"]


async def test_filter_and_login_query(harness: Harness) -> None:
    """user.service.ts ``find(login)`` → GET /api/users/filter/{login}, and ``query({login})``
    → GET /api/users?login=: case-insensitive "contains" (UserRepository.findAllByLoginLike),
    the list paged with X-Total-Count and Link."""
    admin = await _admin(harness)
    for login in ("analyst1", "analyst2", "bob", "an_alyst"):
        await harness.create_user(login)

    found = await harness.client.get(f"{USERS}/filter/NALYS", headers=admin)
    page = await harness.client.get(USERS, params={"login": "Analyst", "size": 1}, headers=admin)
    literal = await harness.client.get(USERS, params={"login": "n_a"}, headers=admin)

    assert found.status_code == 200
    assert sorted(user["login"] for user in found.json()) == ["analyst1", "analyst2"]
    assert page.status_code == 200
    assert page.headers["X-Total-Count"] == "2"
    assert 'rel="next"' in page.headers["Link"]
    assert "login=Analyst" in page.headers["Link"]
    assert [user["login"] for user in literal.json()] == ["an_alyst"]  # "_" is not a wildcard
    # UserResource.getUsersByLogin leaves the caller out (the list lists everyone).
    itself = await harness.client.get(f"{USERS}/filter/dmi", headers=admin)
    everyone = await harness.client.get(USERS, params={"login": "dmi"}, headers=admin)
    assert itself.status_code == 200
    assert itself.json() == []
    assert itself.headers["X-Total-Count"] == "0"
    assert [user["login"] for user in everyone.json()] == ["admin"]


# UTMStack's user dialog (user-management-update.component, "Local creation (no email
# activation)"): its whole blank User, with a password and ``activated: false``.
LOCAL_PASSWORD = "a-local-password-for-bob"
LOCAL_USER: dict[str, Any] = {
    "id": None,
    "login": "bob",
    "firstName": "Bob",
    "lastName": None,
    "email": "bob@example.com",
    "activated": False,
    "langKey": "en",
    "authorities": ["ROLE_USER"],
    "createdBy": None,
    "createdDate": None,
    "lastModifiedBy": None,
    "lastModifiedDate": None,
    "password": LOCAL_PASSWORD,
}


async def test_local_creation_makes_an_active_user_with_the_password(harness: Harness) -> None:
    """UserResource.createUserLocal (POST /api/users/local, ManagedUserVM): 201 with the
    user, active at once with the password given, no mail; the login and e-mail checks and
    the password policy of POST /api/users; never by an API key (it sets a credential)."""
    admin = await _admin(harness)

    created = await harness.client.post(f"{USERS}/local", json=LOCAL_USER, headers=admin)

    assert created.status_code == 201, created.text
    assert created.headers["Location"] == "/api/users/bob"
    assert created.json()["login"] == "bob"
    assert created.json()["activated"] is True
    assert "password" not in created.json()
    assert await _login_status(harness, "bob", LOCAL_PASSWORD) == 200
    again = await harness.client.post(f"{USERS}/local", json=LOCAL_USER, headers=admin)
    assert again.status_code == 409
    weak = {**LOCAL_USER, "login": "carol", "email": "carol@example.com", "password": "abcd"}
    refused = await harness.client.post(f"{USERS}/local", json=weak, headers=admin)
    assert refused.status_code == 400
    assert await _login_status(harness, "carol", "abcd") == 401
    missing = {key: value for key, value in weak.items() if key != "password"}
    no_password = await harness.client.post(f"{USERS}/local", json=missing, headers=admin)
    assert no_password.status_code == 400
    key = await harness.create_key(
        admin["Authorization"].split()[1], name="admin-key", scopes=["read", "write", "admin"]
    )
    by_key = {**LOCAL_USER, "login": "dave", "email": "dave@example.com"}
    denied = await harness.client.post(
        f"{USERS}/local", json=by_key, headers=key_header(key["key"])
    )
    assert denied.status_code == 403
    assert denied.json()["code"] == "session_required"


async def test_put_users_last_admin_is_400_unknown_id_404(harness: Harness) -> None:
    """UserResource.updateUser: "Cannot update roles for the last remaining admin user."
    (400); an unknown id is "User ... not found" (404)."""
    admin = await _admin(harness)
    me = (await harness.client.get("/api/account", headers=admin)).json()

    demote = await harness.client.put(
        USERS, json={**me, "authorities": ["ROLE_USER"]}, headers=admin
    )
    unknown = await harness.client.put(USERS, json={**me, "id": 424242}, headers=admin)

    assert demote.status_code == 400
    assert demote.headers["X-UtmStack-error"]
    assert unknown.status_code == 404


async def test_dto_and_account_carry_created_by_and_last_modified_by(harness: Harness) -> None:
    """UserDTO's createdBy/lastModifiedBy (JHipster's AbstractAuditingEntity), also on
    GET /api/account (AccountResource.getAccount returns a UserDTO)."""
    admin = await _admin(harness)
    await harness.client.post(
        USERS,
        json={"login": "erin", "email": "erin@example.com", "password": USER_PASSWORD},
        headers=admin,
    )
    await harness.client.put(f"{USERS}/erin", json={"lastName": "E"}, headers=admin)
    erin = bearer(await harness.login("erin", USER_PASSWORD))
    account = (await harness.client.get("/api/account", headers=erin)).json()
    assert account["createdBy"] == "admin"
    assert account["lastModifiedBy"] == "admin"
    me = (await harness.client.get("/api/account", headers=admin)).json()
    assert me["createdBy"] == "system"  # created outside a request (the CLI, bootstrap)


async def test_create_user_without_password_shows_the_link_once(harness: Harness) -> None:
    """UserResource.createUser as user.service.ts ``create(user)`` calls it: no password
    → 201, the user inactive without a usable password (UserService.createUser sets a
    random one and a reset key). Without SMTP the admin gets the single-use link once."""
    admin = await _admin(harness)
    response = await harness.client.post(
        USERS,
        json={"login": "frank", "email": "frank@example.com", "authorities": ["ROLE_USER"]},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["activated"] is False
    assert body["resetLinkMailed"] is False
    assert body["resetLink"].startswith("http://127.0.0.1:8080/settings/reset?key=")
    assert response.headers["Cache-Control"] == "no-store"
    again = (await harness.client.get(f"{USERS}/frank", headers=admin)).json()
    assert "resetLink" not in again
    assert await _login_status(harness, "frank", USER_PASSWORD) == 401


async def test_create_user_without_password_mails_the_link(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """UserResource.createUser → MailService.sendCreationEmail: the link goes by e-mail
    through the configured SMTP server (a real one here), as an invitation; never a
    password, and the response does not carry the link."""
    with running_smtp_server() as (mail, port):
        settings = test_settings(
            tmp_path / "data",
            database_url=database_url,
            alert_smtp_host="127.0.0.1",
            alert_smtp_port=port,
            alert_email_from="authgate@example.com",
            alert_email_to=["ops@example.com"],
            public_url="https://auth.example.com",
        )
        async with harness_with(settings, clock) as harness:
            admin = await _admin(harness)
            response = await harness.client.post(
                USERS, json={"login": "grace", "email": "grace@example.com"}, headers=admin
            )
    assert response.status_code == 201, response.text
    assert response.json()["resetLinkMailed"] is True
    assert response.json()["resetLink"] is None
    [message] = [m for m in mail.messages() if m["To"] == "grace@example.com"]
    text = message.get_content()
    assert "https://auth.example.com/settings/reset?key=" in text
    # An invitation to a new account (the README walkthrough: it was the text of a reset
    # asked for, "if you did not ask for it, ignore this message").
    assert message["Subject"] == "authgate: you are invited"
    assert "created an authgate account for you" in text
    assert "password: " not in text.lower()  # no password given, only the link


async def test_links_can_open_utmstacks_own_reset_page(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """AUTHGATE_RESET_PAGE_URL=https://<utmstack>/reset/finish: the link opens UTMStack's
    page (its route ``reset/finish``, as in its ``creationEmail.html``), whose form
    (password-reset-finish.component.ts) posts ``{key, newPassword}`` to
    /api/account/reset-password/finish, which authgate serves: the user then logs in."""
    settings = test_settings(
        tmp_path / "data",
        database_url=database_url,
        reset_page_url="https://utmstack.example.com/reset/finish",
    )
    async with harness_with(settings, clock) as harness:
        admin = await _admin(harness)
        response = await harness.client.post(
            USERS, json={"login": "heidi", "email": "heidi@example.com"}, headers=admin
        )
        assert response.status_code == 201, response.text
        link = response.json()["resetLink"]
        page, _, key = link.partition("?key=")
        assert page == "https://utmstack.example.com/reset/finish"
        finished = await harness.client.post(
            "/api/account/reset-password/finish", json={"key": key, "newPassword": USER_PASSWORD}
        )
        assert finished.status_code == 200, finished.text
        assert await _login_status(harness, "heidi", USER_PASSWORD) == 200


@pytest.mark.parametrize(
    ("method", "path", "extra"),
    [
        ("POST", USERS, {"login": "gina"}),
        ("POST", f"{USERS}/local", {"login": "gina", "password": USER_PASSWORD}),
    ],
)
async def test_a_malformed_email_is_refused_in_words_not_with_the_pattern(
    harness: Harness, method: str, path: str, extra: dict[str, str]
) -> None:
    """The README walkthrough: "Gina <gina@example.com>" was refused with the raw regular
    expression as the message. Now with Spring's @Email message, as UTMStack's UserDTO."""
    admin = await _admin(harness)
    response = await harness.client.request(
        method, path, json={**extra, "email": "Gina <gina@example.com>"}, headers=admin
    )
    assert response.status_code == 400, response.text
    [error] = response.json()["fieldErrors"]
    assert (error["field"], error["message"]) == ("email", "must be a well-formed email address")
    assert "\\x00" not in response.text
