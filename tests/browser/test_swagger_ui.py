"""Swagger UI at /swagger-ui/index.html in a real browser: served entirely by authgate,
and "Try it out" works with a JWT (bearerAuth) and with an API key (ApiKeyAuth)."""

from __future__ import annotations

import json
import re

import httpx2
import pytest
from playwright.async_api import Locator, Page, Request, expect

from tests.browser.conftest import (
    Account,
    PageFactory,
    Server,
    api_token,
    create_api_key,
    save_doc_screenshot,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

SWAGGER_UI = "/swagger-ui/index.html"


def account_operation_selector(server: Server) -> str:
    """The id Swagger UI gives GET /api/account's block: operations-<tag>-<operationId>."""
    document = httpx2.get(f"{server.base_url}/v3/api-docs", timeout=10).json()
    operation = document["paths"]["/api/account"]["get"]
    assert {"bearerAuth": []} in operation["security"]
    assert {"ApiKeyAuth": []} in operation["security"]
    return f"#operations-{operation['tags'][0]}-{operation['operationId']}"


async def open_swagger_ui(page: Page) -> None:
    await page.goto(SWAGGER_UI)
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("authgate")


async def authorize(page: Page, scheme: str, value: str) -> None:
    """Authorize dialog: paste ``value`` into the ``scheme`` form, authorize, close."""
    await page.locator(".scheme-container button.authorize").click()
    dialog = page.locator(".dialog-ux .modal-ux")
    await expect(dialog).to_be_visible()
    container = dialog.locator(".auth-container").filter(
        has=page.locator("h4", has_text=re.compile(rf"^{scheme}\b"))
    )
    await container.locator("input").fill(value)
    # Swagger UI names its buttons "Apply credentials" / "Remove authorization".
    await container.get_by_role("button", name="Apply credentials").click()
    await expect(container.get_by_role("button", name="Remove authorization")).to_be_visible()
    await container.get_by_role("button", name="Close").click()
    await expect(dialog).to_be_hidden()


async def try_get_account(page: Page, selector: str) -> Locator:
    """Expands GET /api/account, "Try it out", "Execute"; returns the response row."""
    block = page.locator(selector)
    await block.locator(".opblock-summary").click()
    await block.locator(".try-out__btn").click()
    await block.locator("button.execute").click()
    return block.locator(".live-responses-table .response").first


async def test_swagger_ui_loads_nothing_from_other_hosts_and_works_with_a_jwt(
    page: Page, server: Server, user: Account
) -> None:
    requested: list[str] = []

    def record(request: Request) -> None:
        requested.append(request.url)

    page.on("request", record)
    selector = account_operation_selector(server)
    await open_swagger_ui(page)
    await expect(page.locator(selector)).to_be_visible()

    await authorize(page, "bearerAuth", api_token(server, user))
    response = await try_get_account(page, selector)

    await expect(response.locator(".response-col_status")).to_have_text("200")
    body = response.locator(".response-col_description pre").first
    await expect(body).to_contain_text('"login"')
    assert json.loads(await body.inner_text())["login"] == user.login
    # The whole page is very long (and slow to capture): the operation tried, in view.
    await page.locator(selector).scroll_into_view_if_needed()
    await save_doc_screenshot(page, "swagger", full_page=False)

    assert requested, "no request recorded"
    elsewhere = [url for url in requested if not url.startswith(f"{server.base_url}/")]
    assert elsewhere == [], f"Swagger UI loaded from other hosts: {elsewhere}"
    assert any(url == f"{server.base_url}/v3/api-docs" for url in requested)


async def test_swagger_ui_try_it_out_with_an_api_key(
    new_page: PageFactory, server: Server, user: Account
) -> None:
    _, key = create_api_key(server, user, "swagger-try-it-out")
    page = await new_page()
    seen_headers: list[dict[str, str]] = []

    async def record(request: Request) -> None:
        if request.url == f"{server.base_url}/api/account":
            seen_headers.append(await request.all_headers())

    page.on("request", record)
    selector = account_operation_selector(server)
    await open_swagger_ui(page)

    await authorize(page, "ApiKeyAuth", key)
    response = await try_get_account(page, selector)

    await expect(response.locator(".response-col_status")).to_have_text("200")
    body = response.locator(".response-col_description pre").first
    await expect(body).to_contain_text('"login"')
    assert json.loads(await body.inner_text())["login"] == user.login
    assert seen_headers
    assert seen_headers[-1].get("utm-api-key") == key
    assert "authorization" not in seen_headers[-1]
