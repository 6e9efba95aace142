"""The Settings UI in a real browser against a real server: signing in, brute-force
lockout, the API key lifecycle (create with inline validation, shown once, copy, use,
last use, recent use, regenerate with grace, revoke), admin-only pages, CSRF, phone
width and keyboard use."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Dialog, Locator, Page, Request, expect

from tests.browser.conftest import (
    PAIR_MAX_FAILURES,
    Account,
    AccountFactory,
    PageFactory,
    Server,
    account_status,
    create_api_key,
    save_doc_screenshot,
    sign_in,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

PHONE = {"width": 375, "height": 740}
ADMIN_PAGES = (
    "/settings/users",
    "/settings/audit",
    "/settings/keys-review",
    "/settings/alerts",
    "/settings/service-credentials",
)
LAST_USED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ from 127\.0\.0\.1")


def accept_dialogs(page: Page) -> list[str]:
    """Accepts every confirm() the page opens; returns their messages as they come."""
    messages: list[str] = []

    async def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    return messages


def key_row(page: Page, name: str) -> Locator:
    return page.locator("table.keys tbody tr").filter(
        has=page.get_by_role("link", name=name, exact=True)
    )


async def open_create_form(page: Page) -> None:
    """Unfolds the create form with the page's "Create API Key" button."""
    await page.get_by_role("link", name="Create API Key").click()
    await expect(page.locator("details#create")).to_have_attribute("open", "")
    await expect(page.get_by_label("Name", exact=True)).to_be_visible()


async def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the viewport (0 when it fits)."""
    width: int = await page.evaluate(
        "document.scrollingElement.scrollWidth - document.documentElement.clientWidth"
    )
    return width


async def submit_login(page: Page, login: str, password: str) -> None:
    await page.locator("#username").fill(login)
    await page.locator("#password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


# -- signing in ----------------------------------------------------------------------------


async def test_wrong_password_is_refused_with_a_message(page: Page, user: Account) -> None:
    """A wrong password keeps the user on the login page with a message, no session."""
    await page.goto("/settings/login")
    await expect(page.locator("#username")).to_be_focused()  # autofocus
    await save_doc_screenshot(page, "login")

    await submit_login(page, user.login, "not-the-password-at-all")

    error = page.locator("#login-error")
    await expect(error).to_have_text("Wrong username or password.")
    await expect(error).to_have_attribute("role", "alert")
    await expect(page).to_have_url(re.compile(r"/settings/login"))
    cookies = await page.context.cookies()
    assert "__Host-authgate_session" not in {cookie["name"] for cookie in cookies}


async def test_repeated_failures_lock_the_account_out_for_a_while(
    page: Page, make_user: AccountFactory
) -> None:
    """After PAIR_MAX_FAILURES failures from one address the next attempt (even with the
    right password) is refused with the lockout message and when to try again."""
    target = make_user("dave")
    await page.goto("/settings/login")
    for _ in range(PAIR_MAX_FAILURES):
        await submit_login(page, target.login, "wrong-password-attempt")
        await expect(page.locator("#login-error")).to_have_text("Wrong username or password.")

    await submit_login(page, target.login, target.password)

    error = page.locator("#login-error")
    await expect(error).to_contain_text("Too many failed logins for this account from this address")
    match = re.search(r"Try again in (\d+) seconds\.", await error.inner_text())
    assert match, await error.inner_text()
    assert 1 <= int(match.group(1)) <= 30  # the first block lasts the base delay, 30 s
    await expect(page).to_have_url(re.compile(r"/settings/login"))


async def test_account_page_shows_the_signed_in_user(page: Page, user: Account) -> None:
    await sign_in(page, user)
    await (
        page.get_by_role("navigation", name="Settings").get_by_role("link", name="Account").click()
    )
    await expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    await expect(page.get_by_role("heading", name=user.login)).to_be_visible()
    await expect(page.locator(".facts")).to_contain_text("ROLE_USER")
    await expect(page.locator("header .who")).to_have_text(user.login)
    await save_doc_screenshot(page, "account")


# -- the API key lifecycle -----------------------------------------------------------------


async def test_create_key_validates_inline_shows_it_once_and_records_its_use(
    page: Page, server: Server, user: Account
) -> None:
    await sign_in(page, user)
    posts: list[str] = []

    def record_post(request: Request) -> None:
        if request.method == "POST":
            posts.append(request.url)

    page.on("request", record_post)

    await open_create_form(page)
    # With the list editor, the hint no longer says "one per line".
    await expect(page.locator("#allowed-hint")).not_to_contain_text("one per line")
    await page.get_by_label("Name", exact=True).fill("ci-deploy")
    add = page.get_by_role("button", name="Add IP or range")
    await add.click()
    first = page.locator("#allowed_ips-1")
    await expect(first).to_be_focused()
    await first.fill("10.0.0.1/33")
    await add.click()
    second = page.locator("#allowed_ips-2")
    await second.fill("10.0.0.300")

    first_error = page.locator("li").filter(has=first).locator(".field-error")
    second_error = page.locator("li").filter(has=second).locator(".field-error")
    await expect(first_error).to_be_visible()
    await expect(first_error).to_contain_text("Invalid CIDR format")
    await expect(first).to_have_attribute("aria-invalid", "true")
    await expect(second_error).to_have_text("Invalid IP address format")
    # Each row's input is described by its own error and the field's hint.
    described = await second.get_attribute("aria-describedby")
    assert described is not None
    assert described.split() == ["allowed_ips-2-error", "allowed-hint"]
    # Removing a row renumbers the rest, and a row added then gets an id of its own.
    await add.click()
    third = page.locator("#allowed_ips-3")
    await third.fill("192.0.2.1")
    await page.get_by_role("button", name="Remove entry 3").click()
    await expect(third).to_have_count(0)
    await add.click()
    fourth = page.locator("#allowed_ips-4")
    await expect(fourth).to_have_attribute("aria-label", "Allowed IP or range 3")
    await page.get_by_role("button", name="Remove entry 3").click()
    await expect(second).to_have_attribute("aria-label", "Allowed IP or range 2")

    # The browser does not send the form while an entry is invalid.
    await page.get_by_role("button", name="Create API Key").click()
    await expect(first).to_be_focused()
    await page.wait_for_timeout(300)
    assert posts == []
    await expect(page.locator("#new-key")).to_have_count(0)

    await first.fill("10.0.0.0/8")
    await expect(first_error).to_be_hidden()
    await expect(first).to_have_attribute("aria-invalid", "false")
    await second.fill("10.0.0.0/8")
    await expect(second_error).to_have_text("This IP is already added")
    await second.fill("127.0.0.1")
    await expect(second_error).to_be_hidden()

    await page.locator('[data-expiry-days="30"]').click()
    expected_expiry = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    await expect(page.locator("#expires_on")).to_have_value(expected_expiry)

    await page.get_by_role("button", name="Create API Key").click()

    # Shown once, with the warning and a working Copy button.
    await expect(page.get_by_role("heading", level=1)).to_have_text("API key created: ci-deploy")
    key = (await page.locator("#new-key").inner_text()).strip()
    assert key.startswith("agk_")
    assert len(key) == 66
    await expect(page.locator(".warning")).to_be_visible()
    await expect(page.locator(".warning")).to_contain_text("It is shown only this once")
    await page.locator("[data-copy]").click()
    await expect(page.locator(".copied")).to_have_text("Copied to the clipboard.")
    assert await page.evaluate("navigator.clipboard.readText()") == key
    # The curl lines wrap inside their boxes instead of running off the edge.
    overflows = await page.locator("pre.wrap").evaluate_all(
        "blocks => blocks.map(b => b.scrollWidth - b.clientWidth)"
    )
    assert overflows, "no curl lines"
    assert max(overflows) <= 1, overflows
    await save_doc_screenshot(page, "key-created")

    # The key's page and the list: not used yet.
    await page.get_by_role("link", name="I have stored it").click()
    await expect(page.locator(".last-used")).to_have_text("never used")
    await expect(page.locator(".facts")).to_contain_text("10.0.0.0/8, 127.0.0.1")
    await page.goto("/settings/api-keys")
    row = key_row(page, "ci-deploy")
    await expect(row.locator(".last-used")).to_have_text("never used")
    await expect(row).to_contain_text("10.0.0.0/8, 127.0.0.1")
    expires_on = row.locator("td").nth(6)
    await expect(expires_on).to_have_text(expected_expiry)

    # A real call with the key authenticates as its owner...
    response = account_status(server, key)
    assert response.status_code == 200, response.text
    assert response.json()["login"] == user.login

    # ...and shows as the last use once the usage batch is written (every 0.2 s).
    deadline = time.monotonic() + 8
    while True:
        await page.reload()
        text = await key_row(page, "ci-deploy").locator(".last-used").inner_text()
        if LAST_USED.fullmatch(text.strip()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert LAST_USED.fullmatch(text.strip()), text
    await save_doc_screenshot(page, "key-list")

    await key_row(page, "ci-deploy").get_by_role("link", name="ci-deploy").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("ci-deploy")
    recent = page.locator("section").filter(has=page.get_by_role("heading", name="Recent use"))
    rows = recent.locator("table.usage tbody tr")
    await expect(rows).to_have_count(1)
    cells = rows.first.locator("td")
    await expect(cells.nth(1)).to_have_text("127.0.0.1")
    await expect(cells.nth(2)).to_have_text("GET")
    await expect(cells.nth(3)).to_have_text("/api/account")
    await expect(cells.nth(4)).to_have_text("200")
    await expect(page.locator(".last-used")).to_have_text(LAST_USED)
    await save_doc_screenshot(page, "key-detail")


async def test_regenerate_with_grace_then_revoke(page: Page, server: Server, user: Account) -> None:
    key_id, old_key = create_api_key(server, user, "rotate-me")
    # Another live key, so that the list (and its "Show revoked keys too" link) stays.
    create_api_key(server, user, "stays-active")
    dialogs = accept_dialogs(page)
    await sign_in(page, user)
    await page.goto(f"/settings/api-keys/{key_id}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("rotate-me")

    await page.get_by_label("The current key keeps working for").select_option(label="1 hour")
    await page.get_by_role("button", name="Regenerate").click()

    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "API key regenerated: rotate-me"
    )
    assert dialogs == ["Regenerate this key?"]
    new_key = (await page.locator("#new-key").inner_text()).strip()
    assert new_key.startswith("agk_")
    assert new_key != old_key
    await expect(page.get_by_text("The previous key keeps working until")).to_be_visible()

    # Both work during the grace period.
    for key in (old_key, new_key):
        response = account_status(server, key)
        assert response.status_code == 200, response.text
        assert response.json()["login"] == user.login

    await page.goto(f"/settings/api-keys/{key_id}")
    await expect(page.locator(".badge")).to_have_text("rotating")
    revoke = page.locator("form").filter(has=page.get_by_role("button", name="Revoke"))
    # The checkbox is required: without it nothing is sent and nothing is asked.
    await revoke.get_by_role("button", name="Revoke").click()
    await expect(page).to_have_url(re.compile(rf"/settings/api-keys/{key_id}$"))
    assert dialogs == ["Regenerate this key?"]

    await revoke.get_by_label("I understand: revoke rotate-me").check()
    await revoke.get_by_role("button", name="Revoke").click()
    await expect(page.locator(".notice")).to_contain_text("The key is revoked.")
    await expect(page).to_have_url(re.compile(r"/settings/api-keys$"))
    assert dialogs[-1] == "Revoke rotate-me? Requests with it will fail at once."

    for key in (new_key, old_key):
        response = account_status(server, key)
        assert response.status_code == 401, response.text

    await expect(key_row(page, "rotate-me")).to_have_count(0)
    await page.get_by_role("link", name="Show revoked keys too").click()
    await expect(key_row(page, "rotate-me").locator(".badge")).to_have_text("revoked")


async def test_revoked_keys_stay_reachable_after_revoking_the_last_key(
    page: Page, server: Server, make_user: AccountFactory
) -> None:
    """A user whose only key is revoked can still find it from the list page."""
    owner = make_user("erin")
    key_id, _ = create_api_key(server, owner, "only-key")
    dialogs = accept_dialogs(page)
    await sign_in(page, owner)
    await page.goto(f"/settings/api-keys/{key_id}")
    await page.get_by_label("I understand: revoke only-key").check()
    await page.get_by_role("button", name="Revoke").click()
    await expect(page.locator(".notice")).to_contain_text("The key is revoked.")
    assert len(dialogs) == 1

    await page.get_by_role("link", name="Show revoked keys too").click(timeout=3_000)
    await expect(key_row(page, "only-key").locator(".badge")).to_have_text("revoked")


# -- access control and CSRF ---------------------------------------------------------------


async def test_ordinary_user_gets_the_not_allowed_page_for_admin_pages(
    page: Page, user: Account
) -> None:
    """The admin pages answer an ordinary user with the 403 HTML page, not a crash or
    JSON, and the navigation does not offer them."""
    await sign_in(page, user)
    nav = page.get_by_role("navigation", name="Settings")
    for link in ("Users", "Audit", "Keys review", "Alerts", "Service credentials"):
        await expect(nav.get_by_role("link", name=link)).to_have_count(0)

    for path in ADMIN_PAGES:
        response = await page.goto(path)
        assert response is not None
        assert response.status == 403, path
        assert response.headers["content-type"].startswith("text/html"), path
        await expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
        await expect(page.locator("main")).to_contain_text("administrators only")
        await expect(page.locator("header .who")).to_have_text(user.login)


async def test_posts_without_the_csrf_token_are_refused(page: Page, user: Account) -> None:
    await sign_in(page, user)

    # A form whose hidden token was removed (as a forged cross-site form would lack it).
    await open_create_form(page)
    await page.get_by_label("Name", exact=True).fill("forged-key")
    await page.evaluate(
        """() => document.querySelector('form[action="/settings/api-keys"] '
                                         + 'input[name="csrf_token"]').remove()"""
    )
    async with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/settings/api-keys")
    ) as answer:
        await page.get_by_role("button", name="Create API Key").click()
    assert (await answer.value).status == 403
    await expect(page.get_by_role("heading", level=1)).to_have_text("Form refused")

    # A request with the session cookie but no token, and one with a wrong token.
    forms: list[dict[str, str | float | bool]] = [{}, {"csrf_token": "0" * 64}]
    for form in forms:
        refused = await page.request.post("/settings/account/logout-all", form=form)
        assert refused.status == 403
        assert "Form refused" in await refused.text()

    # Nothing happened: no key, and the session still works.
    await page.goto("/settings/api-keys")
    await expect(page.get_by_role("heading", level=1)).to_have_text("API Keys")
    await expect(key_row(page, "forged-key")).to_have_count(0)


# -- phone width and keyboard --------------------------------------------------------------


async def test_phone_width_create_form_is_usable_without_horizontal_scrolling(
    new_page: PageFactory, user: Account
) -> None:
    page = await new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    await page.goto("/settings/login")
    assert await horizontal_overflow(page) <= 2
    await sign_in(page, user)
    assert await horizontal_overflow(page) <= 2, "the API keys page scrolls sideways"

    create = page.get_by_role("button", name="Create API Key")
    await open_create_form(page)
    await page.get_by_label("Name", exact=True).fill("phone-key")
    await page.get_by_role("button", name="Add IP or range").tap()
    await page.locator("#allowed_ips-1").fill("127.0.0.1")
    await page.locator('[data-expiry-days="90"]').tap()
    for control in (page.locator("#name"), page.locator("#allowed_ips-1"), create):
        box = await control.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= PHONE["width"], await control.evaluate("e => e.outerHTML")
    assert await horizontal_overflow(page) <= 2
    await create.tap()

    await expect(page.get_by_role("heading", level=1)).to_have_text("API key created: phone-key")
    assert await horizontal_overflow(page) <= 2, "the key-created page scrolls sideways"
    await page.get_by_role("link", name="I have stored it").tap()
    await expect(page.get_by_role("heading", level=1)).to_have_text("phone-key")
    assert await horizontal_overflow(page) <= 2, "the key's page scrolls sideways"
    await page.goto("/settings/account")
    assert await horizontal_overflow(page) <= 2, "the account page scrolls sideways"


async def test_keyboard_tab_reaches_the_create_form_fields_in_order(
    page: Page, user: Account
) -> None:
    await sign_in(page, user)
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()

    await open_create_form(page)
    await page.get_by_label("Name", exact=True).focus()
    visited: list[str] = []
    for _ in range(40):
        focused = await page.evaluate(
            """() => {
                const e = document.activeElement;
                return e.id || e.dataset.expiryDays || e.value || e.textContent.trim();
            }"""
        )
        if not visited or visited[-1] != focused:
            visited.append(focused)
        if focused == "Create API Key":
            break
        await page.keyboard.press("Tab")

    expected = ["name", "expires_on", "30", "90", "180", "365", "Add IP or range", "read",
                "write", "rate_limit", "Create API Key"]  # fmt: skip
    positions = [visited.index(item) if item in visited else -1 for item in expected]
    assert -1 not in positions, visited
    assert positions == sorted(positions), visited
