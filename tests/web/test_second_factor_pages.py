"""The second factor in the Settings UI, in-process on SQLite and PostgreSQL: enrolling
from the account page, the sign-in step, the pre-verification cookie being no session,
and the admin's reset. (tests/browser has the same in Chromium.)"""

from __future__ import annotations

import re

from authgate.security.second_factor import totp_code, totp_step
from tests.conftest import USER_PASSWORD, Harness
from tests.web.conftest import LOGIN, Browser, OpenBrowser, html, redirect_target

CODE_PAGE = "/settings/login/code"


def code(harness: Harness, secret: str, steps: int = 0) -> str:
    return totp_code(secret, totp_step(harness.clock().timestamp()) + steps)


async def enrol(harness: Harness, alice: Browser) -> tuple[str, list[str]]:
    setup = await alice.post("/settings/account/tfa/start")
    assert setup.status_code == 200
    page = html(setup)
    secret = page.by_id("tfa-secret").text.strip()
    assert "<svg" in setup.text  # the QR code, rendered by the server
    done = await alice.post("/settings/account/tfa/confirm", {"code": code(harness, secret)})
    assert done.status_code == 200
    codes = [item.text.strip() for item in html(done).by_id("recovery-codes").find_all("li")]
    return secret, codes


async def second_step_form(browser: Browser) -> dict[str, str]:
    page = html(await browser.get(CODE_PAGE))
    return {k: v for k, v in page.find("form", id="code-form").inputs().items() if k != "code"}


async def test_enrol_then_sign_in_with_a_code(
    harness: Harness, alice: Browser, open_browser: OpenBrowser
) -> None:
    secret, codes = await enrol(harness, alice)
    assert len(codes) == 10
    account = await alice.get("/settings/account")
    assert "On (authenticator app)" in account.text
    # The enrolling session proved a code: it may manage the factor at once.
    renewed = await alice.post("/settings/account/tfa/recovery-codes")
    assert renewed.status_code == 200
    assert len(html(renewed).by_id("recovery-codes").find_all("li")) == 10

    browser = await open_browser()
    first = await browser.sign_in("alice", USER_PASSWORD)
    assert redirect_target(first).startswith(CODE_PAGE)
    assert browser.session is None  # the pre-verification cookie is no session
    refused = await browser.get("/settings/account")
    assert redirect_target(refused).startswith(LOGIN)

    form = await second_step_form(browser)
    right = code(harness, secret)  # the set-up code's step: it still signs in
    wrong = await browser.post(
        CODE_PAGE, {**form, "code": "111111" if right != "111111" else "222222"}, csrf=False
    )
    assert wrong.status_code == 401
    assert "That code is not valid." in wrong.text
    signed = await browser.post(CODE_PAGE, {**form, "code": right}, csrf=False)
    assert signed.status_code == 303
    assert browser.session is not None
    assert (await browser.get("/settings/account")).status_code == 200


async def test_admin_sees_and_resets_the_second_factor(
    harness: Harness, admin: Browser, alice: Browser, open_browser: OpenBrowser
) -> None:
    await enrol(harness, alice)
    users = await admin.get("/settings/users")
    assert re.search(r'data-label="2FA"><span class="badge active">TOTP', users.text)
    reset = await admin.post("/settings/users/alice/tfa/reset")
    assert reset.status_code == 303
    browser = await open_browser()
    again = await browser.sign_in("alice", USER_PASSWORD)
    assert redirect_target(again) == "/settings/api-keys"  # password alone again
