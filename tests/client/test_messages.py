"""The SDK's messages say what happened: a body that is not valid JSON, a network error
without a message of its own, a client used after it was closed."""

from __future__ import annotations

import anyio
import httpx2
import pytest

from authgate.client import (
    ApiKeyCredentials,
    AsyncClient,
    AuthgateClientError,
    Client,
    ClientClosedError,
    ClientConfig,
    PasswordCredentials,
    TransportError,
    UnexpectedResponseError,
)

URL = "https://auth.example.com/x"
CONFIG = ClientConfig(URL, ApiKeyCredentials("agk_0123456789ab_secretsecretsecret"))


def client(handler: httpx2.MockTransport) -> Client:
    return Client(CONFIG, transport=handler)


def test_invalid_json_with_a_json_content_type_says_so() -> None:
    """Not "expected JSON, got application/json": the body is not valid JSON."""
    broken = httpx2.MockTransport(
        lambda request: httpx2.Response(
            200, content=b'{"login": ', headers={"Content-Type": "application/json"}
        )
    )
    with client(broken) as sdk, pytest.raises(UnexpectedResponseError) as raised:
        sdk.account()
    message = str(raised.value)
    assert "not valid JSON" in message
    assert "/x/api/account" in message


def test_another_content_type_is_named() -> None:
    html = httpx2.MockTransport(
        lambda request: httpx2.Response(
            200, content=b"<html></html>", headers={"Content-Type": "text/html"}
        )
    )
    with client(html) as sdk, pytest.raises(UnexpectedResponseError, match="got text/html"):
        sdk.account()


def test_a_network_error_without_a_message_names_its_cause() -> None:
    """httpx's ReadError for a broken connection under anyio has an empty message: the
    TransportError names the underlying error instead of ending with ": "."""

    def broken(request: httpx2.Request) -> httpx2.Response:
        try:
            raise anyio.BrokenResourceError
        except anyio.BrokenResourceError as cause:
            raise httpx2.ReadError("", request=request) from cause

    with client(httpx2.MockTransport(broken)) as sdk, pytest.raises(TransportError) as raised:
        sdk.account()
    message = str(raised.value)
    assert not message.rstrip().endswith(":"), message
    assert "BrokenResourceError" in message
    assert message.startswith(f"ReadError calling GET {URL}/api/account: ")


def test_a_network_error_with_a_message_keeps_it() -> None:
    def refused(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)

    with client(httpx2.MockTransport(refused)) as sdk, pytest.raises(TransportError) as raised:
        sdk.account()
    assert str(raised.value).endswith(": [Errno 111] Connection refused")


def ok(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json={"login": "alice"})


def test_a_closed_client_raises_client_closed_error() -> None:
    """A named error saying what to do, still a RuntimeError (misuse, like httpx's, is
    kept outside AuthgateClientError: catching that never hides a bug)."""
    sdk = client(httpx2.MockTransport(ok))
    sdk.close()
    with pytest.raises(ClientClosedError, match="closed") as raised:
        sdk.account()
    assert isinstance(raised.value, RuntimeError)
    assert not isinstance(raised.value, AuthgateClientError)
    with_password = Client(
        ClientConfig(URL, PasswordCredentials("alice", "pw")), transport=httpx2.MockTransport(ok)
    )
    with_password.close()
    with pytest.raises(ClientClosedError):
        with_password.login()  # the flows' own requests (logins, logout)


async def test_a_closed_async_client_raises_client_closed_error() -> None:
    sdk = AsyncClient(CONFIG, transport=httpx2.MockTransport(ok))
    await sdk.aclose()
    with pytest.raises(ClientClosedError, match="closed"):
        await sdk.account()
