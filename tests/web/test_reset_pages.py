"""The Settings UI's password recovery (issue 13, section 3): ``/settings/reset``,
linked from sign-in (UTMStack's ``password-reset/init`` and ``/finish`` pages), and the
admin's password links for users created without a password (``UserResource
.createUser``)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlparse

from authgate.clock import format_utc
from authgate.services.reset_keys import INVITATION_TTL
from tests.conftest import USER_PASSWORD, Harness
from tests.web.conftest import LOGIN, Browser, OpenBrowser, html, main_text, redirect_target

RESET = "/settings/reset"
NEW_PASSWORD = "a-brand-new-password-42"


async def _set_password(browser: Browser, link: str, password: str) -> str:
    """Open a reset link, choose ``password``; the redirect target."""
    parsed = urlparse(link)
    page = await browser.get(f"{parsed.path}?{parsed.query}")
    assert page.status_code == 200
    form = html(page).find("form", action=RESET + "/finish").inputs()
    response = await browser.post(
        RESET + "/finish",
        {**form, "new_password": password, "confirm_password": password},
        csrf=False,
    )
    return redirect_target(response)


async def test_sign_in_links_to_the_reset_page(open_browser: OpenBrowser) -> None:
    """The sign-in page offers "Forgot your password?" → /settings/reset."""
    browser = await open_browser()
    link = html(await browser.get(LOGIN)).by_id("forgot-password")
    assert link.attrs["href"] == RESET


async def test_asking_for_a_link_answers_the_same_for_everyone(
    harness: Harness, open_browser: OpenBrowser, alice_id: int
) -> None:
    """Known or unknown address, the page says the same (and, without SMTP, whom to ask)."""
    answers = []
    for address in ("alice@example.com", "nobody@example.com"):
        browser = await open_browser()
        form = html(await browser.get(RESET)).find("form", action=RESET).inputs()
        response = await browser.post(RESET, {**form, "email": address}, csrf=False)
        assert response.status_code == 200
        page = html(response)
        page.by_id("reset-sent")
        page.by_id("reset-no-mail")
        answers.append(main_text(response).replace(form["csrf_token"], ""))
    await harness.services.password_resets.settle()
    assert len(set(answers)) == 1


async def test_admin_creates_a_user_without_password_and_hands_over_the_link(
    harness: Harness, admin: Browser, open_browser: OpenBrowser
) -> None:
    """Creating a user with an empty password shows the single-use link once; the user
    chooses a password with it (and is activated), then signs in; the link is used up."""
    created = await admin.post(
        "/settings/users", {"login": "ivan", "email": "ivan@example.com", "roles": "ROLE_USER"}
    )
    assert created.status_code == 200, main_text(created)
    link = html(created).by_id("reset-link-url").attrs["value"]
    assert link.startswith("http://127.0.0.1:8080/settings/reset?key=")

    ivan = await open_browser()
    harness.clock.advance(seconds=1)
    assert (await _set_password(ivan, link, NEW_PASSWORD)).startswith(LOGIN)
    harness.clock.advance(seconds=1)
    assert (await ivan.sign_in("ivan", NEW_PASSWORD)).status_code == 303

    # Opened again, the used link says so at once: no password form to fill in vain.
    again = await open_browser()
    parsed = urlparse(link)
    page = await again.get(f"{parsed.path}?{parsed.query}")
    assert page.status_code == 400
    assert "already been used" in html(page).by_id("reset-dead-link").text
    assert html(page).find_all("form", action=RESET + "/finish") == []


async def test_the_reset_form_states_the_rules_and_a_link_used_meanwhile_is_refused(
    harness: Harness, admin: Browser, open_browser: OpenBrowser, alice_id: int
) -> None:
    """The form says what a password needs; a link used in another tab after this one
    was opened is refused when this form is sent."""
    response = await admin.post("/settings/users/alice/reset-link", {})
    link = html(response).by_id("reset-link-url").attrs["value"]
    parsed = urlparse(link)
    alice = await open_browser()
    page = await alice.get(f"{parsed.path}?{parsed.query}")
    assert page.status_code == 200
    assert "At least 12 characters" in html(page).by_id("reset-rules").text
    form = html(page).find("form", action=RESET + "/finish").inputs()
    harness.clock.advance(seconds=1)
    other_tab = await open_browser()
    assert (await _set_password(other_tab, link, NEW_PASSWORD)).startswith(LOGIN)
    used = await alice.post(
        RESET + "/finish",
        {**form, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
        csrf=False,
    )
    assert used.status_code == 400
    assert "already been used" in html(used).by_id("reset-error").text


async def test_admin_sends_a_password_link_to_an_existing_user(
    harness: Harness, admin: Browser, open_browser: OpenBrowser, alice_id: int
) -> None:
    """The "Send a password link" button: without SMTP the admin sees the link once."""
    response = await admin.post("/settings/users/alice/reset-link", {})
    assert response.status_code == 200, main_text(response)
    link = html(response).by_id("reset-link-url").attrs["value"]
    alice = await open_browser()
    harness.clock.advance(seconds=1)
    assert (await _set_password(alice, link, NEW_PASSWORD)).startswith(LOGIN)
    harness.clock.advance(seconds=1)
    assert (await alice.sign_in("alice", USER_PASSWORD)).status_code == 401


async def test_an_invited_user_is_shown_as_invited_for_the_invitations_seven_days(
    harness: Harness, admin: Browser, alice_id: int
) -> None:
    """A user created without a password is "invited" (v12's ``pending``), not
    deactivated; the link lasts as long as a POST /api/v1/users invitation (7 days), and
    its expiry is written in ISO 8601 like every time in the UI. A password link for an
    existing user lasts 24 hours."""
    created = await admin.post(
        "/settings/users", {"login": "ivan", "email": "ivan@example.com", "roles": "ROLE_USER"}
    )

    page = html(created)
    expires = format_utc(harness.clock() + INVITATION_TTL, timespec="seconds")
    assert page.by_id("reset-link-expires").attrs["datetime"] == expires
    assert page.by_id("reset-link-expires").text == expires
    users = html(await admin.get("/settings/users"))
    badges = {
        row.find("th", data_label="Login").text: row.find("td", data_label="Active").text
        for row in users.find_all("tr")
        if row.find_all("th", data_label="Login")
    }
    assert badges["ivan"] == "invited"
    assert badges["alice"] == "active"

    reset = html(await admin.post("/settings/users/alice/reset-link", {}))
    day = format_utc(harness.clock() + timedelta(hours=24), timespec="seconds")
    assert reset.by_id("reset-link-expires").attrs["datetime"] == day
