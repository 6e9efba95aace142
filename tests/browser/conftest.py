"""Fixtures for the browser tests: one real ``authgate serve`` process for the session,
Debian's Chromium driven by Playwright (never a downloaded browser), a fresh browser
context per test, screenshots of failures and of a few pages for the documentation.

Every async fixture and test here runs in the session's event loop (one browser for all
tests); the test modules say so with ``pytest.mark.asyncio(loop_scope="session")``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect
from playwright.async_api import Error as PlaywrightError

from tests.processes import AuthgateServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-features=Translate",
]
ROOT = Path(__file__).resolve().parents[2]
FAILURE_SCREENSHOTS = ROOT / "test-results" / "screenshots"
DOC_SCREENSHOTS = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
TIMEOUT_MS = 10_000

ADMIN_PASSWORD = "operator-password-for-browser-tests"
PAIR_MAX_FAILURES = 3  # small, so the lockout test needs few attempts

REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()

# Tell Playwright's assertions to give up as soon as actions do.
expect.set_options(timeout=TIMEOUT_MS)


# -- reports for the failure screenshots ---------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report on the item, for the page fixture's teardown."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="session", autouse=True)
def _chromium_available() -> None:
    """Without Debian's Chromium the browser tests skip, except on CI where they must run."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: install Debian's chromium package (apt install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


# -- the server ----------------------------------------------------------------------------


class Server(AuthgateServer):
    """`authgate serve` in a subprocess on a free loopback port, output in a log file."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(
            workdir,
            {
                "AUTHGATE_DATA_DIR": str(workdir / "data"),
                "AUTHGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "AUTHGATE_USAGE_FLUSH_INTERVAL_SECONDS": "0.2",
                "AUTHGATE_AUDIT_FLUSH_INTERVAL_SECONDS": "0.2",
                "AUTHGATE_CHANGE_POLL_INTERVAL_SECONDS": "0.05",
                "AUTHGATE_LOGIN_PAIR_MAX_FAILURES": str(PAIR_MAX_FAILURES),
                # Every browser and test client is 127.0.0.1: the lockout test must block
                # its own (account, address) pair, never the whole address.
                "AUTHGATE_LOGIN_IP_MAX_FAILURES": "1000",
            },
        )


@pytest.fixture(scope="session")
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The process, started but not yet answering (it boots while Chromium starts)."""
    running = Server(tmp_path_factory.mktemp("browser-server"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def server(server_process: Server) -> Server:
    """The server, answering requests."""
    server_process.wait_until_up()
    return server_process


# -- users and keys through the REST API ---------------------------------------------------


@dataclass(frozen=True)
class Account:
    login: str
    password: str


def api_token(server: Server, account: Account) -> str:
    """A JWT from POST /api/authenticate."""
    response = httpx2.post(
        f"{server.base_url}/api/authenticate",
        json={"username": account.login, "password": account.password},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["id_token"]
    return token


def create_api_key(
    server: Server, account: Account, name: str, allowed: list[str] | None = None
) -> tuple[str, str]:
    """A key made with the REST API (its UUID, plaintext), for tests about other things."""
    expires = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    response = httpx2.post(
        f"{server.base_url}/api/api-keys",
        json={"name": name, "allowedIp": allowed or ["127.0.0.1"], "expiresAt": expires},
        headers={"Authorization": f"Bearer {api_token(server, account)}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return str(body["id"]), str(body["key"])


def account_status(server: Server, key: str) -> httpx2.Response:
    """GET /api/account with an API key as a bearer token, as an integration would."""
    return httpx2.get(
        f"{server.base_url}/api/account", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


AccountFactory = Callable[[str], Account]


@pytest.fixture(scope="session")
def make_user(server: Server) -> AccountFactory:
    """Creates an ordinary user (ROLE_USER) with POST /api/users as admin."""
    admin = api_token(server, Account("admin", ADMIN_PASSWORD))

    def make(login: str) -> Account:
        # Distinct per user, never containing the login (the password policy refuses that).
        digest = hashlib.sha256(login.encode()).hexdigest()[:10]
        account = Account(login, f"browser-tests-password-{digest}")
        response = httpx2.post(
            f"{server.base_url}/api/users",
            json={
                "login": account.login,
                "email": f"{account.login}@example.com",
                "password": account.password,
            },
            headers={"Authorization": f"Bearer {admin}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        assert response.json()["authorities"] == ["ROLE_USER"]
        return account

    return make


@pytest.fixture(scope="session")
def user(make_user: AccountFactory) -> Account:
    """The ordinary user most tests act as."""
    return make_user("carol")


# -- the browser ---------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(server_process: Server) -> AsyncIterator[Browser]:
    """Chromium for the whole session. It asks for the server process only so that the
    server (several seconds to migrate and start) boots while Chromium launches."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield launched
        finally:
            await launched.close()


PageFactory = Callable[..., Awaitable[Page]]


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


@pytest_asyncio.fixture(loop_scope="session")
async def new_page(
    browser: Browser, server: Server, request: pytest.FixtureRequest
) -> AsyncIterator[PageFactory]:
    """Opens a page in a fresh context (own cookies and storage), 1280x800 unless a
    ``viewport`` is given. After a failed test every page opened is saved as a full-page
    screenshot in test-results/screenshots/<test name>.png."""
    pages: list[Page] = []

    async def open_page(**options: Any) -> Page:
        context = await browser.new_context(
            base_url=server.base_url,
            permissions=["clipboard-read", "clipboard-write"],
            viewport=options.pop("viewport", DESKTOP),
            **options,
        )
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        page = await context.new_page()
        pages.append(page)
        return page

    try:
        yield open_page
    finally:
        reports = request.node.stash.get(REPORTS, {})
        name = _file_name(request.node.name)
        if FAILURE_SCREENSHOTS.is_dir():  # no stale screenshot of an earlier failure
            for old in FAILURE_SCREENSHOTS.iterdir():
                if re.fullmatch(rf"{re.escape(name)}(-\d+)?\.png", old.name):
                    old.unlink()
        if any(report.failed for report in reports.values()):
            FAILURE_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            for number, page in enumerate(pages, start=1):
                suffix = "" if number == 1 else f"-{number}"
                path = FAILURE_SCREENSHOTS / f"{name}{suffix}.png"
                try:
                    await page.screenshot(path=path, full_page=True, timeout=5_000)
                except PlaywrightError as error:  # a closed page, a crashed browser
                    request.node.add_report_section(
                        "teardown", "screenshot", f"no screenshot of {page.url}: {error}"
                    )
        for page in pages:
            await page.context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(new_page: PageFactory) -> Page:
    return await new_page()


async def save_doc_screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Overwrites docs/screenshots/<name>.png with the page at 1280 px wide (the whole
    page, or just the 1280x800 viewport)."""
    assert page.viewport_size == DESKTOP, "documentation screenshots are taken at 1280x800"
    DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=DOC_SCREENSHOTS / f"{name}.png", full_page=full_page)


async def sign_in(page: Page, account: Account) -> None:
    """Signs in through the login form and lands on the API keys page."""
    await page.goto("/settings/login")
    await page.locator("#username").fill(account.login)
    await page.locator("#password").fill(account.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/settings/api-keys$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("API Keys")
