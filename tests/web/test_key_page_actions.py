"""A key's page offers only the forms the service would carry out for the caller: the
owner edits, regenerates and revokes; an admin (``api_keys.write``) revokes and
re-enables anyone's key; a viewer (``api_keys.read``) only reads."""

from __future__ import annotations

from authgate.services.user_fields import NewUser
from tests.conftest import USER_PASSWORD, Harness
from tests.web.conftest import Browser, OpenBrowser, html, signed_in
from tests.web.test_key_remediation_pages import alice_key

KEYS = "/settings/api-keys"


async def forms_on(browser: Browser, page: str) -> set[str]:
    response = await browser.get(page)
    assert response.status_code == 200, response.text
    return {form.attrs["action"].rsplit("/", 1)[1] for form in html(response).find_all("form")}


async def back_link(browser: Browser, page: str) -> tuple[str, str]:
    link = html(await browser.get(page)).find("main").find_all("a")[0]
    return link.attrs["href"], link.text


async def viewer(harness: Harness, open_browser: OpenBrowser) -> Browser:
    await harness.services.users.create_user(
        NewUser(
            login="vera",
            email="vera@example.com",
            password=USER_PASSWORD,
            authorities=frozenset({"ROLE_USER", "ROLE_VIEWER"}),
        )
    )
    return await signed_in(open_browser, "vera", USER_PASSWORD)


async def test_the_owner_is_offered_every_action(
    harness: Harness, alice: Browser, alice_id: int
) -> None:
    key, _ = await alice_key(harness, alice_id)
    page = f"{KEYS}/{key}"

    assert {"edit", "regenerate", "revoke"} <= await forms_on(alice, page)
    assert await back_link(alice, page) == (KEYS, "← API Keys")


async def test_a_viewer_reads_another_users_key_and_is_offered_nothing(
    harness: Harness, open_browser: OpenBrowser, admin: Browser, alice_id: int
) -> None:
    """ROLE_VIEWER may read the key but not revoke, re-enable or change it (the service
    answers 404): no form for it, and the way back leads to the viewer's own keys."""
    key, _ = await alice_key(harness, alice_id)
    page = f"{KEYS}/{key}"
    vera = await viewer(harness, open_browser)

    assert await forms_on(vera, page) == {"logout"}
    assert await back_link(vera, page) == (KEYS, "← Your API keys")
    assert (await vera.post(f"{page}/revoke", {"confirm": "on"})).status_code == 404

    # Suspended with its owner's deactivation: still nothing to do for the viewer.
    await admin.post("/settings/users/alice/edit", {"roles": ["ROLE_USER"]})
    await admin.post("/settings/users/alice/edit", {"roles": ["ROLE_USER"], "activated": "on"})
    assert "Suspended" in html(await vera.get(page)).find("main").text
    assert await forms_on(vera, page) == {"logout"}
    assert await forms_on(admin, page) == {"logout", "resume", "revoke"}


async def test_an_admin_may_revoke_another_users_key_but_not_change_it(
    harness: Harness, admin: Browser, alice_id: int
) -> None:
    key, _ = await alice_key(harness, alice_id)
    page = f"{KEYS}/{key}"

    assert await forms_on(admin, page) == {"logout", "revoke"}
    assert await back_link(admin, page) == ("/settings/keys-review", "← Keys review")


async def test_a_grace_period_too_large_for_a_number_is_refused_not_a_500(
    harness: Harness, alice: Browser, alice_id: int, admin: Browser
) -> None:
    """The robustness review's 500s: ``grace_seconds`` of 20 digits overflowed
    ``timedelta`` when regenerating a key (any signed-in owner) or rotating a service
    credential (admins). Now refused as the REST API refuses a value out of range (422,
    its message); nothing changed."""
    key, plaintext = await alice_key(harness, alice_id)
    for grace in ("18446744073709551616", "9" * 400, "-5", "1e3", "", "\u0661\u0662\u0663"):
        answer = await alice.post(f"{KEYS}/{key}/regenerate", {"grace_seconds": grace})
        assert answer.status_code == 422, (grace, answer.status_code)
        assert "between 0 seconds and 7 days" in answer.text
    assert (
        await harness.client.get("/api/account", headers={"Utm-Api-Key": plaintext})
    ).status_code == 200  # the key was not regenerated
    await admin.post(
        "/settings/service-credentials", {"name": "log-input", "endpoints": "api-keys.authenticate"}
    )
    (row,) = await harness.services.service_credentials.list_all()
    rotated = await admin.post(
        f"/settings/service-credentials/{row.id}/rotate", {"grace_seconds": "1" * 25}
    )
    assert rotated.status_code == 422


async def test_a_reloaded_regeneration_regenerates_nothing(
    harness: Harness, alice: Browser, alice_id: int
) -> None:
    """The Settings UI review: the new key is the answer to the POST, so reloading that
    page sent the form again and regenerated once more; the key the page had just
    promised would keep working for the grace period was refused at once. The form names
    the secret it replaces: sent again, it changes nothing (409, said why)."""
    key, original = await alice_key(harness, alice_id)
    form = (
        html(await alice.get(f"{KEYS}/{key}"))
        .find("form", action=f"{KEYS}/{key}/regenerate")
        .inputs()
    )
    fields = {**form, "grace_seconds": "3600"}
    first = await alice.post(f"{KEYS}/{key}/regenerate", fields, csrf=False)
    assert first.status_code == 200
    reloaded = await alice.post(f"{KEYS}/{key}/regenerate", fields, csrf=False)
    assert reloaded.status_code == 409
    assert "nothing was changed" in reloaded.text
    # The original key still works for its grace period, as the first answer promised.
    answer = await harness.client.get("/api/account", headers={"Utm-Api-Key": original})
    assert answer.status_code == 200
    # A fresh form regenerates again, as it always could.
    fresh = (
        html(await alice.get(f"{KEYS}/{key}"))
        .find("form", action=f"{KEYS}/{key}/regenerate")
        .inputs()
    )
    again = await alice.post(
        f"{KEYS}/{key}/regenerate", {**fresh, "grace_seconds": "0"}, csrf=False
    )
    assert again.status_code == 200
