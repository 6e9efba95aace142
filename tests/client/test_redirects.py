"""A redirect is never followed, and never taken for success: what was asked was not done
(a revocation, a logout), so the SDK raises ``RedirectError`` and the CLI exits non-zero;
``logout`` keeps the stored login the server did not confirm revoking."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.requests import Request
from starlette.responses import Response
from typer.testing import CliRunner, Result

from authgate.client import (
    APIError,
    ApiKeyCredentials,
    AsyncClient,
    Client,
    ClientConfig,
    PasswordCredentials,
    RedirectError,
    TokenCredentials,
    V12Credentials,
)
from authgate.client._cli import app
from authgate.client._exceptions import error_for
from authgate.client._token_store import TokenStore
from tests.client.servers import serve_asgi

URL = "https://auth.example.com"
KEY = "agk_0123456789ab_secretsecretsecret"
ELSEWHERE = "https://bob:pw@sso.example.com/login?token=secret-in-query#frag"
SHOWN = "https://sso.example.com/login?…"
TOKEN = "eyJ.stored-token.value"


def redirecting(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(302, headers={"Location": ELSEWHERE})


def sdk(credentials: Any = None) -> Client:
    config = ClientConfig(URL, credentials or ApiKeyCredentials(KEY))
    return Client(config, transport=httpx2.MockTransport(redirecting))


CALLS: dict[str, Callable[[Client], object]] = {
    "request": lambda c: c.request("DELETE", "/api/anything"),
    "account": lambda c: c.account(),
    "revoke_api_key": lambda c: c.revoke_api_key("3f1c3e0a-2b4d-4c8e-9a7f-0d5b1e2c3a4f"),
    "revoke_session": lambda c: c.revoke_session("abc"),
    "revoke_other_sessions": lambda c: c.revoke_other_sessions(),
    "delete_user": lambda c: c.delete_user("bob"),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_redirect_raises_and_says_where_it_pointed_without_secrets(name: str) -> None:
    """Before, revoke/delete returned None as if done."""
    with sdk() as client, pytest.raises(RedirectError) as raised:
        CALLS[name](client)
    error = raised.value
    assert isinstance(error, APIError)
    assert error.status_code == 302
    assert error.location == SHOWN
    message = str(error)
    assert "redirected to https://sso.example.com/login" in message
    assert "not follow" in message
    for secret in ("secret-in-query", "bob", "pw@", "frag", KEY):
        assert secret not in message


def test_logout_with_a_token_raises_on_a_redirect() -> None:
    with sdk(TokenCredentials(TOKEN)) as client, pytest.raises(RedirectError):
        client.logout()


@pytest.mark.parametrize(
    "credentials", [PasswordCredentials("alice", "pw"), V12Credentials("alice", "pw")]
)
def test_a_login_answered_with_a_redirect_raises(credentials: Any) -> None:
    with sdk(credentials) as client, pytest.raises(RedirectError):
        client.login()


async def test_the_async_client_raises_on_a_redirect_too() -> None:
    config = ClientConfig(URL, ApiKeyCredentials(KEY))
    async with AsyncClient(config, transport=httpx2.MockTransport(redirecting)) as client:
        with pytest.raises(RedirectError):
            await client.revoke_api_key("3f1c3e0a-2b4d-4c8e-9a7f-0d5b1e2c3a4f")


def test_a_redirect_without_a_location_says_so() -> None:
    request = httpx2.Request("GET", f"{URL}/api/account")
    error = error_for(httpx2.Response(307, request=request))
    assert isinstance(error, RedirectError)
    assert error.location is None
    assert "without a Location" in str(error)


def test_a_relative_location_is_shown_against_the_request() -> None:
    request = httpx2.Request("GET", f"{URL}/api/account?code=123456")
    error = error_for(httpx2.Response(301, request=request, headers={"Location": "/login?x=1"}))
    assert isinstance(error, RedirectError)
    assert error.location == f"{URL}/login?…"


# -- the CLI, against a server that redirects everything ------------------------------------------


class Server:
    """Answers every request with ``status`` (a redirect unless changed)."""

    def __init__(self) -> None:
        self.status = 302
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        self.paths.append(request.url.path)
        headers = {"Location": ELSEWHERE} if 300 <= self.status < 400 else {}
        await Response(status_code=self.status, headers=headers)(scope, receive, send)


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def url(server: Server) -> Iterator[str]:
    with serve_asgi(server) as base:
        yield base


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input)


def stored_token(config_dir: Path, url: str) -> str | None:
    return TokenStore(config_dir).load(url)


def test_logout_keeps_the_token_when_the_server_redirects(
    server: Server, url: str, config_dir: Path
) -> None:
    """Before: the token was deleted, "Logged out" said, exit 0, and it still worked."""
    TokenStore(config_dir).save(url, TOKEN)
    result = run("--url", url, "logout")
    assert result.exit_code == 1, result.stderr
    assert "redirected to https://sso.example.com/login" in result.stderr
    assert "still stored here" in result.stderr
    assert "Logged out" not in result.stderr
    assert "secret-in-query" not in result.output
    assert stored_token(config_dir, url) == TOKEN
    assert server.paths == ["/api/logout"]


def test_logout_keeps_the_token_when_the_server_fails(
    server: Server, url: str, config_dir: Path
) -> None:
    TokenStore(config_dir).save(url, TOKEN)
    server.status = 500
    assert run("--url", url, "logout").exit_code == 7
    assert stored_token(config_dir, url) == TOKEN


@pytest.mark.parametrize("status", [204, 401])
def test_logout_forgets_the_token_once_the_server_confirms_or_refuses_it(
    server: Server, url: str, config_dir: Path, status: int
) -> None:
    """401: the token no longer works, so nothing is left to revoke."""
    TokenStore(config_dir).save(url, TOKEN)
    server.status = status
    result = run("--url", url, "logout")
    assert result.exit_code == 0, result.stderr
    assert "Logged out" in result.stderr
    assert stored_token(config_dir, url) is None


def test_login_answered_with_a_redirect_exits_1(url: str, config_dir: Path) -> None:
    """Before: "error: 302 Found", and exit 0."""
    result = run("--url", url, "login", "-u", "alice", "--password-stdin", input="pw\n")
    assert result.exit_code == 1, result.stderr
    assert "redirected to https://sso.example.com/login" in result.stderr
    assert stored_token(config_dir, url) is None


def test_call_answered_with_a_redirect_exits_1(
    url: str, config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHGATE_API_KEY", KEY)
    result = run("--url", url, "call", "DELETE", "/api/api-keys/x")
    assert result.exit_code == 1, result.stderr
    assert "302" in result.stderr
