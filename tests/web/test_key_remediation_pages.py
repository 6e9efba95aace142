"""The Settings UI's side of key remediation (issue 10, item 10): a checkbox to revoke
the keys with an admin's password reset and with "log out everywhere", and a button to
re-enable a key suspended by its owner's deactivation."""

from __future__ import annotations

from datetime import timedelta

from authgate.services.api_key_views import KeySpec
from tests.conftest import Harness
from tests.web.conftest import Browser, html, notice_of, redirect_target


async def alice_key(harness: Harness, alice_id: int, name: str = "ci") -> tuple[str, str]:
    created = await harness.services.api_keys.create(
        alice_id, KeySpec(name=name, expires_at=harness.clock() + timedelta(days=30))
    )
    return created.view.public_id, created.plaintext


async def status_of(harness: Harness, key: str) -> int:
    return (await harness.client.get("/api/account", headers={"Utm-Api-Key": key})).status_code


async def test_the_reset_form_can_revoke_the_keys(
    harness: Harness, admin: Browser, alice_id: int
) -> None:
    _, kept = await alice_key(harness, alice_id, "kept")
    page = html(await admin.get("/settings/users", edit="alice"))
    box = page.by_id(f"user-{alice_id}-password-revoke_api_keys")
    assert box.attrs["type"] == "checkbox"
    assert "checked" not in box.attrs  # opt-in
    form = {"new_password": "a-new-secret-for-her", "confirm_password": "a-new-secret-for-her"}
    reset = await admin.post("/settings/users/alice/password", form)
    assert "API keys" not in notice_of(reset)
    assert await status_of(harness, kept) == 200

    reset = await admin.post(
        "/settings/users/alice/password",
        {
            "new_password": "another-new-secret",
            "confirm_password": "another-new-secret",
            "revoke_api_keys": "on",
        },
    )
    assert notice_of(reset).endswith("and their API keys are revoked.")
    assert await status_of(harness, kept) == 401


async def test_log_out_everywhere_can_revoke_my_keys(
    harness: Harness, alice: Browser, alice_id: int
) -> None:
    _, key = await alice_key(harness, alice_id)
    page = html(await alice.get("/settings/account"))
    assert "checked" not in page.find("input", name="revoke_api_keys").attrs
    response = await alice.post("/settings/account/logout-all", {"revoke_api_keys": "on"})
    assert notice_of(response) == "You are signed out everywhere and your API keys are revoked."
    assert await status_of(harness, key) == 401


async def test_a_suspended_key_is_shown_and_re_enabled(
    harness: Harness, admin: Browser, alice_id: int
) -> None:
    key_id, key = await alice_key(harness, alice_id)
    off = await admin.post("/settings/users/alice/edit", {"roles": ["ROLE_USER"]})
    assert redirect_target(off).startswith("/settings/users")
    on = await admin.post("/settings/users/alice/edit", {"roles": ["ROLE_USER"], "activated": "on"})
    assert redirect_target(on).startswith("/settings/users")
    assert await status_of(harness, key) == 401

    detail = html(await admin.get(f"/settings/api-keys/{key_id}"))
    assert detail.find("span", class_="badge").text == "suspended"
    button = detail.find("form", action=f"/settings/api-keys/{key_id}/resume")
    assert "Re-enable" in button.text
    resumed = await admin.post(f"/settings/api-keys/{key_id}/resume")
    assert notice_of(resumed) == "The key is enabled again."
    assert await status_of(harness, key) == 200
    detail = html(await admin.get(f"/settings/api-keys/{key_id}"))
    assert not detail.find_all("form", action=f"/settings/api-keys/{key_id}/resume")


async def test_the_key_page_shows_the_rollup_totals_and_the_recent_requests(
    harness: Harness, admin: Browser, alice_id: int
) -> None:
    """The key's page counts every accepted request of the last day (from the rollups),
    beside the raw recent requests."""
    key_id, key = await alice_key(harness, alice_id)
    for _ in range(3):
        assert await status_of(harness, key) == 200
    await harness.services.usage.flush()

    detail = html(await admin.get(f"/settings/api-keys/{key_id}"))
    totals = " ".join(detail.find("p", class_="usage-totals").text.split())
    assert totals.startswith("In the last 24 hours: 3 accepted requests (2xx 3, 3xx 0, 4xx 0")
    assert len(detail.find("table", class_="usage").find_all("tr")) == 1 + 3
