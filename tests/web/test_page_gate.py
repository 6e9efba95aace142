"""The Settings pages ask the gate about the session cookie, as the API routes ask it
about a bearer token (issue 12): a refused cookie and a refused page are recorded as the
API records the same refusals; a browser without a session is only sent to sign in."""

from __future__ import annotations

from authgate.services.audit.events import AuditEntry
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from tests.conftest import Harness, bearer
from tests.web.conftest import Browser, OpenBrowser, main_text, notice_of, redirect_target

LOGIN = "/settings/login"


async def rejected_tokens(harness: Harness) -> list[AuditEntry]:
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=("TOKEN_REJECTED",)), PageRequest(size=50)
    )
    return list(page.items)


async def test_a_refused_cookie_is_recorded_as_the_api_records_the_token(
    harness: Harness, open_browser: OpenBrowser, alice: Browser
) -> None:
    """A signed-out session's cookie sends the browser to sign in (the cookie cleared)
    and leaves the TOKEN_REJECTED record the API leaves for the same token."""
    old = alice.session
    assert old is not None
    await alice.post("/settings/logout")
    thief = await open_browser()

    replay = await thief.client.get(
        "/settings/account", headers={"Cookie": f"__Host-authgate_session={old}"}
    )

    assert redirect_target(replay).startswith(LOGIN)
    assert notice_of(replay) == "Your session has ended. Please sign in again."
    assert "__Host-authgate_session=" in replay.headers["set-cookie"]
    (page_record,) = await rejected_tokens(harness)
    assert page_record.outcome == "failure"
    assert page_record.request_path == "/settings/account"
    assert (await harness.client.get("/api/account", headers=bearer(old))).status_code == 401
    api_record, again = await rejected_tokens(harness)
    assert again.id == page_record.id
    assert api_record.reason == page_record.reason


async def test_a_page_refused_for_its_authority_is_recorded(
    harness: Harness, alice: Browser
) -> None:
    """An ordinary user gets the page's 403 message for an admin page; the refusal is
    recorded with the reason the admin API gives for the same caller."""
    response = await alice.get("/settings/users")

    assert response.status_code == 403
    assert "This page is for administrators only." in main_text(response)
    (record,) = await rejected_tokens(harness)
    assert record.reason == "role_admin_required"
    assert record.request_path == "/settings/users"


async def test_no_cookie_is_sent_to_sign_in_and_not_recorded(
    harness: Harness, open_browser: OpenBrowser
) -> None:
    """Without a session the page is the way to the login page, not a refused credential."""
    browser = await open_browser()

    response = await browser.get("/settings/api-keys")

    assert redirect_target(response).startswith(LOGIN)
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=("TOKEN_REJECTED", "CREDENTIALS_MISSING")), PageRequest(size=5)
    )
    assert page.total == 0
