"""Common and breached passwords, and passwords containing the login or the e-mail's
name, are refused wherever a password is set (issue 10, item 8): creating a user, an
admin's reset, the user's own change and the first admin's password. The Settings
UI forms are tested in tests/web/test_password_forms.py, the CLI in tests/test_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from authgate.app import create_app
from authgate.exceptions import ValidationFailed
from tests.conftest import USER_PASSWORD, FakeClock, Harness, bearer, test_settings

COMMON = ["password1234", "123456789012", "aaaaaaaaaaaa", "Password123!"]
WHY = "common and breached passwords"


@pytest.mark.parametrize("password", COMMON)
async def test_creating_a_user_refuses_common_passwords(
    harness: Harness, admin_token: str, password: str
) -> None:
    response = await harness.client.post(
        "/api/users",
        json={"login": "carol", "email": "carol@example.com", "password": password},
        headers=bearer(admin_token),
    )
    assert response.status_code == 400, response.text
    error = response.json()["fieldErrors"][0]
    assert error["field"] == "password"
    assert WHY in error["message"]
    missing = await harness.client.get("/api/users/carol", headers=bearer(admin_token))
    assert missing.status_code == 404


async def test_a_reset_and_a_change_refuse_common_passwords_and_names(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    for password, why in (
        ("Password123!", WHY),
        ("alice-in-wonderland", "must not contain the login"),
        ("123456789012", WHY),
    ):
        reset = await harness.client.put(
            "/api/users/alice/password", json={"newPassword": password}, headers=bearer(admin_token)
        )
        assert reset.status_code == 400, reset.text
        assert why in reset.json()["fieldErrors"][0]["message"]
        assert reset.json()["fieldErrors"][0]["field"] == "newPassword"
        change = await harness.client.post(
            "/api/account/change-password",
            json={"currentPassword": USER_PASSWORD, "newPassword": password},
            headers=bearer(user_token),
        )
        assert change.status_code == 400, change.text
        assert why in change.json()["fieldErrors"][0]["message"]
    # The e-mail address's name too (alice's is alice@example.com: use another user).
    await harness.create_user("bob", email="robert.smith@example.com")
    reset = await harness.client.put(
        "/api/users/bob/password",
        json={"newPassword": "Robert.Smith-1970!"},
        headers=bearer(admin_token),
    )
    assert reset.status_code == 400
    assert "e-mail" in reset.json()["fieldErrors"][0]["message"]
    # Nothing changed: alice still logs in with her password.
    assert await harness.login("alice", USER_PASSWORD)


async def test_the_first_admin_password_is_checked_and_a_generated_one_passes(
    harness: Harness,
) -> None:
    users = harness.services.users
    with pytest.raises(ValidationFailed) as refused:
        await users.ensure_initial_admin("Password123!")
    assert WHY in refused.value.message
    generated = await users.ensure_initial_admin(None)
    assert generated is not None
    assert await harness.login("admin", generated)


async def test_the_list_can_be_turned_off(tmp_path: Path, clock: FakeClock) -> None:
    """AUTHGATE_PASSWORD_REFUSE_COMMON=false: listed passwords are accepted (the names
    rule stays)."""
    settings = test_settings(tmp_path / "data", password_refuse_common=False)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        users = app.state.services.users
        assert await users.ensure_initial_admin("Password123!") is None  # accepted
        assert (await users.get_user("admin")).login == "admin"
        with pytest.raises(ValidationFailed):
            await users.set_password("admin", "x-admin-x-password")  # contains the login


async def test_a_generated_first_admin_password_meets_a_long_minimum(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = test_settings(tmp_path / "data", password_min_length=64)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services = app.state.services
        generated = await services.users.ensure_initial_admin(None)
        assert generated is not None
        assert len(generated) == 64
        assert (await services.accounts.authenticate("admin", generated)).login == "admin"
