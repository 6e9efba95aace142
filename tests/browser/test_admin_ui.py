"""The administrator pages of the Settings UI in a real browser against a real server:
managing users, the keys review, the audit trail (filter and chain verification) and the
alert rules, with their documentation screenshots."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import (
    ADMIN_PASSWORD,
    Account,
    Server,
    account_status,
    api_token,
    save_doc_screenshot,
    sign_in,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

ADMIN = Account("admin", ADMIN_PASSWORD)
DEFAULT_RULES = (
    ("Failed logins for one account", "failed_logins_per_account", "5", "5 minutes", "high"),
    ("Failed logins from one address", "failed_logins_per_ip", "10", "10 minutes", "high"),
    ("Password spraying", "failed_logins_global", "50", "5 minutes", "critical"),
    ("Invalid API keys from one address", "failed_key_uses_per_ip", "20", "1 minute", "high"),
    ("Refused uses of one API key", "failed_key_uses_per_key", "10", "5 minutes", "medium"),
    ("API key used from a new address", "key_new_ip", "1", "1 day", "medium"),
    ("API key used after 30 idle days", "key_after_inactivity", "1", "30 days", "low"),
    ("Lockouts", "lockouts", "1", "5 minutes", "high"),
    (
        "Failed second factors for one account",
        "failed_second_factors",
        "3",
        "10 minutes",
        "high",
    ),
    ("Administrative actions", "admin_actions", "1", "1 minute", "low"),
)


async def reload_until_visible(page: Page, target: Locator, *, within: float = 10.0) -> None:
    """Reloads the page until ``target`` shows: audit records and usage are written in
    batches, a moment after the events. Gives up (with expect's error) after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            await expect(target).to_be_visible(timeout=500)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await page.reload()


def create_unrestricted_key(server: Server, account: Account, name: str) -> tuple[str, str]:
    """A key accepted from any address (empty allowedIp), made with the REST API."""
    expires = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    response = httpx2.post(
        f"{server.base_url}/api/api-keys",
        json={"name": name, "allowedIp": [], "expiresAt": expires},
        headers={"Authorization": f"Bearer {api_token(server, account)}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["allowedIp"] == []
    return str(body["id"]), str(body["key"])


def user_row(page: Page, login: str) -> Locator:
    return page.locator("table.users tbody tr").filter(
        has=page.get_by_role("rowheader", name=re.compile(rf"^{re.escape(login)}\b"))
    )


def audit_rows(page: Page, event_type: str) -> Locator:
    return page.locator("table.audit tbody tr").filter(
        has=page.locator("td[data-label=Type] code", has_text=re.compile(rf"^{event_type}$"))
    )


# -- users ---------------------------------------------------------------------------------


async def test_admin_creates_a_user_then_promotes_and_deactivates_it(
    page: Page, server: Server
) -> None:
    await sign_in(page, ADMIN)
    nav = page.get_by_role("navigation", name="Settings")
    await nav.get_by_role("link", name="Users").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Users")
    await expect(nav.get_by_role("link", name="Users")).to_have_attribute("aria-current", "page")
    await expect(user_row(page, "admin")).to_contain_text("(you)")

    # Create an ordinary user through the form.
    create = page.locator("section#create")
    await create.get_by_label("Login").fill("Grace.Ops")
    await create.get_by_label("E-mail").fill("grace.ops@example.com")
    await create.get_by_label(re.compile(r"^Password")).fill("grace-ops-password-1234")
    await expect(create.get_by_label("User", exact=True)).to_be_checked()
    await expect(create.get_by_label("Administrator", exact=True)).not_to_be_checked()
    await create.get_by_role("button", name="Create user").click()

    await expect(page).to_have_url(re.compile(r"/settings/users$"))
    await expect(page.locator(".notice")).to_have_text("User grace.ops created.")
    row = user_row(page, "grace.ops")  # stored in lower case
    await expect(row).to_have_count(1)
    await expect(row.locator("td[data-label=E-mail]")).to_have_text("grace.ops@example.com")
    await expect(row.locator("td[data-label=Roles]")).to_have_text("User")
    await expect(row.locator("td[data-label=Active] .badge")).to_have_text("active")

    # The new account works: it can sign in through the API.
    assert api_token(server, Account("grace.ops", "grace-ops-password-1234"))

    # Give it the administrator role.
    await row.locator("summary").click()
    edit = row.locator("form[id$='-edit']")
    await expect(edit.get_by_role("group", name="Roles of grace.ops")).to_be_visible()
    await edit.get_by_label("Administrator", exact=True).check()
    await edit.get_by_role("button", name="Save grace.ops").click()
    await expect(page.locator(".notice")).to_have_text("Changes to grace.ops saved.")
    row = user_row(page, "grace.ops")
    await expect(row.locator("td[data-label=Roles]")).to_have_text("Administrator, User")
    await expect(row.locator("td[data-label=Active] .badge")).to_have_text("active")

    # Deactivate it: the badge says so and the account can no longer sign in.
    await row.locator("summary").click()
    active = row.get_by_label("Active: may sign in and use API keys")
    await expect(active).to_be_checked()
    await active.uncheck()
    await row.get_by_role("button", name="Save grace.ops").click()
    await expect(page.locator(".notice")).to_have_text("Changes to grace.ops saved.")
    row = user_row(page, "grace.ops")
    await expect(row.locator("td[data-label=Active] .badge")).to_have_text("deactivated")
    await expect(row.locator("td[data-label=Roles]")).to_have_text("Administrator, User")
    refused = httpx2.post(
        f"{server.base_url}/api/authenticate",
        json={"username": "grace.ops", "password": "grace-ops-password-1234"},
        timeout=10,
    )
    assert refused.status_code == 401, refused.text

    await save_doc_screenshot(page, "users")


# -- keys review and audit trail -----------------------------------------------------------


async def test_admin_reviews_an_unrestricted_key_and_audits_its_creation_and_use(
    page: Page, server: Server, user: Account
) -> None:
    key_id, key = create_unrestricted_key(server, user, "no-ip-limit")
    response = account_status(server, key)
    assert response.status_code == 200, response.text
    assert response.json()["login"] == user.login

    await sign_in(page, ADMIN)
    nav = page.get_by_role("navigation", name="Settings")

    # Keys review: listed without IP restriction, with its owner.
    await nav.get_by_role("link", name="Keys review").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Keys review")
    unrestricted = page.locator("section#unrestricted")
    await expect(unrestricted.get_by_role("heading", level=2)).to_contain_text(
        "Without IP restriction"
    )
    review_row = unrestricted.locator(f"tbody tr[data-key-id='{key_id}']")
    await expect(review_row).to_have_count(1)
    await expect(review_row.locator("td[data-label=Owner]")).to_have_text(user.login)
    await expect(
        review_row.get_by_role("link", name=f"no-ip-limit of {user.login}")
    ).to_have_attribute("href", f"/settings/api-keys/{key_id}")
    await expect(review_row.locator("td[data-label=Status] .badge")).to_have_text("active")
    # Its one use shows up once the usage batch is written.
    last_used = f"section#unrestricted tr[data-key-id='{key_id}'] td[data-label='Last used']"
    await reload_until_visible(page, page.locator(last_used, has_text="from 127.0.0.1"))
    await expect(page.locator(last_used)).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ from 127\.0\.0\.1$")
    )
    # Used just now, so not listed as unused.
    await expect(page.locator(f"section#unused tr[data-key-id='{key_id}']")).to_have_count(0)
    await save_doc_screenshot(page, "keys-review")

    # Audit trail: filter by type with the form, then check the rows.
    await nav.get_by_role("link", name="Audit").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Audit trail")
    await expect(page.get_by_role("heading", level=2, name="Newest records")).to_be_visible()

    await page.get_by_label("Event type").select_option("API_KEY_CREATED")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"/settings/audit\?type=API_KEY_CREATED"))
    await expect(page.get_by_role("heading", level=2, name="Matching records")).to_be_visible()
    await expect(page.get_by_label("Event type")).to_have_value("API_KEY_CREATED")
    created = audit_rows(page, "API_KEY_CREATED").filter(
        has=page.get_by_role("link", name="no-ip-limit", exact=True)
    )
    await reload_until_visible(page, created)
    await expect(created).to_have_count(1)
    await expect(created.locator("td[data-label=Outcome]")).to_have_text("success")
    await expect(created.locator("td[data-label=Actor]")).to_have_text(user.login)
    await expect(created.get_by_role("link", name="no-ip-limit")).to_have_attribute(
        "href", f"/settings/api-keys/{key_id}"
    )
    # Only that type is listed.
    types = await page.locator("table.audit tbody td[data-label=Type]").all_inner_texts()
    assert set(types) == {"API_KEY_CREATED"}, types

    await page.get_by_label("Event type").select_option("API_KEY_ACCESS_SUCCESS")
    await page.get_by_label("Actor (login or key name)").fill(user.login)
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"type=API_KEY_ACCESS_SUCCESS"))
    used = audit_rows(page, "API_KEY_ACCESS_SUCCESS").filter(
        has=page.get_by_role("link", name="no-ip-limit", exact=True)
    )
    await reload_until_visible(page, used)
    await expect(used).to_have_count(1)
    await expect(used.locator("td[data-label=Outcome]")).to_have_text("success")
    await expect(used.locator("td[data-label=Actor]")).to_have_text(user.login)
    await expect(used.locator("td[data-label=Address]")).to_have_text("127.0.0.1")
    await expect(used.locator("td[data-label=Path]")).to_have_text("/api/account")
    types = await page.locator("table.audit tbody td[data-label=Type]").all_inner_texts()
    assert set(types) == {"API_KEY_ACCESS_SUCCESS"}, types

    await page.get_by_role("link", name="Clear filters").click()
    await expect(page).to_have_url(re.compile(r"/settings/audit$"))
    await expect(page.get_by_role("heading", level=2, name="Newest records")).to_be_visible()
    await save_doc_screenshot(page, "audit")

    # Verifying the chain reports it intact.
    await page.get_by_role("button", name="Verify chain").click()
    verification = page.locator("#verification")
    await expect(verification).to_have_class(re.compile(r"\bnotice\b"))
    await expect(verification).to_have_text(
        re.compile(
            r"^The chain is intact: [1-9]\d* records checked, none changed, inserted or removed\.$"
        )
    )


# -- alerts --------------------------------------------------------------------------------


async def test_admin_sees_the_default_alert_rules(page: Page) -> None:
    await sign_in(page, ADMIN)
    await page.get_by_role("navigation", name="Settings").get_by_role("link", name="Alerts").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Alerts")
    await expect(page.get_by_role("heading", level=2, name="Rules")).to_be_visible()

    rows = page.locator("table.rules tbody tr")
    await expect(rows).to_have_count(len(DEFAULT_RULES))
    names = page.locator("table.rules tbody th[data-label=Name]")
    await expect(names).to_have_text([rule[0] for rule in DEFAULT_RULES])
    for name, kind, threshold, window, severity in DEFAULT_RULES:
        row = rows.filter(has=page.get_by_role("rowheader", name=name, exact=True))
        await expect(row.locator("td[data-label=Kind]")).to_have_text(kind)
        await expect(row.locator("td[data-label=Threshold]")).to_have_text(threshold)
        await expect(row.locator("td[data-label=Window]")).to_have_text(window)
        await expect(row.locator("td[data-label=Severity]")).to_have_text(severity)
        await expect(row.locator("td[data-label=Enabled]")).to_have_text("enabled")
        await expect(row.get_by_role("button", name=f"Disable {name}")).to_be_visible()

    await expect(page.get_by_role("heading", level=2, name="Create a rule")).to_be_visible()
    await expect(page.get_by_role("heading", level=2, name="Recent alerts")).to_be_visible()
    await save_doc_screenshot(page, "alerts")
