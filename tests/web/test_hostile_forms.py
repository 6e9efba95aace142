"""No 500 from hostile input in the Settings UI (issue 10, item 9), SQLite and PostgreSQL.

The reproduced attacks first (a non-ASCII CSRF token, a NUL in a typed login, forms
Starlette cannot parse); then a sweep: every form of every page an administrator sees,
GET and POST, each field in turn set to each hostile string, and the pages' path
parameters too. The answer is an HTML page or a redirect, never a 5xx or a traceback.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx2
import pytest

from authgate.services.api_key_views import KeySpec
from authgate.settings import Settings
from authgate.storage.paging import PageRequest
from authgate.web.session import CSRF_FIELD, SECURE_COOKIES, csrf_secret, session_csrf_token
from tests.api.test_hostile_input import HOSTILE_STRINGS
from tests.conftest import ADMIN_PASSWORD, Harness, test_settings
from tests.web.conftest import (
    LOGIN,
    Browser,
    Element,
    OpenBrowser,
    assert_no_stack_trace,
    html,
    main_text,
)

PAGES = [
    "/settings/api-keys",
    "/settings/account",
    "/settings/users",
    "/settings/audit",
    "/settings/keys-review",
    "/settings/alerts",
]
# Forms that would end the session every request of the sweep acts with.
SESSION_ENDING = re.compile(r"/settings/(logout|account/logout-all|users/admin/)")


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return test_settings(
        tmp_path / "data",
        database_url=database_url,
        login_ip_max_failures=100_000,
        login_pair_max_failures=1000,
        login_account_max_failures=100_000,
    )


async def login_form(browser: Browser) -> dict[str, str]:
    page = await browser.get(LOGIN)
    return html(page).find("form", action=LOGIN).inputs()


# -- the reproduced attacks --------------------------------------------------------------


@pytest.mark.parametrize("token", ["\u00e9", "\u00e9" * 32, "\x00", "\ufffd"])
async def test_sign_in_with_a_non_ascii_csrf_token_is_refused(
    open_browser: OpenBrowser, admin_id: int, token: str
) -> None:
    """``POST /settings/login`` with ``csrf_token=é`` (or NUL, or U+FFFD) is a wrong
    token: 403, the form is not evaluated."""
    browser = await open_browser()
    form = await login_form(browser)
    response = await browser.post(
        LOGIN,
        {**form, CSRF_FIELD: token, "username": "admin", "password": ADMIN_PASSWORD},
        csrf=False,
    )
    assert response.status_code == 403, response.text
    assert browser.session is None


async def test_signed_in_form_with_a_non_ascii_csrf_token_is_refused(
    harness: Harness, admin: Browser
) -> None:
    """A page's POST with a non-ASCII CSRF token is refused (403) and changes nothing."""
    response = await admin.post("/settings/users", {"login": "mallory"}, csrf="\u00e9t\u00e9")
    assert response.status_code == 403
    assert "Form refused" in main_text(response)
    users = await harness.services.users.list_users(PageRequest(page=0, size=100))
    assert "mallory" not in {user.login for user in users.items}


@pytest.mark.parametrize("username", ["ad\x00min", "\x00", "admin\x00@example.com"])
async def test_nul_in_the_typed_login_is_a_wrong_login(
    open_browser: OpenBrowser, admin_id: int, username: str
) -> None:
    """The sign-in form with a NUL in the username answers "wrong username or password"."""
    browser = await open_browser()
    form = await login_form(browser)
    response = await browser.post(
        LOGIN, {**form, "username": username, "password": ADMIN_PASSWORD}, csrf=False
    )
    assert response.status_code == 401
    assert "Wrong username or password." in main_text(response)


async def test_a_file_part_or_too_many_fields_is_400(
    open_browser: OpenBrowser, admin: Browser, admin_id: int
) -> None:
    """Forms are never uploads: a multipart file part, or more fields than any form has,
    is refused with a 400 page (and no temporary file is left open), before and after
    signing in."""
    browser = await open_browser()
    form = await login_form(browser)
    upload = await browser.client.post(
        LOGIN, data=form, files={"username": ("name.txt", b"admin", "text/plain")}
    )
    assert upload.status_code == 400
    assert "The form could not be read" in main_text(upload)
    crowded = await browser.client.post(LOGIN, data={**form, **{f"f{i}": "x" for i in range(500)}})
    assert crowded.status_code == 400
    token = await admin.csrf_token()
    signed_in_upload = await admin.client.post(
        "/settings/users",
        data={CSRF_FIELD: token, "login": "mallory"},
        files={"email": ("e.txt", b"m@example.com", "text/plain")},
    )
    assert signed_in_upload.status_code == 400
    assert_no_stack_trace(signed_in_upload)


async def test_a_form_over_the_body_limit_sent_in_chunks_is_413(
    open_browser: OpenBrowser, admin: Browser
) -> None:
    """Without Content-Length only reading the body finds it too large: that is a 413
    page, as a declared length gets, not "the form could not be read" (400)."""
    browser = await open_browser()
    form = await login_form(browser)

    async def chunks() -> AsyncIterator[bytes]:
        yield urlencode(form).encode()
        for _ in range(100):
            yield b"&pad=" + b"x" * 1024

    for client in (browser.client, admin.client):
        answer = await client.post(
            LOGIN if client is browser.client else "/settings/users",
            content=chunks(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 413, answer.text
        assert "larger than this server accepts" in main_text(answer)
        # What a browser sends: the same with Content-Length (was raw JSON, the API's).
        declared = await client.post(
            LOGIN if client is browser.client else "/settings/users",
            data={**form, "pad": "x" * 100_000},
        )
        assert declared.status_code == 413, declared.text
        assert declared.headers["content-type"].startswith("text/html")
        assert "larger than this server accepts" in main_text(declared)


# -- the sweep ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    method: str
    action: str
    fields: dict[str, str]


def forms_of(page: Element, url: str) -> Iterator[Form]:
    for element in page.find_all("form"):
        fields: dict[str, str] = {}
        for field in element.find_all():
            name = field.attrs.get("name")
            if not name or field.tag not in ("input", "select", "textarea"):
                continue
            if field.tag == "select":
                options = field.find_all("option")
                fields[name] = options[0].attrs.get("value", options[0].text) if options else ""
            elif field.tag == "textarea":
                fields[name] = field.text
            else:
                fields[name] = field.attrs.get("value", "on")
        method = element.attrs.get("method", "get").upper()
        yield Form(method, element.attrs.get("action") or url, fields)


class AdminSessions:
    """A new admin session (cookie and CSRF token) for every request, so that no request
    of the sweep depends on what an earlier one did to the session."""

    def __init__(self, harness: Harness, client: httpx2.AsyncClient, key_page: str) -> None:
        self.harness = harness
        self.client = client
        self.pages = [*PAGES, key_page]  # the admin's own API key's page too

    async def request(
        self, method: str, url: str, fields: dict[str, str] | None = None
    ) -> httpx2.Response:
        services = self.harness.services
        self.harness.clock.advance(seconds=1)
        admin = await services.users.get_user("admin")
        issued = services.tokens.issue(admin, remember_me=False)
        headers = {"Cookie": f"{SECURE_COOKIES.session}={issued.token}"}
        if method == "GET":
            return await self.client.get(url, params=fields, headers=headers)
        csrf = session_csrf_token(csrf_secret(services.server_secret), issued.claims.token_id)
        data = {**(fields or {}), CSRF_FIELD: csrf}
        return await self.client.post(url, data=data, headers=headers)


@pytest.fixture
async def sessions(harness: Harness, admin_id: int) -> AsyncIterator[AdminSessions]:
    await harness.create_user("victim")
    admin = await harness.services.users.get_user("admin")
    created = await harness.services.api_keys.create(
        admin.id, KeySpec(name="admin-key", expires_at=harness.clock() + timedelta(days=30))
    )
    key_page = f"/settings/api-keys/{created.view.public_id}"
    transport = httpx2.ASGITransport(app=harness.app, raise_app_exceptions=False)
    client = httpx2.AsyncClient(transport=transport, base_url="https://testserver")
    async with client:
        yield AdminSessions(harness, client, key_page)


async def test_hostile_values_in_every_form_field_never_get_5xx(sessions: AdminSessions) -> None:
    """Every field of every form an administrator is shown, in turn set to each hostile
    string, and submitted (GET filters and POST changes alike)."""
    forms: dict[tuple[str, str], Form] = {}
    for url in sessions.pages:
        page = await sessions.request("GET", url)
        assert page.status_code == 200, url
        for form in forms_of(html(page), url):
            if not SESSION_ENDING.search(form.action):
                # One form of each kind (every alert rule has the same edit form).
                kind = re.sub(r"/\d+/", "/{id}/", form.action)
                forms.setdefault((form.method, kind), form)
    assert len(forms) >= 16
    sent = 0
    for form in forms.values():
        for name in form.fields:
            if name == CSRF_FIELD:
                continue
            for value in HOSTILE_STRINGS:
                response = await sessions.request(
                    form.method, form.action, {**form.fields, name: value}
                )
                assert_no_stack_trace(response)
                sent += 1
    assert sent > 400


@pytest.mark.parametrize(
    "template",
    [
        "/settings/users/{}/edit",
        "/settings/users/{}/password",
        "/settings/users/{}/delete",
        "/settings/api-keys/{}",
        "/settings/api-keys/{}/edit",
        "/settings/api-keys/{}/revoke",
        "/settings/alerts/rules/{}/edit",
    ],
)
async def test_hostile_path_parameters_never_get_5xx(
    sessions: AdminSessions, template: str
) -> None:
    """Logins and ids in page paths, set to each hostile string, GET and POST."""
    for value in HOSTILE_STRINGS:
        url = template.format(quote(value, safe=""))
        for method in ("GET", "POST"):
            response = await sessions.request(method, url, {})
            assert_no_stack_trace(response)
