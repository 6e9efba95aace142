"""How the pages show things (issue 16 item 10): reason codes as sentences, ISO dates,
no mid-word breaks, a folded create form, curl lines that wrap, an HTML 404 for an
unknown settings page, a favicon, and a key review that does not contradict itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from authgate.reasons import Reason
from authgate.services.api_key_views import KeySpec
from authgate.web.display import REASON_TEXT, breakable, iso, reason_text
from tests.conftest import ADMIN_PASSWORD, Harness
from tests.web.conftest import Browser, OpenBrowser, html, main_text, signed_in

KEYS = "/settings/api-keys"


def test_reason_codes_read_as_sentences() -> None:
    assert reason_text("scope_admin") == REASON_TEXT[Reason.SCOPE_ADMIN]
    assert "checksum" in reason_text("bad_checksum")
    assert "_" not in reason_text("bad_checksum")
    # A code added later still reads as words, never as a raw identifier.
    assert reason_text("some_new_code") == "Some new code"
    assert reason_text(None) == ""
    assert reason_text("Free text, as is") == "Free text, as is"


def test_breakable_wraps_between_parts_only_and_escapes() -> None:
    assert str(breakable("API_KEY_ACCESS_FAILURE")) == "API_<wbr>KEY_<wbr>ACCESS_<wbr>FAILURE"
    assert str(breakable("/api/x")) == "/<wbr>api/<wbr>x"
    assert str(breakable("<b>&x")) == "&lt;b&gt;&amp;<wbr>x"
    assert str(breakable("trailing_")) == "trailing_"


def test_iso_dates() -> None:
    moment = datetime(2026, 12, 4, 22, 12, 36, 123456, tzinfo=UTC)
    assert iso(moment) == "2026-12-04T22:12:36Z"
    assert iso(moment, "minutes") == "2026-12-04T22:12Z"
    assert iso(moment, "date") == "2026-12-04"
    assert iso(moment.astimezone(timezone(timedelta(hours=2)))) == "2026-12-04T22:12:36Z"
    assert iso(moment.replace(tzinfo=None)) == "2026-12-04T22:12:36Z"


async def test_audit_page_shows_reasons_as_text_and_types_that_wrap_between_words(
    harness: Harness, open_browser: OpenBrowser, admin_id: int
) -> None:
    # A made-up key with a bad checksum: refused and audited with reason bad_checksum.
    response = await harness.client.get(
        "/api/account", headers={"Utm-Api-Key": "agk_" + "A" * 12 + "_" + "B" * 49}
    )
    assert response.status_code == 401
    await harness.services.audit.flush()
    admin = await signed_in(open_browser, "admin", ADMIN_PASSWORD)
    page = await admin.get("/settings/audit")
    assert page.status_code == 200
    reasons = html(page).find_all("span", data_reason="bad_checksum")
    assert reasons, page.text
    assert reasons[0].text == REASON_TEXT[Reason.BAD_CHECKSUM]
    assert reasons[0].attrs["title"] == "bad_checksum"
    assert "API_<wbr>KEY_<wbr>" in page.text
    css = (await admin.get("/settings/static/app.css")).text
    assert "overflow-wrap: anywhere" not in css.split("pre.wrap")[0]


async def test_dates_are_iso(harness: Harness, alice: Browser, alice_id: int) -> None:
    created = await harness.services.api_keys.create(
        alice_id,
        KeySpec(name="dated", allowed_networks=[], expires_at=harness.clock() + timedelta(days=9)),
    )
    page = await alice.get(f"{KEYS}/{created.view.public_id}")
    facts = html(page).find("dl", class_="facts").text
    assert iso(created.view.created_at) in facts
    assert " UTC" not in facts


async def test_create_form_is_folded_until_asked_for(
    harness: Harness, alice: Browser, alice_id: int
) -> None:
    # No key yet: creating one is what the page is for.
    first = html(await alice.get(KEYS)).find("details", id="create")
    assert "open" in first.attrs
    await harness.services.api_keys.create(
        alice_id,
        KeySpec(name="one", allowed_networks=[], expires_at=harness.clock() + timedelta(days=9)),
    )
    folded = html(await alice.get(KEYS))
    assert "open" not in folded.find("details", id="create").attrs
    button = folded.find("a", data_open="create")
    assert button.attrs["href"] == "?new=1#create"
    # Without JavaScript the button asks the server for the page with the form open.
    asked = html(await alice.get(KEYS, new="1")).find("details", id="create")
    assert "open" in asked.attrs
    # A refused form comes back open, with its errors.
    refused = await alice.post(KEYS, {"name": "", "expires_on": "", "allowed_ips": ""})
    assert refused.status_code == 422
    assert "open" in html(refused).find("details", id="create").attrs


async def test_new_key_page_wraps_the_curl_lines(alice: Browser) -> None:
    expires = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    page = await alice.post(
        KEYS, {"name": "wrapped", "expires_on": expires, "allowed_ips": "", "scopes": "read"}
    )
    assert page.status_code == 200, page.text
    blocks = html(page).find_all("pre")
    assert len(blocks) == 2
    assert all("wrap" in block.attrs["class"].split() for block in blocks)
    css = (await alice.get("/settings/static/app.css")).text
    assert "pre.wrap { white-space: pre-wrap;" in css


async def test_allowed_ip_hint_fits_the_list_editor(alice: Browser) -> None:
    hint = html(await alice.get(KEYS, new="1")).by_id("allowed-hint")
    # "one per line" is only for the plain textarea; app.js removes it with the textarea.
    assert hint.find("span", data_textarea_hint=True).text == ", one per line"
    script = (await alice.get("/settings/static/app.js")).text
    assert "[data-textarea-hint]" in script


async def test_unknown_settings_page_is_an_html_404(
    open_browser: OpenBrowser, alice: Browser
) -> None:
    for browser in (alice, await open_browser()):
        response = await browser.get("/settings/no-such-page")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "Page not found" in main_text(response)
    not_a_key = await alice.get(f"{KEYS}/not-a-number")
    assert not_a_key.status_code == 404
    assert not_a_key.headers["content-type"].startswith("text/html")


async def test_a_method_a_settings_page_does_not_take_is_an_html_405(harness: Harness) -> None:
    """The README-driven review: ``POST /settings/alerts`` (a GET page) answered the
    API's JSON; every refusal under /settings/ is a page a browser can read."""
    for method, path in (("POST", "/settings/alerts"), ("DELETE", KEYS), ("PUT", KEYS)):
        response = await harness.client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["content-type"].startswith("text/html")
        assert "Not allowed here" in response.text
        assert "GET" in response.headers["allow"]
    api = await harness.client.request("DELETE", "/api/account")
    assert api.status_code == 405
    assert api.json()["code"] == "method_not_allowed"


async def test_pages_have_a_favicon(harness: Harness, alice: Browser) -> None:
    link = html(await alice.get(KEYS)).find("link", rel="icon")
    icon = await harness.client.get(link.attrs["href"])
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg")
    root_icon = await harness.client.get("/favicon.ico")
    assert root_icon.status_code == 200
    assert root_icon.content == icon.content


async def test_key_review_does_not_claim_every_key_was_used_while_listing_a_never_used_one(
    harness: Harness, open_browser: OpenBrowser, admin_id: int, alice_id: int
) -> None:
    await harness.services.api_keys.create(
        alice_id,
        KeySpec(name="fresh", allowed_networks=[], expires_at=harness.clock() + timedelta(days=5)),
    )
    admin = await signed_in(open_browser, "admin", ADMIN_PASSWORD)
    page = await admin.get("/settings/keys-review")
    assert page.status_code == 200
    text = main_text(page)
    assert "never used" in text  # listed as unrestricted and expiring soon
    assert "used recently" not in text
    unused = html(page).by_id("unused").text
    assert "No live key has gone 30 days without use" in unused
