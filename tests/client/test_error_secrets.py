"""An exception keeps no credential: the response it carries (``.response``) holds a
request without its body (a login's password, a refresh token, a second-factor code)
and with its credential headers masked (an API key, a token)."""

from __future__ import annotations

import json

import httpx2
import pytest

from authgate.client import (
    APIError,
    ApiKeyCredentials,
    AuthenticationError,
    Client,
    ClientConfig,
    PasswordCredentials,
    RefreshTokenCredentials,
    SecondFactorRejected,
    ServerError,
    UnexpectedResponseError,
    V12Credentials,
)

URL = "https://auth.example.com"
PASSWORD = "correct horse battery staple"
KEY = "agk_0123456789ab_secretsecretsecret"
REFRESH = "refresh-token-secret-0123456789"
CODE = "654321"


def leaks(error: APIError | UnexpectedResponseError, *secrets: str) -> list[str]:
    request = error.response.request
    seen = request.content.decode() + json.dumps(dict(request.headers)) + str(request.url)
    return [secret for secret in secrets if secret in seen]


def test_a_refused_login_keeps_no_password() -> None:
    refuse = httpx2.MockTransport(
        lambda request: httpx2.Response(401, json={"message": "Bad credentials"})
    )
    config = ClientConfig(URL, PasswordCredentials("alice", PASSWORD))
    with Client(config, transport=refuse) as sdk, pytest.raises(AuthenticationError) as raised:
        sdk.account()
    assert raised.value.response.request.url.path == "/api/authenticate"
    assert leaks(raised.value, PASSWORD) == []


def test_a_refused_v12_login_keeps_no_password() -> None:
    refuse = httpx2.MockTransport(
        lambda request: httpx2.Response(401, json={"error": "invalid credentials"})
    )
    config = ClientConfig(URL, V12Credentials("alice", PASSWORD))
    with Client(config, transport=refuse) as sdk, pytest.raises(AuthenticationError) as raised:
        sdk.login()
    assert leaks(raised.value, PASSWORD) == []


def test_a_failed_refresh_keeps_no_refresh_token() -> None:
    fail = httpx2.MockTransport(lambda request: httpx2.Response(500, json={"error": "down"}))
    config = ClientConfig(URL, RefreshTokenCredentials(REFRESH))
    with Client(config, transport=fail) as sdk, pytest.raises(ServerError) as raised:
        sdk.me()
    assert raised.value.response.request.url.path == "/api/v1/auth/refresh"
    assert leaks(raised.value, REFRESH) == []


def test_a_rejected_code_keeps_no_code_nor_token() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/api/authenticate":
            return httpx2.Response(200, json={"id_token": "pre-token-1", "authenticated": False})
        return httpx2.Response(412, headers={"X-UtmStack-error": "Invalid code"})

    config = ClientConfig(URL, PasswordCredentials("alice", PASSWORD))
    with (
        Client(config, transport=httpx2.MockTransport(answer), second_factor=lambda: CODE) as sdk,
        pytest.raises(SecondFactorRejected) as raised,
    ):
        sdk.account()
    assert leaks(raised.value, CODE, "pre-token-1", PASSWORD) == []


def test_an_api_error_keeps_no_api_key() -> None:
    forbid = httpx2.MockTransport(lambda request: httpx2.Response(403, json={"message": "no"}))
    with (
        Client(ClientConfig(URL, ApiKeyCredentials(KEY)), transport=forbid) as sdk,
        pytest.raises(APIError) as raised,
    ):
        sdk.request("POST", "/api/things", json={"password": PASSWORD})
    assert leaks(raised.value, KEY, PASSWORD) == []
    assert raised.value.response.request.method == "POST"
    assert raised.value.response.request.url == httpx2.URL(f"{URL}/api/things")


def test_an_unexpected_answer_keeps_no_password() -> None:
    empty = httpx2.MockTransport(lambda request: httpx2.Response(200, json={}))
    config = ClientConfig(URL, PasswordCredentials("alice", PASSWORD))
    with Client(config, transport=empty) as sdk, pytest.raises(UnexpectedResponseError) as raised:
        sdk.login()
    assert leaks(raised.value, PASSWORD) == []
