"""The Content-Security-Policy in a real browser (issue 10, item 11): every Settings UI
page, an administrator's too, and Swagger UI with "Authorize" and "Try it out" work
without a single CSP violation, and nothing Swagger UI is given stays in localStorage."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import ConsoleMessage, Page, expect

from tests.browser.conftest import (
    ADMIN_PASSWORD,
    Account,
    PageFactory,
    Server,
    api_token,
    create_api_key,
    sign_in,
)
from tests.browser.test_swagger_ui import (
    account_operation_selector,
    authorize,
    open_swagger_ui,
    try_get_account,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

ADMIN = Account("admin", ADMIN_PASSWORD)
VIOLATION = re.compile(r"Content.Security.Policy|Refused to (load|execute|apply|connect)", re.I)
ADMIN_PAGES = [
    "/settings/api-keys",
    "/settings/account",
    "/settings/users",
    "/settings/audit",
    "/settings/keys-review",
    "/settings/alerts",
    "/settings/service-credentials",
]


def record_violations(page: Page) -> list[str]:
    """Console errors in which Chromium reports what the policy blocked, and the
    ``securitypolicyviolation`` events of every document the page loads."""
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if VIOLATION.search(message.text):
            violations.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    return violations


async def listen_for_violation_events(page: Page) -> None:
    await page.add_init_script(
        "document.addEventListener('securitypolicyviolation', (event) => console.error("
        "'Content Security Policy violation: ' + event.violatedDirective + ' ' + event.blockedURI"
        "));"
    )


async def test_every_settings_page_runs_without_a_csp_violation(
    page: Page, server: Server, new_page: PageFactory
) -> None:
    """Sign-in, every administrator page, a key's page, and the scripts' conveniences
    (the allowed-IP editor, expiry presets) under the policy, with no violation."""
    violations = record_violations(page)
    await listen_for_violation_events(page)
    await page.goto("/settings/login")
    csp = await page.evaluate(
        "async () => (await fetch('/settings/login')).headers.get('content-security-policy')"
    )
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    await sign_in(page, ADMIN)
    key_id, _ = create_api_key(server, ADMIN, "csp-check")
    for url in [*ADMIN_PAGES, f"/settings/api-keys/{key_id}"]:
        await page.goto(url)
        await expect(page.get_by_role("heading", level=1)).to_be_visible()
    # app.js at work: the allowed-IP editor replaced the textarea, a preset fills a date.
    await page.goto("/settings/api-keys")
    await page.get_by_role("link", name="Create API Key").click()  # unfolds the form
    await expect(page.get_by_role("button", name="Add IP or range")).to_be_visible()
    await page.locator("[data-expiry-days]").first.click()
    await expect(page.locator('input[type="date"]').first).not_to_have_value("")
    assert violations == []


async def test_swagger_ui_runs_without_a_csp_violation_and_forgets_the_credential(
    page: Page, server: Server, user: Account
) -> None:
    """Swagger UI starts from its script file under the policy, "Try it out" works, and
    with persistAuthorization off (the default) the token is not in localStorage."""
    violations = record_violations(page)
    await listen_for_violation_events(page)
    selector = account_operation_selector(server)
    await open_swagger_ui(page)
    token = api_token(server, user)
    await authorize(page, "bearerAuth", token)
    response = await try_get_account(page, selector)
    await expect(response.locator(".response-col_status")).to_have_text("200")
    stored = await page.evaluate("() => JSON.stringify(Object.entries(localStorage))")
    assert token not in stored
    await page.reload()
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("authgate")
    assert violations == []
