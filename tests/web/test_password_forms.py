"""The Settings UI's password forms refuse common and breached passwords and say why
(issue 10, item 8)."""

from __future__ import annotations

from tests.conftest import USER_PASSWORD, Harness
from tests.web.conftest import Browser, html

WHY = "common and breached passwords"


async def test_the_settings_forms_say_why(harness: Harness, admin: Browser, alice: Browser) -> None:
    created = await admin.post(
        "/settings/users",
        {
            "login": "carol",
            "email": "carol@example.com",
            "password": "aaaaaaaaaaaa",
            "roles": ["ROLE_USER"],
        },
    )
    assert created.status_code == 400
    assert WHY in html(created).find("main").text
    form = {"current_password": USER_PASSWORD, "new_password": "password1234"}
    changed = await alice.post(
        "/settings/account/password", {**form, "confirm_password": "password1234"}
    )
    assert changed.status_code == 400
    assert WHY in html(changed).by_id("new_password-error").text
