"""A request path with ``.`` or ``..`` segments, plain or percent-encoded, is refused before
anything is sent: resolved by httpx, a proxy or the server, it would take the client's
credentials outside the base URL's path prefix (``../../x`` from ``https://host/prefix``
reached ``https://host/x``)."""

from __future__ import annotations

import httpx2
import pytest
from typer.testing import CliRunner

from authgate.client import ApiKeyCredentials, Client, ClientConfig, ClientConfigError
from authgate.client._base_client import has_dot_segment
from authgate.client._cli import app

BASE = "https://auth.example.com/prefix"
KEY = "agk_0123456789ab_secretsecretsecret"

REFUSED = [
    "../../x",
    "/api/../../x",
    "./api/account",
    "api/.",
    "api/..",
    "%2e%2e/x",
    "%2E%2e/x",
    ".%2e/x",
    "api/%2e/x",
    "..%2fx",
    "..\\x",
    f"{BASE}/../admin",
    f"{BASE}/api/%2e%2e/%2e%2e/admin",
    "/api/..;/x",  # Tomcat and Spring drop ;params, then resolve the ".."
    "/api/.;jsessionid=1/x",
    "/api/%2e%2e;x/y",
    "/api/..%3bx/y",
]
ALLOWED = [
    "/api/account",
    "api/account",
    ".well-known/jwks.json",
    "api/users/a.b",
    "api/users/...",
    "api/x?next=../../y",
    "api/x#../y",
    f"{BASE}/api/account",
]


@pytest.mark.parametrize("path", REFUSED)
def test_dot_segments_are_refused_before_sending(path: str) -> None:
    sent: list[httpx2.Request] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(200, json={})

    config = ClientConfig(BASE, ApiKeyCredentials(KEY))
    with (
        Client(config, transport=httpx2.MockTransport(record)) as client,
        pytest.raises(ClientConfigError, match=r"'\.' or '\.\.' segment"),
    ):
        client.request("GET", path)
    assert sent == []


@pytest.mark.parametrize("login", ["..", "."])
def test_a_typed_helpers_argument_cannot_be_a_dot_segment(login: str) -> None:
    """``get_user("..")`` asked for ``api/users/..``, which is ``api/``."""
    config = ClientConfig(BASE, ApiKeyCredentials(KEY))
    with Client(config) as client, pytest.raises(ClientConfigError):
        client.get_user(login)


@pytest.mark.parametrize("path", ALLOWED)
def test_other_paths_are_not_dot_segments(path: str) -> None:
    assert not has_dot_segment(path)


def test_the_refusal_does_not_show_a_query() -> None:
    config = ClientConfig(BASE, ApiKeyCredentials(KEY))
    with Client(config) as client, pytest.raises(ClientConfigError) as raised:
        client.request("GET", "../x?token=secret-in-query")
    assert "secret-in-query" not in str(raised.value)


@pytest.mark.usefixtures("config_dir")
@pytest.mark.parametrize("path", ["../../x", "/api/%2e%2e/%2e%2e/x"])
def test_call_refuses_dot_segments_as_a_usage_error(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 2 before any connection (the server named here does not exist: exit 8 else)."""
    monkeypatch.setenv("AUTHGATE_API_KEY", KEY)
    result = CliRunner().invoke(app, ["--url", BASE, "call", "GET", path])
    assert result.exit_code == 2, result.stderr
    assert "'.' or '..' segment" in result.stderr
