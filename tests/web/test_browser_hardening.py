"""Browser hardening (issue 10, item 11), without a browser: the Content-Security-Policy
of the Settings UI and Swagger UI (no inline script anywhere), ``__Host-`` cookies,
Swagger UI's persistAuthorization off by default, and plain HTTP told apart from a
form that expired: "HTTPS is required", unless on localhost, behind a trusted proxy
that says HTTPS, or in a lab that allows plain HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from authgate.app import create_app
from authgate.security.clientip import forwarded_proto
from authgate.settings import Settings
from authgate.web.pages import HTTPS_REQUIRED as HTTPS_MESSAGE
from authgate.web.session import secure_cookies_dropped
from tests.conftest import ADMIN_PASSWORD, FakeClock, Harness, test_settings
from tests.web.conftest import (
    LOGIN,
    Browser,
    Element,
    OpenBrowser,
    find_cookie,
    html,
    main_text,
    redirect_target,
)

SWAGGER_UI = "/swagger-ui/index.html"
BROWSER_ELSEWHERE = "198.51.100.7"  # a browser on another machine, connecting directly
HTTPS_REQUIRED = "Signing in needs HTTPS"
FORM_EXPIRED = "The sign-in form expired"


# -- Content-Security-Policy -------------------------------------------------------------


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def inline_code(page: Element) -> list[str]:
    """Inline scripts, event handler attributes and style attributes on a page."""
    found = []
    for element in page.iter():
        if element.tag == "script" and ("src" not in element.attrs or element.text.strip()):
            found.append(f"<script> {element.text[:40]!r}")
        for name in element.attrs:
            if name.startswith("on") or name == "style":
                found.append(f"<{element.tag} {name}=...>")
        if element.attrs.get("href", "").lower().startswith("javascript:"):
            found.append(f"<{element.tag} href=javascript:...>")
    return found


async def test_settings_pages_have_a_strict_csp_and_no_inline_code(
    harness: Harness, admin: Browser, admin_id: int
) -> None:
    """Every page (sign-in, error, signed-in, admin) is sent with a policy that allows
    scripts and styles from this origin only, and holds no inline code it would block."""
    pages = [
        await admin.client.get(LOGIN),
        await admin.get("/settings/api-keys"),
        await admin.get("/settings/account"),
        await admin.get("/settings/users"),
        await admin.get("/settings/audit"),
        await admin.get("/settings/keys-review"),
        await admin.get("/settings/alerts"),
        await admin.get("/settings/api-keys/999999"),  # the 404 page
    ]
    for response in pages:
        policy = directives(response.headers["content-security-policy"])
        assert policy["script-src"] == ["'self'"], response.url
        assert policy["style-src"] == ["'self'"]
        assert policy["default-src"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert policy["form-action"] == ["'self'"]
        assert policy["base-uri"] == ["'none'"]
        assert inline_code(html(response)) == [], response.url


async def test_swagger_ui_has_a_strict_csp_and_its_start_up_is_a_file(harness: Harness) -> None:
    """Swagger UI's page has no inline script: it starts from /swagger-ui/swagger-init.js,
    which the policy (scripts from this origin only) allows."""
    response = await harness.client.get(SWAGGER_UI)
    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    assert policy["connect-src"] == ["'self'"]
    page = html(response)
    assert inline_code(page) == []
    scripts = [element.attrs["src"] for element in page.find_all("script")]
    assert scripts == ["/swagger-ui/assets/swagger-ui-bundle.js", "/swagger-ui/swagger-init.js"]
    init = await harness.client.get(scripts[1])
    assert init.status_code == 200
    assert init.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle(" in init.text


async def test_swagger_ui_persist_authorization_is_off_unless_configured(
    harness: Harness, tmp_path: Path
) -> None:
    """By default Swagger UI does not keep credentials in localStorage; the setting
    AUTHGATE_SWAGGER_PERSIST_AUTHORIZATION turns it on."""
    page = html(await harness.client.get(SWAGGER_UI))
    assert page.by_id("swagger-ui").attrs["data-persist-authorization"] == "false"
    async with serving(tmp_path, swagger_persist_authorization=True) as client:
        page = html(await client("http://testserver").get(SWAGGER_UI))
    assert page.by_id("swagger-ui").attrs["data-persist-authorization"] == "true"
    init = Path(__file__).parents[2] / "src/authgate/web/static/swagger-init.js"
    assert 'persistAuthorization: root.dataset.persistAuthorization === "true"' in init.read_text()


# -- __Host- cookies ------------------------------------------------------------------------


def attributes(set_cookie: str) -> dict[str, str]:
    parts = [part.strip() for part in set_cookie.split(";")]
    return {part.partition("=")[0].lower(): part.partition("=")[2] for part in parts[1:]}


def assert_host_prefixed(set_cookie: str, name: str) -> None:
    """What browsers require of a __Host- cookie: Secure, Path=/, no Domain."""
    assert set_cookie.startswith(f"__Host-{name}=")
    found = attributes(set_cookie)
    assert "secure" in found
    assert found["path"] == "/"
    assert "domain" not in found
    assert "httponly" in found
    assert found["samesite"].lower() == "strict"


async def test_session_and_login_csrf_cookies_are_host_prefixed(
    open_browser: OpenBrowser, admin_id: int
) -> None:
    """The login form's CSRF cookie, the session cookie, and the cookies that delete
    them on sign-in and sign-out all carry the __Host- prefix and its attributes."""
    browser = await open_browser()
    login_page = await browser.get(LOGIN)
    assert_host_prefixed(
        find_cookie(login_page, "__Host-authgate_login_csrf"), "authgate_login_csrf"
    )

    signed_in = await browser.sign_in("admin", ADMIN_PASSWORD)
    assert redirect_target(signed_in) == "/settings/api-keys"
    assert_host_prefixed(find_cookie(signed_in, "__Host-authgate_session"), "authgate_session")
    cleared = find_cookie(signed_in, "__Host-authgate_login_csrf")
    assert_host_prefixed(cleared, "authgate_login_csrf")
    assert attributes(cleared)["max-age"] == "0"

    signed_out = await browser.post("/settings/logout")
    deletion = find_cookie(signed_out, "__Host-authgate_session")
    assert_host_prefixed(deletion, "authgate_session")
    assert attributes(deletion)["max-age"] == "0"


async def test_a_cookie_without_the_prefix_opens_no_session(
    harness: Harness, open_browser: OpenBrowser, admin_id: int
) -> None:
    """A valid token in a cookie named without __Host- (which a sibling subdomain or a
    plain-HTTP attacker could set) is not a session."""
    admin = await harness.services.users.get_user("admin")
    token = harness.services.tokens.issue(admin, remember_me=False).token
    browser = await open_browser()
    planted = await browser.client.get(
        "/settings/account", headers={"Cookie": f"authgate_session={token}"}
    )
    assert redirect_target(planted).startswith(LOGIN)
    real = await browser.client.get(
        "/settings/account", headers={"Cookie": f"__Host-authgate_session={token}"}
    )
    assert real.status_code == 200


# -- plain HTTP -----------------------------------------------------------------------------

Clients = Callable[..., httpx2.AsyncClient]


@asynccontextmanager
async def serving(tmp_path: Path, **overrides: Any) -> AsyncIterator[Clients]:
    """The app with ``overrides`` on its own SQLite file (nothing here depends on the
    database); yields a factory of clients (base URL, peer address)."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    settings = test_settings(tmp_path / "other", database_url=database_url, **overrides)
    app = create_app(settings, clock=FakeClock())
    async with app.router.lifespan_context(app):
        await app.state.services.users.ensure_initial_admin(ADMIN_PASSWORD)
        clients: list[httpx2.AsyncClient] = []

        def client(base_url: str, peer: str = BROWSER_ELSEWHERE) -> httpx2.AsyncClient:
            transport = httpx2.ASGITransport(
                app=app, raise_app_exceptions=False, client=(peer, 50000)
            )
            made = httpx2.AsyncClient(transport=transport, base_url=base_url)
            clients.append(made)
            return made

        try:
            yield client
        finally:
            for made in clients:
                await made.aclose()


async def sign_in(client: httpx2.AsyncClient, **headers: str) -> httpx2.Response:
    """GET the login page, then POST it, as a browser that keeps the cookies it can."""
    page = await client.get(LOGIN, headers=headers)
    form = html(page).find("form", action=LOGIN).inputs()
    form.update(username="admin", password=ADMIN_PASSWORD)
    return await client.post(LOGIN, data=form, headers=headers)


@pytest.fixture
def serve(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[Clients]]:
    return lambda **overrides: serving(tmp_path, **overrides)


async def test_plain_http_from_another_host_says_https_is_required(
    serve: Callable[..., AbstractAsyncContextManager[Clients]],
) -> None:
    """Over http://authgate.example the browser drops the Secure cookies: the sign-in
    page says so at once, and the refused POST says "HTTPS is required", not that the
    form expired (which no reload would ever fix)."""
    async with serve() as client:
        browser = client("http://authgate.example")
        page = await browser.get(LOGIN)
        assert HTTPS_REQUIRED in html(page).by_id("https-required").text
        response = await sign_in(browser)
        assert response.status_code == 403
        assert HTTPS_REQUIRED in main_text(response)
        assert FORM_EXPIRED not in main_text(response)


@pytest.mark.parametrize(
    "base_url",
    ["http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080", "http://app.localhost"],
)
async def test_plain_http_on_loopback_signs_in(
    serve: Callable[..., AbstractAsyncContextManager[Clients]], base_url: str
) -> None:
    """Browsers keep Secure cookies on http://localhost (a secure context): no warning.
    (This client keeps them too only because the test sends them back by hand.)"""
    async with serve() as client:
        browser = client(base_url, peer="127.0.0.1")  # on this machine, or a tunnel to it
        page = await browser.get(LOGIN)
        assert html(page).find_all(id="https-required") == []
        csrf = find_cookie(page, "__Host-authgate_login_csrf").split(";")[0]
        form = html(page).find("form", action=LOGIN).inputs()
        form.update(username="admin", password=ADMIN_PASSWORD)
        response = await browser.post(LOGIN, data=form, headers={"Cookie": csrf})
        assert redirect_target(response) == "/settings/api-keys"


async def test_a_missing_cookie_over_https_is_still_an_expired_form(
    serve: Callable[..., AbstractAsyncContextManager[Clients]],
) -> None:
    """Over HTTPS a missing login cookie means what it used to: reload the form."""
    async with serve() as client:
        browser = client("https://authgate.example")
        page = await browser.get(LOGIN)
        form = html(page).find("form", action=LOGIN).inputs()
        browser.cookies.clear()
        response = await browser.post(LOGIN, data=form)
        assert response.status_code == 403
        assert FORM_EXPIRED in main_text(response)


@pytest.mark.parametrize(
    ("forwarded_header", "headers", "warned"),
    [
        ("x-forwarded-for", {"X-Forwarded-Proto": "https"}, False),
        ("x-forwarded-for", {"X-Forwarded-Proto": "http"}, True),
        ("x-forwarded-for", {"X-Forwarded-Proto": "http, https"}, False),  # the last hop's
        ("x-forwarded-for", {}, False),  # unknown: no warning rather than a wrong one
        ("forwarded", {"Forwarded": "for=198.51.100.7;proto=https"}, False),
        ("forwarded", {"Forwarded": 'for="[2001:db8::1]";proto=http'}, True),
    ],
)
async def test_a_trusted_proxy_says_how_the_browser_came(
    serve: Callable[..., AbstractAsyncContextManager[Clients]],
    forwarded_header: str,
    headers: dict[str, str],
    warned: bool,
) -> None:
    """Behind a TLS-terminating proxy authgate sees http://; the proxy's forwarded
    scheme (from a trusted proxy only) decides whether HTTPS is required."""
    async with serve(trusted_proxies=["10.0.0.2"], forwarded_header=forwarded_header) as client:
        proxied = client("http://authgate.example", peer="10.0.0.2")
        page = await proxied.get(LOGIN, headers=headers)
        assert bool(html(page).find_all(id="https-required")) is warned


async def test_an_untrusted_proxy_on_this_machine_gets_no_warning(
    serve: Callable[..., AbstractAsyncContextManager[Clients]],
) -> None:
    """A proxy on the same host that is not in AUTHGATE_TRUSTED_PROXIES: how the browser
    came cannot be told (TLS may end at that proxy), so nothing is claimed."""
    async with serve() as client:
        local_proxy = client("http://authgate.example", peer="127.0.0.1")
        page = await local_proxy.get(LOGIN)
        assert html(page).find_all(id="https-required") == []


async def test_an_untrusted_peer_cannot_claim_https(
    serve: Callable[..., AbstractAsyncContextManager[Clients]],
) -> None:
    """X-Forwarded-Proto from a peer that is not a trusted proxy is not believed."""
    async with serve(trusted_proxies=["10.0.0.2"]) as client:
        direct = client("http://authgate.example", peer="203.0.113.9")
        page = await direct.get(LOGIN, headers={"X-Forwarded-Proto": "https"})
        assert html(page).find_all(id="https-required") != []


async def test_lab_setting_signs_in_over_plain_http(
    serve: Callable[..., AbstractAsyncContextManager[Clients]],
) -> None:
    """AUTHGATE_UI_INSECURE_HTTP=true: no warning, plain cookie names without Secure, and
    a client that keeps only what a browser keeps over http:// signs in and stays in."""
    async with serve(ui_insecure_http=True) as client:
        browser = client("http://lab.example")
        page = await browser.get(LOGIN)
        assert html(page).find_all(id="https-required") == []
        csrf_cookie = find_cookie(page, "authgate_login_csrf")
        assert "secure" not in attributes(csrf_cookie)
        response = await sign_in(browser)
        assert redirect_target(response) == "/settings/api-keys"
        session = find_cookie(response, "authgate_session")
        assert "secure" not in attributes(session)
        assert "httponly" in attributes(session)
        assert (await browser.get("/settings/account")).status_code == 200


@pytest.mark.parametrize(
    ("scheme", "hostname", "dropped"),
    [
        ("https", "authgate.example", False),
        ("http", "authgate.example", True),
        ("http", "192.0.2.10", True),
        ("http", "localhost", False),
        ("http", "LOCALHOST.", False),
        ("http", "app.localhost", False),
        ("http", "127.0.0.1", False),
        ("http", "127.1.2.3", False),
        ("http", "::1", False),
        ("http", "[::1]", False),
        ("http", "localhost.example", True),
        ("http", None, True),
        (None, "authgate.example", False),
    ],
)
def test_secure_cookies_dropped(scheme: str | None, hostname: str | None, dropped: bool) -> None:
    assert secure_cookies_dropped(scheme=scheme, hostname=hostname) is dropped


@pytest.mark.parametrize(
    ("header", "value", "proto"),
    [
        ("x-forwarded-for", "https", "https"),
        ("x-forwarded-for", "HTTP", "http"),
        ("x-forwarded-for", "http, https", "https"),
        ("x-forwarded-for", None, None),
        ("x-forwarded-for", "", None),
        ("forwarded", "for=1.2.3.4;proto=https", "https"),
        ("forwarded", "for=1.2.3.4;proto=http, for=10.0.0.1;proto=https", "https"),
        ("forwarded", 'proto="http";for=1.2.3.4', "http"),
        ("forwarded", "for=1.2.3.4", None),
    ],
)
def test_forwarded_proto(header: Any, value: str | None, proto: str | None) -> None:
    assert forwarded_proto(header, value) == proto


def test_the_https_message_names_the_ways_out() -> None:
    """The message tells how to fix it: https://, localhost, or the lab setting (off by
    default)."""
    assert "https://" in HTTPS_MESSAGE
    assert "http://localhost" in HTTPS_MESSAGE
    assert "AUTHGATE_UI_INSECURE_HTTP=true" in HTTPS_MESSAGE
    assert Settings.model_fields["ui_insecure_http"].default is False
