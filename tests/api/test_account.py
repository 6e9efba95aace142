"""The caller's own account: JHipster's account object, password change."""

from __future__ import annotations

from typing import Literal

import pytest

from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from tests.conftest import USER_PASSWORD, Harness, bearer

NEW_PASSWORD = "a-brand-new-password"


async def test_account_is_the_jhipster_object(harness: Harness, user_token: str) -> None:
    """GET /api/account returns the JHipster account fields and no password material."""
    response = await harness.client.get("/api/account", headers=bearer(user_token))
    assert response.status_code == 200
    body = response.json()
    assert body["login"] == "alice"
    assert body["email"] == "alice@example.com"
    assert body["activated"] is True
    assert body["authorities"] == ["ROLE_USER"]
    assert body["langKey"] == "en"
    assert {"id", "firstName", "lastName", "createdDate", "lastModifiedDate"} <= set(body)
    assert body["passwordChangeRequired"] is False  # a flag (UTMStack imports), no material
    text = response.text.lower().replace("password_changed", "")
    assert "password" not in text.replace('"passwordchangerequired":false', "")


async def test_change_password_revokes_tokens_and_new_password_works(
    harness: Harness, user_token: str
) -> None:
    """After a password change the user's other tokens are refused while the one that
    made the change goes on (issue 13, section 4: UTMStack's ``password.service.ts``
    keeps using its token after ``POST /api/account/change-password``); the old password
    fails and the new one logs in; "log out everywhere" then ends the kept one too."""
    other_session = await harness.login("alice", USER_PASSWORD)
    response = await harness.client.post(
        "/api/account/change-password",
        json={"currentPassword": USER_PASSWORD, "newPassword": NEW_PASSWORD},
        headers=bearer(user_token),
    )
    assert response.status_code == 200

    refused = await harness.client.get("/api/account", headers=bearer(other_session))
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_revoked"
    kept = await harness.client.get("/api/account", headers=bearer(user_token))
    assert kept.status_code == 200
    old = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD}
    )
    assert old.status_code == 401
    harness.clock.advance(milliseconds=1)
    token = await harness.login("alice", NEW_PASSWORD)
    assert (await harness.client.get("/api/account", headers=bearer(token))).status_code == 200
    everywhere = await harness.client.post("/api/account/logout-all", headers=bearer(token))
    assert everywhere.status_code == 204
    for ended in (user_token, token):
        assert (await harness.client.get("/api/account", headers=bearer(ended))).status_code == 401


async def test_wrong_current_password_is_400_and_keeps_the_session(
    harness: Harness, user_token: str
) -> None:
    """A wrong current password is a field error (400), not a 401 for the token. Its
    ``detail`` holds "Incorrect password", which UTMStack's getting-started dialog
    (utm-admin-change-email) looks for to mark the current-password field."""
    response = await harness.client.post(
        "/api/account/change-password",
        json={"currentPassword": "not-my-password", "newPassword": NEW_PASSWORD},
        headers=bearer(user_token),
    )
    assert response.status_code == 400
    body = response.json()
    assert body["fieldErrors"][0]["field"] == "currentPassword"
    assert "Incorrect password" in body["detail"]
    assert body["detail"] == body["message"] == body["fieldErrors"][0]["message"]
    assert (await harness.client.get("/api/account", headers=bearer(user_token))).status_code == 200


@pytest.mark.parametrize(
    ("new_password", "message_part"),
    [
        ("short", "at least 12"),
        ("x" * 129, "at most 128"),
        ("ALICE", "at least 12"),
        (USER_PASSWORD, "differ"),
    ],
)
async def test_new_password_must_pass_the_policy(
    harness: Harness, user_token: str, new_password: str, message_part: str
) -> None:
    """Too short, too long or unchanged passwords are refused with a field error."""
    response = await harness.client.post(
        "/api/account/change-password",
        json={"currentPassword": USER_PASSWORD, "newPassword": new_password},
        headers=bearer(user_token),
    )
    assert response.status_code == 400
    error = response.json()["fieldErrors"][0]
    assert error["field"] == "newPassword"
    assert message_part in error["message"]


async def test_login_as_password_is_refused(harness: Harness) -> None:
    """A password equal to the login is refused even when long enough."""
    await harness.create_user("longlogin1234")
    token = await harness.login("longlogin1234", USER_PASSWORD)
    response = await harness.client.post(
        "/api/account/change-password",
        json={"currentPassword": USER_PASSWORD, "newPassword": "LongLogin1234"},
        headers=bearer(token),
    )
    assert response.status_code == 400
    assert "login" in response.json()["fieldErrors"][0]["message"]


async def test_change_password_ignores_unknown_fields(harness: Harness, user_token: str) -> None:
    """Unknown body fields are ignored, as Spring does (issue 13), and grant nothing."""
    response = await harness.client.post(
        "/api/account/change-password",
        json={"currentPassword": USER_PASSWORD, "newPassword": NEW_PASSWORD, "admin": True},
        headers=bearer(user_token),
    )
    assert response.status_code == 200
    harness.clock.advance(seconds=1)
    token = await harness.login("alice", NEW_PASSWORD)
    account = await harness.client.get("/api/account", headers=bearer(token))
    assert account.json()["authorities"] == ["ROLE_USER"]


# -- the current password is checked like a login (issue 10, item 5) --------------------


async def count_verifications(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password hash check from now on, as a list that grows (a spy on Argon2)."""
    hasher = harness.services.accounts._hasher
    checked: list[str] = []
    verify = hasher.verify

    async def spy(stored_hash: str, password: str, *, known_address: bool = False) -> Literal[True]:
        checked.append(password)
        return await verify(stored_hash, password, known_address=known_address)

    monkeypatch.setattr(hasher, "verify", spy)
    return checked


async def test_a_stolen_token_is_no_password_oracle(
    harness: Harness, user_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """25 wrong current passwords in a row: the first ones are counted as failed logins
    of the account from that address; past the (account, address) limit the attempts
    get 429 with Retry-After and the password is not even looked at, the right one
    included; a login from that address is throttled too (same counters)."""
    checked = await count_verifications(harness, monkeypatch)
    statuses = []
    for attempt in range(25):
        response = await harness.client.post(
            "/api/account/change-password",
            json={"currentPassword": f"guess-number-{attempt}", "newPassword": NEW_PASSWORD},
            headers=bearer(user_token),
        )
        statuses.append(response.status_code)
    limit = harness.services.settings.login.pair_max_failures
    assert statuses == [400] * limit + [429] * (25 - limit)
    assert len(checked) == limit

    right = await harness.client.post(
        "/api/account/change-password",
        json={"currentPassword": USER_PASSWORD, "newPassword": NEW_PASSWORD},
        headers=bearer(user_token),
    )
    assert right.status_code == 429
    assert right.json()["code"] == "too_many_attempts"
    assert int(right.headers["Retry-After"]) >= 1
    assert len(checked) == limit
    login = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD}
    )
    assert login.status_code == 429

    harness.clock.advance(seconds=60)  # past 10 a minute, refusals are one summary record
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=("AUTH_FAILURE",), actor="alice"), PageRequest(size=100)
    )
    reasons: dict[str | None, int] = {}
    for event in page.items:
        count = (event.details or {}).get("aggregate", {}).get("count", 1)
        reasons[event.reason] = reasons.get(event.reason, 0) + count
    assert reasons["wrong_current_password"] == limit
    assert reasons["account_ip_blocked"] == 25 - limit + 2


async def test_failed_logins_throttle_the_password_change_too(
    harness: Harness, user_token: str
) -> None:
    """The counters are the account's: failed logins from an address throttle a
    password change from it, before its current password is checked."""
    for _ in range(harness.services.settings.login.pair_max_failures):
        await harness.client.post(
            "/api/authenticate", json={"username": "alice", "password": "wrong-password!"}
        )
    response = await harness.client.post(
        "/api/account/change-password",
        json={"currentPassword": USER_PASSWORD, "newPassword": NEW_PASSWORD},
        headers=bearer(user_token),
    )
    assert response.status_code == 429
    assert (await harness.client.get("/api/account", headers=bearer(user_token))).status_code == 200
