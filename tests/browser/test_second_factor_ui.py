"""The second factor in a real browser: enrol by reading the secret from the account page,
sign out, sign in with a code (auto-submitted at six digits), then with a recovery code."""

from __future__ import annotations

import re
import time

import pytest
from playwright.async_api import Page, expect

from authgate.security.second_factor import totp_code, totp_step
from tests.browser.conftest import AccountFactory, PageFactory

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]


def code_now(secret: str) -> str:
    return totp_code(secret, totp_step(time.time()))


async def sign_out(page: Page) -> None:
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/settings/login"))


async def password_form(page: Page, login: str, password: str) -> None:
    await page.goto("/settings/login")
    await page.locator("#username").fill(login)
    await page.locator("#password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def test_enrol_then_sign_in_with_a_code_and_with_a_recovery_code(
    new_page: PageFactory, make_user: AccountFactory
) -> None:
    account = make_user("tfa-browser-user")
    page = await new_page()
    await password_form(page, account.login, account.password)
    await expect(page).to_have_url(re.compile(r"/settings/api-keys$"))

    await page.goto("/settings/account")
    await expect(page.locator("#tfa-state")).to_contain_text("Off")
    await page.get_by_role("button", name="Set up an authenticator app").click()
    await expect(page.locator("#tfa-qr svg")).to_be_visible()  # rendered by the server
    secret = (await page.locator("#tfa-secret").inner_text()).strip()
    await page.locator("#code").fill(code_now(secret))  # six digits: the form submits itself
    codes = page.locator("#recovery-codes li")
    await expect(codes).to_have_count(10)
    recovery = (await codes.first.inner_text()).strip()
    await page.locator("#recovery-codes-done").click()
    await expect(page.locator("#tfa-state")).to_contain_text("On")

    await sign_out(page)
    await password_form(page, account.login, account.password)
    await expect(page).to_have_url(re.compile(r"/settings/login/code"))
    # The set-up code still signs in (the enrolment does not spend its step).
    await page.locator("#code").fill(code_now(secret))
    await expect(page).to_have_url(re.compile(r"/settings/api-keys$"))

    await sign_out(page)
    await password_form(page, account.login, account.password)
    await expect(page).to_have_url(re.compile(r"/settings/login/code"))
    await page.locator("#use-recovery-code summary").click()
    await page.locator("#recovery-code").fill(recovery)
    await page.locator("#use-recovery-code").get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/settings/api-keys$"))
    await page.goto("/settings/account")
    await expect(page.locator("#tfa-state")).to_contain_text("Recovery codes left: 9")
