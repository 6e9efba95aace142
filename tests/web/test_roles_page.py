"""The Settings UI's users page gives the v12 roles and lists what each role permits."""

from __future__ import annotations

from tests.conftest import Harness
from tests.web.conftest import Browser, html, main_text

USERS = "/settings/users"


async def test_the_users_page_lists_every_role_with_its_permissions(
    harness: Harness, admin: Browser
) -> None:
    page = html(await admin.get(USERS))
    viewer = page.by_id("role-ROLE_VIEWER")
    assert "Viewer" in viewer.text
    listed = page.by_id("roles").text
    assert "users.read" in listed
    assert "alerts.write" in listed
    choices = {
        element.attrs["value"]
        for element in page.find_all("input", name="roles")
        if element.attrs.get("type") == "checkbox"
    }
    assert {"ROLE_ADMIN", "ROLE_ANALYST", "ROLE_VIEWER", "ROLE_USER"} <= choices


async def test_an_admin_gives_the_viewer_role(harness: Harness, admin: Browser) -> None:
    await harness.create_user("alice")
    response = await admin.post(
        f"{USERS}/alice/edit", {"roles": ["ROLE_VIEWER", "ROLE_USER"], "activated": "on"}
    )
    assert response.status_code == 303, main_text(response)
    user = await harness.services.users.get_user("alice")
    assert user.authorities == {"ROLE_VIEWER", "ROLE_USER"}
    assert user.activated
