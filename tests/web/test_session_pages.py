"""The Settings UI without JavaScript: signing in and out, CSRF protection, the account
page, and the API key pages (create with the key shown once, detail with usage,
regenerate, revoke)."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx2
import pytest

from authgate.storage.paging import PageRequest
from authgate.web.pages import safe_next
from tests.conftest import USER_PASSWORD, Harness, bearer
from tests.web.conftest import (
    LOGIN,
    Browser,
    FormData,
    OpenBrowser,
    find_cookie,
    html,
    main_text,
    notice_of,
    redirect_target,
    signed_in,
)

NEW_PASSWORD = "a-brand-new-password-of-hers"
KEYS = "/settings/api-keys"
UNKNOWN_KEY = "00000000-0000-0000-0000-000000000000"


def key_form(harness: Harness, name: str, **fields: str | list[str]) -> dict[str, str | list[str]]:
    expires = (harness.clock() + timedelta(days=30)).strftime("%Y-%m-%d")
    form: dict[str, str | list[str]] = {
        "name": name,
        "expires_on": expires,
        "allowed_ips": "",
        "scopes": ["read", "write"],
        "rate_limit": "",
    }
    form.update(fields)
    return form


def shown_key(response: httpx2.Response) -> str:
    """The plaintext key on the "created"/"regenerated" page."""
    assert response.status_code == 200, main_text(response)
    return html(response).by_id("new-key").text


async def create_key(browser: Browser, harness: Harness, name: str) -> tuple[str, str]:
    """Creates a key through the form; returns its id (UUID) and plaintext."""
    response = await browser.post(KEYS, key_form(harness, name))
    plaintext = shown_key(response)
    link = html(response).find("a", class_="button").attrs["href"]
    return link.rsplit("/", 1)[1], plaintext


async def key_count(harness: Harness, owner_id: int) -> int:
    """How many keys the user has, revoked ones included."""
    keys = await harness.services.api_keys.list_keys(
        None, PageRequest(page=0, size=100), owner_id=owner_id, include_revoked=True
    )
    return keys.total


async def account_status(harness: Harness, key: str) -> int:
    response = await harness.client.get("/api/account", headers={"Utm-Api-Key": key})
    return response.status_code


# -- signing in ---------------------------------------------------------------------------


async def test_sign_in_sets_a_strict_secure_http_only_session_cookie(
    open_browser: OpenBrowser, alice_id: int
) -> None:
    """A right password redirects to the API keys with an HttpOnly, Secure,
    SameSite=Strict session cookie that opens the pages."""
    browser = await open_browser()

    response = await browser.sign_in("alice", USER_PASSWORD)

    assert redirect_target(response) == KEYS
    cookie = find_cookie(response, "__Host-authgate_session").lower()
    assert "httponly" in cookie
    assert "secure" in cookie
    assert "samesite=strict" in cookie
    assert "path=/" in cookie
    page = await browser.get("/settings/account")
    assert page.status_code == 200
    assert html(page).find("span", class_="who").text == "alice"


async def test_sign_in_returns_to_the_requested_page_but_never_off_site(
    open_browser: OpenBrowser, alice_id: int
) -> None:
    """A visitor is sent to the login page with ``next``; after signing in they land
    there; a ``next`` outside /settings is ignored."""
    browser = await open_browser()
    visit = await browser.get("/settings/account")
    assert redirect_target(visit) == f"{LOGIN}?next=/settings/account"
    login_page = html(await browser.get(redirect_target(visit)))
    assert login_page.find("input", name="next").attrs["value"] == "/settings/account"

    back = await browser.sign_in("alice", USER_PASSWORD, next="/settings/account")
    assert redirect_target(back) == "/settings/account"

    other = await open_browser()
    away = await other.sign_in("alice", USER_PASSWORD, next="https://evil.example/settings/x")
    assert redirect_target(away) == KEYS


async def test_a_refused_sign_in_keeps_the_username_and_the_page_to_return_to(
    open_browser: OpenBrowser, alice_id: int
) -> None:
    """The Settings UI review: after a wrong password the form came back empty and
    without its ``next``, so the right password then led to the API keys page instead
    of the one asked for. The refused form keeps both (never the password)."""
    browser = await open_browser()
    wanted = "/settings/audit?outcome=failure"
    refused = await browser.sign_in("alice", "not-alices-password", next=wanted)
    assert refused.status_code == 401
    page = html(refused)
    assert page.find("input", name="next").attrs["value"] == wanted
    assert page.find("input", name="username").attrs["value"] == "alice"
    assert page.find("input", name="password").attrs.get("value") in (None, "")
    form = page.find("form", action=LOGIN).inputs()
    browser.csrf = None
    back = await browser.post(LOGIN, {**form, "password": USER_PASSWORD}, csrf=False)
    assert redirect_target(back) == wanted


async def test_wrong_password_is_refused_with_401_and_no_session(
    open_browser: OpenBrowser, alice_id: int
) -> None:
    """A wrong password shows "Wrong username or password." (401) and sets no session."""
    browser = await open_browser()

    response = await browser.sign_in("alice", "not-alices-password")

    assert response.status_code == 401
    assert html(response).by_id("login-error").text == "Wrong username or password."
    assert "authgate_session" not in response.headers.get("set-cookie", "")  # either name
    assert browser.session is None


async def test_repeated_failures_lock_out_and_tell_when_to_retry(
    open_browser: OpenBrowser, alice_id: int
) -> None:
    """After repeated wrong passwords the form says when to try again (429), and even
    the right password is refused until then."""
    browser = await open_browser()
    statuses = []
    for _ in range(12):
        response = await browser.sign_in("alice", "not-alices-password")
        statuses.append(response.status_code)
        if response.status_code == 429:
            break

    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {401}
    message = html(response).by_id("login-error").text
    retry = re.search(r"Try again in (\d+) seconds\.", message)
    assert retry is not None, message
    assert int(retry.group(1)) > 0
    assert response.headers["Retry-After"] == retry.group(1)
    right = await browser.sign_in("alice", USER_PASSWORD)
    assert right.status_code == 429
    assert browser.session is None


async def test_a_blocked_address_gets_the_rest_apis_423(
    harness: Harness, open_browser: OpenBrowser
) -> None:
    """Too many failed logins from one address (whatever the accounts) block it: the form
    answers what /api/authenticate answers, 423 with ``Retry-After``."""
    browser = await open_browser()
    statuses = []
    for attempt in range(12):
        response = await browser.sign_in(f"nobody-{attempt}", "not-a-password")
        statuses.append(response.status_code)
        if response.status_code != 401:
            break

    assert statuses[-1] == 423, statuses
    assert int(response.headers["Retry-After"]) > 0
    assert "Try again in" in html(response).by_id("login-error").text
    rest = await harness.client.post(
        "/api/authenticate", json={"username": "nobody-0", "password": "not-a-password"}
    )
    assert rest.status_code == 423


async def test_sign_in_without_the_login_form_token_is_refused(
    open_browser: OpenBrowser, alice_id: int
) -> None:
    """A login POST without the login page's CSRF token (a cross-site login) is a 403."""
    browser = await open_browser()

    response = await browser.post(
        LOGIN, {"username": "alice", "password": USER_PASSWORD}, csrf=False
    )

    assert response.status_code == 403
    assert "Form refused" in main_text(response)
    assert browser.session is None


# -- CSRF ---------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "0" * 64], ids=["missing", "wrong"])
async def test_posts_without_the_right_csrf_token_are_refused_and_change_nothing(
    harness: Harness, alice: Browser, alice_id: int, token: str | None
) -> None:
    """Creating a key, changing the password, signing out and "log out everywhere"
    without the session's CSRF token answer the 403 page and change nothing."""
    attempts: list[tuple[str, FormData]] = [
        (KEYS, key_form(harness, "forged")),
        (
            "/settings/account/password",
            {
                "current_password": USER_PASSWORD,
                "new_password": NEW_PASSWORD,
                "confirm_password": NEW_PASSWORD,
            },
        ),
        ("/settings/logout", {}),
        ("/settings/account/logout-all", {}),
    ]
    for url, form in attempts:
        response = await alice.post(url, form, csrf=token or False)

        assert response.status_code == 403, url
        assert "Form refused" in main_text(response)

    assert await key_count(harness, alice_id) == 0
    assert (await alice.get("/settings/account")).status_code == 200  # still signed in
    await harness.login("alice", USER_PASSWORD)  # the password did not change


# -- signing out, password change ----------------------------------------------------------


async def test_sign_out_revokes_the_session_token(
    harness: Harness, open_browser: OpenBrowser, alice: Browser
) -> None:
    """Signing out revokes the token itself: a copy of the old cookie no longer opens a
    page, and the token is refused by the API too."""
    old = alice.session
    assert old is not None

    response = await alice.post("/settings/logout")

    assert redirect_target(response).startswith(LOGIN)
    assert notice_of(response) == "You are signed out."
    assert alice.session is None
    thief = await open_browser()
    replay = await thief.client.get(
        "/settings/account", headers={"Cookie": f"__Host-authgate_session={old}"}
    )
    assert redirect_target(replay).startswith(LOGIN)
    assert (await harness.client.get("/api/account", headers=bearer(old))).status_code == 401


async def test_password_change_keeps_this_session_and_ends_the_others(
    harness: Harness, open_browser: OpenBrowser, alice: Browser
) -> None:
    """A password change ends every other session of the user and keeps this one (issue
    13, section 4, as GitHub and Google do); the new password signs in, the old fails."""
    old = alice.session
    assert old is not None
    elsewhere = await signed_in(open_browser, "alice", USER_PASSWORD)
    hint = html(await alice.get("/settings/account")).by_id("password-hint").text
    assert hint == "Your other sessions end with the change; this one goes on."

    response = await alice.post(
        "/settings/account/password",
        {
            "current_password": USER_PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )

    assert redirect_target(response).startswith("/settings/account")
    assert notice_of(response) == "Password changed. Your other sessions have ended."
    assert (await alice.get("/settings/account")).status_code == 200
    assert (await harness.client.get("/api/account", headers=bearer(old))).status_code == 200
    assert redirect_target(await elsewhere.get("/settings/account")).startswith(LOGIN)
    harness.clock.advance(milliseconds=1)
    again = await open_browser()
    assert (await again.sign_in("alice", USER_PASSWORD)).status_code == 401
    assert (await again.sign_in("alice", NEW_PASSWORD)).status_code == 303


async def test_password_change_refusals_are_shown_at_the_field(alice: Browser) -> None:
    """Different confirmation and a wrong current password are shown next to their
    fields (400) and keep the session."""
    differ = await alice.post(
        "/settings/account/password",
        {
            "current_password": USER_PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD + "x",
        },
    )
    assert differ.status_code == 400
    page = html(differ)
    assert page.by_id("confirm_password-error").text == "The passwords differ."
    assert page.by_id("confirm_password").attrs["aria-invalid"] == "true"

    wrong = await alice.post(
        "/settings/account/password",
        {
            "current_password": "not-the-password",
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert wrong.status_code == 400
    assert html(wrong).by_id("current_password").attrs["aria-invalid"] == "true"
    assert html(wrong).by_id("current_password-error").text == (
        "Incorrect password: the current password does not match."
    )
    assert (await alice.get("/settings/account")).status_code == 200


async def test_password_change_form_is_throttled_like_a_login(
    harness: Harness, alice: Browser
) -> None:
    """Wrong current passwords in the form count as failed logins: past the limit the
    form answers 429 with the wait, even for the right password, and keeps the session."""
    form = {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    for attempt in range(harness.services.settings.login.pair_max_failures):
        wrong = await alice.post(
            "/settings/account/password", {**form, "current_password": f"guess-{attempt}"}
        )
        assert wrong.status_code == 400
    throttled = await alice.post(
        "/settings/account/password", {**form, "current_password": USER_PASSWORD}
    )
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) >= 1
    message = html(throttled).by_id("current_password-error").text
    assert "Try again in" in message
    assert (await alice.get("/settings/account")).status_code == 200
    login = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": NEW_PASSWORD}
    )
    assert login.status_code == 429  # same counters: the password did not change


async def test_log_out_everywhere_ends_every_session(
    harness: Harness, open_browser: OpenBrowser, alice: Browser
) -> None:
    """Log out everywhere ends this browser's session, another browser's and API tokens."""
    laptop = await signed_in(open_browser, "alice", USER_PASSWORD)
    script_token = await harness.login("alice", USER_PASSWORD)

    response = await alice.post("/settings/account/logout-all")

    assert notice_of(response) == "You are signed out everywhere."
    for browser in (alice, laptop):
        assert redirect_target(await browser.get("/settings/account")).startswith(LOGIN)
    refused = await harness.client.get("/api/account", headers=bearer(script_token))
    assert refused.status_code == 401


# -- API key pages ------------------------------------------------------------------------


async def test_created_key_is_shown_once_and_then_listed_without_its_secret(
    harness: Harness, alice: Browser
) -> None:
    """Creating a key shows the working key once; the list and the detail page then show
    the key's name and prefix, never the secret."""
    response = await alice.post(KEYS, key_form(harness, "ci-deploy"))

    plaintext = shown_key(response)
    assert plaintext.startswith("agk_")
    assert response.headers["cache-control"] == "no-store"
    assert await account_status(harness, plaintext) == 200
    listing = await alice.get(KEYS)
    row = html(listing).find("tr", data_key_id=True)
    assert "ci-deploy" in row.text
    assert plaintext not in listing.text
    key_link = row.find("a").attrs["href"]
    detail_page = await alice.get(key_link)
    assert detail_page.status_code == 200
    assert plaintext not in detail_page.text
    assert html(detail_page).find("h1").text == "ci-deploy"


async def test_invalid_allowed_ip_is_422_with_the_message_and_the_values_kept(
    harness: Harness, alice: Browser, alice_id: int
) -> None:
    """An invalid allowed IP re-shows the form (422) with "Invalid IP address format" at
    the field and what was typed; no key is made."""
    response = await alice.post(
        KEYS, key_form(harness, "bad-ip", allowed_ips="10.0.0.1\n10.0.0.300")
    )

    assert response.status_code == 422
    page = html(response)
    error = page.by_id("allowed-error").text
    assert "Invalid IP address format" in error
    assert error.startswith("Entry 2:")
    field = page.by_id("allowed_ips")
    assert field.attrs["aria-invalid"] == "true"
    assert "allowed-error" in field.attrs["aria-describedby"]
    assert field.text == "10.0.0.1 10.0.0.300"
    assert page.by_id("name").attrs["value"] == "bad-ip"
    assert await key_count(harness, alice_id) == 0


async def test_a_name_in_use_is_409_with_the_message_on_create_and_edit(
    harness: Harness, alice: Browser, alice_id: int
) -> None:
    """A name another live key of the owner has is refused with the REST API's status
    (409, not 422) and the message at the name field, on the create form and on the
    edit form, with what was typed kept; nothing changes."""
    await create_key(alice, harness, "ci-deploy")
    other_id, _ = await create_key(alice, harness, "reporting")

    created = await alice.post(KEYS, key_form(harness, "ci-deploy"))
    edited = await alice.post(f"{KEYS}/{other_id}/edit", key_form(harness, "ci-deploy"))

    for response in (created, edited):
        assert response.status_code == 409
        page = html(response)
        assert page.by_id("name-error").text == "An API key with this name already exists."
        assert page.by_id("name").attrs["value"] == "ci-deploy"
    assert await key_count(harness, alice_id) == 2
    assert html(await alice.get(f"{KEYS}/{other_id}")).find("h1").text == "reporting"


async def test_detail_page_shows_the_use_of_the_key(harness: Harness, alice: Browser) -> None:
    """After a request with the key, its page shows the last use and the request."""
    key_id, plaintext = await create_key(alice, harness, "reporting")
    before = html(await alice.get(f"{KEYS}/{key_id}"))
    assert before.find("dd", class_="last-used").text == "never used"

    assert await account_status(harness, plaintext) == 200
    await harness.services.usage.flush()

    page = html(await alice.get(f"{KEYS}/{key_id}"))
    assert "127.0.0.1" in page.find("dd", class_="last-used").text
    usage = page.find("table", class_="usage").find("tbody").find_all("tr")
    assert len(usage) == 1
    assert "/api/account" in usage[0].text
    assert "GET" in usage[0].text


async def test_regenerate_shows_the_new_key_once_and_retires_the_old_one(
    harness: Harness, alice: Browser
) -> None:
    """Regenerating without grace shows a new working key once; the old one stops."""
    key_id, old = await create_key(alice, harness, "rotating")

    response = await alice.post(f"{KEYS}/{key_id}/regenerate", {"grace_seconds": "0"})

    new = shown_key(response)
    assert new != old
    assert "regenerated" in html(response).find("h1").text
    assert await account_status(harness, new) == 200
    assert await account_status(harness, old) == 401
    assert new not in (await alice.get(f"{KEYS}/{key_id}")).text


async def test_an_invalid_grace_period_is_refused_with_the_rest_apis_status(
    harness: Harness, alice: Browser
) -> None:
    """``/api/api-keys/{id}/generate?graceSeconds=`` answers invalid input 422; the page
    answered 400 (the README-driven review). The key is left as it was."""
    key_id, old = await create_key(alice, harness, "rotating")
    for grace in ("abc", "999999999"):
        response = await alice.post(f"{KEYS}/{key_id}/regenerate", {"grace_seconds": grace})
        assert response.status_code == 422, grace
        assert "<html" in response.text
    assert await account_status(harness, old) == 200


async def test_detail_page_shows_the_grace_period_only_while_it_lasts(
    harness: Harness, alice: Browser
) -> None:
    """After a regeneration with grace the key page says until when the previous key
    works; once that time has passed it no longer does."""
    key_id, _ = await create_key(alice, harness, "graceful")
    await alice.post(f"{KEYS}/{key_id}/regenerate", {"grace_seconds": "3600"})

    def grace_shown(page: httpx2.Response) -> bool:
        return any(term.text == "Previous key valid until" for term in html(page).find_all("dt"))

    assert grace_shown(await alice.get(f"{KEYS}/{key_id}"))
    harness.clock.advance(seconds=3601)
    assert not grace_shown(await alice.get(f"{KEYS}/{key_id}"))


async def test_revoke_stops_the_key_and_hides_it_from_the_list(
    harness: Harness, alice: Browser
) -> None:
    """Revoking redirects with a notice, the key is refused at once, and the list shows
    it only among revoked keys."""
    key_id, plaintext = await create_key(alice, harness, "to-revoke")

    response = await alice.post(f"{KEYS}/{key_id}/revoke", {"confirm": "on"})

    assert redirect_target(response).startswith(KEYS)
    assert "revoked" in notice_of(response)
    assert await account_status(harness, plaintext) == 401
    assert html(await alice.get(KEYS)).find_all("tr", data_key_id=str(key_id)) == []
    with_revoked = html(await alice.get(KEYS, revoked="1"))
    row = with_revoked.find("tr", data_key_id=str(key_id))
    assert row.find("span", class_="badge").text == "revoked"


@pytest.mark.parametrize(
    "key_id",
    [
        "0",
        "18446744073709551616",
        "9223372036854775808",
        "6f1c3e0a-2b4d-4c8e-9a7f-0d5b1e2c3a4f",
        "6f1c3e0a2b4d4c8e9a7f0d5b1e2c3a4f",
    ],
)
async def test_ids_no_key_can_have_are_404_pages(alice: Browser, key_id: str) -> None:
    """Ids beyond the database's integers, unknown UUIDs and text that is neither name
    no key: a 404 page, on every key route."""
    assert (await alice.get(f"{KEYS}/{key_id}")).status_code == 404
    for action in ("revoke", "regenerate", "edit"):
        response = await alice.post(f"{KEYS}/{key_id}/{action}", {"confirm": "on"})
        assert response.status_code == 404, (action, main_text(response))


@pytest.mark.parametrize(
    "target",
    [
        "/settings/../api/account",
        "/settings/./../api/account",
        "/settings/api-keys/..",
        "/settings/%2e%2e/api/account",
        "/settings/%2E%2E/api/account",
        "/settings/.%2e/api/account",
        "/settings/x%2f..%2f..%2fapi",
        "/settings/x%5c..%5capi",
        "/settings/x\\..\\api",
        "/settings//evil.example",
        "/settings/.\t./api/account",
        "/settings/account\n",
    ],
)
def test_a_next_page_with_dot_segments_or_their_disguises_is_refused(target: str) -> None:
    """``next`` must name a page under /settings one way only: a path that some browser
    or server resolves elsewhere leads to the default page."""
    assert safe_next(target) == KEYS


def test_a_plain_next_page_is_kept_with_its_query() -> None:
    assert safe_next("/settings/audit?type=API_KEY_CREATED&page=2") == (
        "/settings/audit?type=API_KEY_CREATED&page=2"
    )


async def test_a_form_posted_after_the_session_ended_returns_to_its_page(
    harness: Harness, alice: Browser
) -> None:
    """The session's token (and so its cookie) expired while a form was open: posting it
    leads to sign in, says why, and comes back to the page of the form, not to its
    POST-only URL (a 404 after signing in)."""
    created = await harness.create_key(await harness.login("alice", USER_PASSWORD))
    page = f"{KEYS}/{created['id']}"
    assert (await alice.get(page)).status_code == 200
    harness.clock.advance(days=1)

    response = await alice.post(f"{page}/edit", {"name": "renamed"})

    assert redirect_target(response) == f"{LOGIN}?next={page}"
    assert notice_of(response) == "Your session has ended. Please sign in again."
    back = await alice.sign_in("alice", USER_PASSWORD, next=page)
    assert redirect_target(back) == page
    assert (await alice.get(page)).status_code == 200


@pytest.mark.parametrize(
    ("form", "page"),
    [
        (f"{KEYS}/{UNKNOWN_KEY}/regenerate", f"{KEYS}/{UNKNOWN_KEY}"),
        ("/settings/account/sessions/abc/revoke", "/settings/account"),
        ("/settings/account/password", "/settings/account"),
        (KEYS, KEYS),
        ("/settings/logout", KEYS),
    ],
)
async def test_a_form_posted_without_a_session_cookie_returns_to_its_page(
    open_browser: OpenBrowser, form: str, page: str
) -> None:
    """A browser drops the session cookie when it expires with its token: a form posted
    then says the session ended and leads back to the nearest page holding it."""
    browser = await open_browser()

    response = await browser.post(form, {}, csrf="whatever")

    target = httpx2.URL(redirect_target(response))
    assert target.path == LOGIN
    assert target.params["next"] == page
    assert notice_of(response) == "Your session has ended. Please sign in again."


async def test_a_visit_without_a_session_says_nothing_of_an_ended_one(
    open_browser: OpenBrowser,
) -> None:
    """A first visit is sent to sign in without a notice: nothing ended."""
    response = await (await open_browser()).get("/settings/account")

    assert notice_of(response) == ""


async def test_sort_links_keep_the_revoked_filter_and_mark_the_header(
    harness: Harness, alice: Browser
) -> None:
    """Sorting the list showing revoked keys keeps showing them, and the sorted column's
    header cell (not its link) carries ``aria-sort``."""
    await harness.create_key(await harness.login("alice", USER_PASSWORD))

    page = html(await alice.get(KEYS, revoked="1", sort="name", dir="asc"))

    headers = page.find("table").find_all("th", scope="col")
    name = next(th for th in headers if th.text == "Name")
    assert name.attrs["aria-sort"] == "ascending"
    assert not page.find("table").find_all("a", aria_sort=True)
    links = [httpx2.URL(th.find("a").attrs["href"]) for th in headers if th.find_all("a")]
    assert links
    assert all(link.params.get("revoked") == "1" for link in links)
    hide = page.find("a", href="?sort=name&dir=asc")
    assert hide.text == "Hide revoked keys"
