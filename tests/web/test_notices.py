"""Notices after a form come from the server only: a signed cookie the next page shows
once, never text taken from the URL."""

from __future__ import annotations

from tests.conftest import Harness
from tests.web.conftest import (
    LOGIN,
    NOTICE_COOKIE,
    Browser,
    OpenBrowser,
    html,
    notice_of,
    redirect_target,
)

PHISHING = "Security notice: your password expired. Reset it at https://evil.example/reset"


async def notices_on(browser: Browser, url: str, **params: str) -> list[str]:
    response = await browser.get(url, **params)
    assert response.status_code == 200, response.text
    return [p.text for p in html(response).find_all("p", class_="notice")]


async def test_a_notice_in_the_query_string_is_not_shown(
    open_browser: OpenBrowser, alice: Browser
) -> None:
    """A link cannot make a page show its own text as authgate's notice: not on the
    sign-in page, not on a signed-in page."""
    stranger = await open_browser()

    assert await notices_on(stranger, LOGIN, notice=PHISHING) == []
    assert await notices_on(alice, "/settings/account", notice=PHISHING) == []


async def test_the_notice_of_a_form_is_shown_once_by_its_page(alice: Browser) -> None:
    """The redirect after a form leaves its notice for the page it leads to, outside the
    URL; that page shows it and clears it, so a reload shows nothing."""
    response = await alice.post("/settings/account/sessions/revoke-others")

    assert redirect_target(response) == "/settings/account"
    assert notice_of(response) == "0 sessions revoked."
    assert await notices_on(alice, "/settings/account") == ["0 sessions revoked."]
    assert await notices_on(alice, "/settings/account") == []


async def test_a_notice_is_shown_only_on_its_page(alice: Browser) -> None:
    """A notice waits for the page it was left for: another page neither shows it nor
    clears it."""
    await alice.post("/settings/account/sessions/revoke-others")

    assert await notices_on(alice, "/settings/api-keys") == []
    assert await notices_on(alice, "/settings/account") == ["0 sessions revoked."]


async def test_a_forged_or_stale_notice_cookie_is_not_shown(
    harness: Harness, alice: Browser
) -> None:
    """Only a notice signed by the server, and for a minute only, is shown."""
    await alice.post("/settings/account/sessions/revoke-others")
    sealed = alice.client.cookies[NOTICE_COOKIE]
    payload, _, signature = sealed.partition(".")
    forged = f"{payload[:-2]}xx.{signature}"
    jar = alice.client.cookies
    (cookie,) = [c for c in jar.jar if c.name == NOTICE_COOKIE]
    jar.set(NOTICE_COOKIE, forged, domain=cookie.domain, path=cookie.path)
    assert await notices_on(alice, "/settings/account") == []

    jar.set(NOTICE_COOKIE, sealed, domain=cookie.domain, path=cookie.path)
    harness.clock.advance(seconds=61)
    assert await notices_on(alice, "/settings/account") == []
