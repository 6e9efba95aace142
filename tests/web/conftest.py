"""A cookie-keeping "browser" for the Settings UI (no JavaScript, like a browser with
scripts off), a small HTML reader, and signed-in browsers for an admin and a user.

The session cookies are ``Secure``: the browsers speak to the app as
``https://testserver`` so their cookie jars keep them.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx2
import pytest

from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, Harness

LOGIN = "/settings/login"
CSRF = "csrf_token"
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
# What a leaked stack trace or exception would show.
_TRACE_MARKERS = ("Traceback (most recent call last)", 'File "/', "authgate.", "sqlalchemy.")

FormData = Mapping[str, str | Sequence[str]]


# -- reading HTML -------------------------------------------------------------------------


@dataclass
class Element:
    """One HTML element: tag, attributes (unescaped) and children."""

    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The text inside, whitespace collapsed."""
        return " ".join("".join(self._strings()).split())

    def _strings(self) -> Iterator[str]:
        for child in self.children:
            if isinstance(child, str):
                yield child
            elif child.tag == "wbr":  # a place a line may break, not a space
                continue
            else:
                yield " "
                yield from child._strings()
                yield " "

    def iter(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str | bool) -> list[Element]:
        """Descendants (and self) with ``tag`` and the given attributes (``class_`` for
        ``class``, underscores for dashes; ``True`` means present)."""
        wanted = {name.rstrip("_").replace("_", "-"): value for name, value in attrs.items()}
        return [
            element
            for element in self.iter()
            if (tag is None or element.tag == tag)
            and all(
                (name in element.attrs)
                if value is True
                else (
                    value in element.attrs.get(name, "").split()
                    if name == "class"
                    else element.attrs.get(name) == value
                )
                for name, value in wanted.items()
            )
        ]

    def find(self, tag: str | None = None, **attrs: str | bool) -> Element:
        """The single matching element (fails the test when there are none or several)."""
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
        return found[0]

    def by_id(self, element_id: str) -> Element:
        return self.find(id=element_id)

    def inputs(self) -> dict[str, str]:
        """Name -> value of the hidden and text inputs inside."""
        return {
            element.attrs["name"]: element.attrs.get("value", "")
            for element in self.find_all("input")
            if "name" in element.attrs and element.attrs.get("type") not in ("checkbox", "radio")
        }

    def checked(self, name: str) -> set[str]:
        """Values of the checked checkboxes called ``name``."""
        return {
            box.attrs.get("value", "on")
            for box in self.find_all("input", type="checkbox", name=name)
            if "checked" in box.attrs
        }


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self._open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self._open[-1].children.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open[-1].children.append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._open) - 1, 0, -1):
            if self._open[depth].tag == tag:
                del self._open[depth:]
                return

    def handle_data(self, data: str) -> None:
        self._open[-1].children.append(data)


def html(response: httpx2.Response) -> Element:
    """The response's HTML as a tree."""
    assert response.headers.get("content-type", "").startswith("text/html"), response.headers
    builder = _TreeBuilder()
    builder.feed(response.text)
    builder.close()
    return builder.root


def main_text(response: httpx2.Response) -> str:
    """The visible text of the page's <main>."""
    return html(response).find("main").text


def assert_no_stack_trace(response: httpx2.Response) -> None:
    assert response.status_code < 500, response.text
    for marker in _TRACE_MARKERS:
        assert marker not in response.text, f"{marker!r} in {response.request.url}"


def redirect_target(response: httpx2.Response) -> str:
    assert response.status_code == 303, response.text
    return response.headers["location"]


# -- the browser --------------------------------------------------------------------------


class Browser:
    """Follows no redirects by itself (tests look at them); remembers the page's CSRF
    token from the last HTML page that had one."""

    def __init__(self, client: httpx2.AsyncClient) -> None:
        self.client = client
        self.csrf: str | None = None

    async def get(self, url: str, **params: Any) -> httpx2.Response:
        response = await self.client.get(url, params=params or None)
        return self._seen(response)

    async def post(
        self, url: str, data: FormData | None = None, *, csrf: str | bool | None = True
    ) -> httpx2.Response:
        """POST a form; with ``csrf=True`` the session's token is added (fetched when
        not known yet), with a string that value, with ``None``/``False`` none."""
        fields: dict[str, str | Sequence[str]] = dict(data or {})
        if csrf is True:
            fields[CSRF] = await self.csrf_token()
        elif isinstance(csrf, str):
            fields[CSRF] = csrf
        response = await self.client.post(url, data=fields)
        return self._seen(response)

    async def csrf_token(self) -> str:
        if self.csrf is None:
            page = await self.get("/settings/account")
            assert page.status_code == 200, page.text
        assert self.csrf is not None
        return self.csrf

    async def sign_in(self, username: str, password: str, **extra: str) -> httpx2.Response:
        form = html(await self.get(LOGIN)).find("form", action=LOGIN).inputs()
        self.csrf = None
        return await self.post(
            LOGIN, {**form, "username": username, "password": password, **extra}, csrf=False
        )

    @property
    def session(self) -> str | None:
        return self.client.cookies.get("__Host-authgate_session")

    def _seen(self, response: httpx2.Response) -> httpx2.Response:
        assert_no_stack_trace(response)
        if response.headers.get("content-type", "").startswith("text/html"):
            tokens = {
                element.attrs.get("value", "")
                for element in html(response).find_all("input", name=CSRF)
            }
            page_tokens = tokens - {""}
            if len(page_tokens) == 1 and "/settings/login" not in str(response.url):
                self.csrf = page_tokens.pop()
        return response


OpenBrowser = Callable[[], Awaitable[Browser]]


@pytest.fixture
async def open_browser(harness: Harness) -> AsyncIterator[OpenBrowser]:
    """Opens fresh browsers (empty cookie jars) on the app; all closed after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def open_one() -> Browser:
            transport = httpx2.ASGITransport(app=harness.app, raise_app_exceptions=False)
            client = httpx2.AsyncClient(transport=transport, base_url="https://testserver")
            return Browser(await stack.enter_async_context(client))

        yield open_one


async def signed_in(open_browser: OpenBrowser, login: str, password: str) -> Browser:
    browser = await open_browser()
    response = await browser.sign_in(login, password)
    assert response.status_code == 303, main_text(response)
    return browser


@pytest.fixture
async def admin_id(harness: Harness) -> int:
    return await harness.create_user("admin", ADMIN_PASSWORD, admin=True)


@pytest.fixture
async def alice_id(harness: Harness) -> int:
    return await harness.create_user("alice", USER_PASSWORD)


@pytest.fixture
async def admin(open_browser: OpenBrowser, admin_id: int) -> Browser:
    """A browser signed in as the administrator ``admin``."""
    return await signed_in(open_browser, "admin", ADMIN_PASSWORD)


@pytest.fixture
async def alice(open_browser: OpenBrowser, alice_id: int) -> Browser:
    """A browser signed in as the ordinary user ``alice``."""
    return await signed_in(open_browser, "alice", USER_PASSWORD)


def find_cookie(response: httpx2.Response, name: str) -> str:
    """The Set-Cookie header that sets ``name``."""
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(headers) == 1, response.headers.get_list("set-cookie")
    return headers[0]


NOTICE_COOKIE = "__Host-authgate_notice"


def notice_of(response: httpx2.Response) -> str:
    """The notice a redirect leaves for its page (the signed cookie's text; "" for none).
    tests/web/test_notices.py checks that the page shows it."""
    redirect_target(response)
    headers = [
        h for h in response.headers.get_list("set-cookie") if h.startswith(f"{NOTICE_COOKIE}=")
    ]
    if not headers:
        return ""
    payload = headers[0].split(";")[0].split("=", 1)[1].split(".")[0]
    notice: str = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["text"]
    return notice
