"""Answers become exceptions, throttled answers are retried within bounds; offline."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from authgate.client import (
    APIError,
    ApiKeyCredentials,
    AsyncClient,
    AuthenticationError,
    AuthgateClientError,
    Client,
    ClientConfig,
    ClientConfigError,
    ConflictError,
    LockedError,
    NotFoundError,
    PasswordCredentials,
    PermissionDeniedError,
    RateLimitedError,
    RedirectError,
    RetryPolicy,
    ServerError,
    TransportError,
    UnexpectedResponseError,
    ValidationError,
)
from authgate.client._config import shown_request_url

URL = "https://auth.example.com"
KEY = ApiKeyCredentials("agk_0123456789ab_secretsecretsecret")

Handler = Callable[[httpx2.Request], httpx2.Response]


def client(handler: Handler, *, retry: RetryPolicy | None = None, **options: Any) -> Client:
    config = ClientConfig(URL, KEY, retry=retry or RetryPolicy())
    return Client(config, transport=httpx2.MockTransport(handler), **options)


def always(status: int, **kwargs: Any) -> Handler:
    return lambda request: httpx2.Response(status, **kwargs)


# -- the exception tree ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, ValidationError),
        (423, LockedError),
        (429, RateLimitedError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (405, APIError),
        (413, APIError),
    ],
)
def test_status_maps_to_its_exception(status: int, kind: type[APIError]) -> None:
    """Each error status raises its own exception class, all under APIError."""
    with client(always(status), retry=RetryPolicy.disabled()) as sdk, pytest.raises(kind) as raised:
        sdk.request("GET", "/api/anything")
    assert type(raised.value) is kind
    assert raised.value.status_code == status
    assert isinstance(raised.value, AuthgateClientError)


def test_json_message_wins_over_header_and_phrase() -> None:
    """The JSON message (and code) is used when the body has one."""
    body = {"status": 404, "code": "not_found", "message": "API key 7 not found"}
    handler = always(404, json=body, headers={"X-UtmStack-error": "other"})
    with client(handler) as sdk, pytest.raises(NotFoundError) as raised:
        sdk.get_api_key("7")
    assert raised.value.message == "API key 7 not found"
    assert raised.value.code == "not_found"
    assert str(raised.value) == "404: API key 7 not found"


def test_header_message_is_used_when_the_body_is_empty() -> None:
    """UTMStack's header-only errors: the message comes from X-UtmStack-error."""
    handler = always(409, headers={"X-UtmStack-error": "An API key with this name already exists."})
    with client(handler) as sdk, pytest.raises(ConflictError) as raised:
        sdk.request("POST", "/api/api-keys", json={"name": "x"})
    assert raised.value.message == "An API key with this name already exists."
    assert raised.value.code is None


def test_status_phrase_is_the_last_resort() -> None:
    """Without JSON message or header, the message is the status phrase."""
    spring = {"timestamp": "2025-04-16T16:26:35.664+00:00", "status": 403, "error": "Forbidden"}
    with client(always(403, json=spring)) as sdk, pytest.raises(PermissionDeniedError) as raised:
        sdk.request("GET", "/management/logs")
    assert raised.value.message == "Forbidden"


def test_validation_error_lists_field_errors() -> None:
    """fieldErrors become FieldError entries on ValidationError."""
    body = {
        "code": "validation_failed",
        "message": "Name is required.",
        "fieldErrors": [
            {"objectName": "body", "field": "name", "message": "Name is required."},
            {"objectName": "body", "field": "allowedIp[0]", "message": "Invalid IP address format"},
        ],
    }
    with client(always(422, json=body)) as sdk, pytest.raises(ValidationError) as raised:
        sdk.request("POST", "/api/api-keys", json={})
    fields = [(error.field, error.message) for error in raised.value.field_errors]
    assert fields == [("name", "Name is required."), ("allowedIp[0]", "Invalid IP address format")]


def test_success_with_a_body_that_is_not_json_is_unexpected() -> None:
    """A 200 HTML page where JSON is promised raises UnexpectedResponseError."""
    handler = always(200, text="<html>login page</html>", headers={"content-type": "text/html"})
    with client(handler) as sdk, pytest.raises(UnexpectedResponseError, match="text/html"):
        sdk.account()


def test_transport_failure_raises_transport_error() -> None:
    """A connection failure raises TransportError, chained to httpx2's exception."""

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    with client(refuse) as sdk, pytest.raises(TransportError) as raised:
        sdk.account()
    assert isinstance(raised.value.__cause__, httpx2.ConnectError)
    assert "GET https://auth.example.com/api/account" in str(raised.value)


def test_transport_errors_leave_out_the_query_and_user_info() -> None:
    """UTMStack v10's second step sends the one-time code in the query (GET
    /api/tfa/verifyCode?code=): a failure there names the path, never the code (it was
    the full URL), in the SDK's message and in httpx's own text it quotes."""
    code = "493817"

    def v10(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/api/authenticate":
            return httpx2.Response(200, json={"id_token": "pre", "authenticated": False})
        if request.url.path == "/api/tfa/verify-code":
            return httpx2.Response(404)
        raise httpx2.ReadTimeout(f"timed out reading {request.url}", request=request)

    config = ClientConfig(URL, PasswordCredentials("alice", "a-password"))
    with (
        Client(config, transport=httpx2.MockTransport(v10), second_factor=lambda: code) as sdk,
        pytest.raises(TransportError) as raised,
    ):
        sdk.login()
    message = str(raised.value)
    assert "GET https://auth.example.com/api/tfa/verifyCode?…" in message
    assert code not in message
    assert "code=" not in message


def test_requests_named_in_messages_lose_user_info_query_and_fragment() -> None:
    url = httpx2.URL("https://bob:pw@auth.example.com:8443/api/x?code=1&to=a@b.example#frag")
    assert shown_request_url(url) == "https://auth.example.com:8443/api/x?…"
    assert shown_request_url(httpx2.URL("https://h/api/y")) == "https://h/api/y"


def test_configuration_errors_are_outside_the_tree() -> None:
    """ClientConfigError is a ValueError, not an AuthgateClientError."""
    assert issubclass(ClientConfigError, ValueError)
    assert not issubclass(ClientConfigError, AuthgateClientError)


def test_credentials_never_go_to_another_host() -> None:
    """An absolute URL on another server is refused before anything is sent."""
    sent: list[httpx2.Request] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(200, json={})

    with client(record) as sdk, pytest.raises(ClientConfigError, match="another server"):
        sdk.request("GET", "https://evil.example.net/api/account")
    assert sent == []


def test_absolute_url_on_the_same_server_is_accepted() -> None:
    """An absolute URL under the base URL is sent, with credentials."""
    sent: list[httpx2.Request] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(200, json={"login": "x"})

    with client(record) as sdk:
        sdk.request("GET", f"{URL}/api/account")
    assert str(sent[0].url) == f"{URL}/api/account"
    assert sent[0].headers["Authorization"].startswith("Bearer agk_")


def test_paths_keep_the_base_url_prefix() -> None:
    """A base URL with a path prefix keeps it for every request."""
    sent: list[str] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        sent.append(str(request.url))
        return httpx2.Response(200, json={"login": "x"})

    config = ClientConfig(f"{URL}/utm/", KEY)
    with Client(config, transport=httpx2.MockTransport(record)) as sdk:
        sdk.account()
        sdk.request("GET", "/api/ping")
    assert sent == [f"{URL}/utm/api/account", f"{URL}/utm/api/ping"]


# -- retries ---------------------------------------------------------------------------------


class Script:
    """Answers in order, then 200; records requests and waits."""

    def __init__(self, *answers: httpx2.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx2.Request] = []
        self.waits: list[float] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.answers.pop(0) if self.answers else httpx2.Response(200, json={"login": "a"})

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def throttled(status: int = 429, retry_after: str | None = "2") -> httpx2.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx2.Response(status, headers=headers, json={"message": "slow down"})


def test_get_is_retried_after_retry_after() -> None:
    """429 with Retry-After on a GET: wait that long, try again, succeed."""
    script = Script(throttled(429, "2"), throttled(503, "1"))
    with client(script, sleep=script.sleep) as sdk:
        assert sdk.account().login == "a"
    assert script.waits == [2.0, 1.0]
    assert len(script.requests) == 3


def test_retries_are_bounded() -> None:
    """After `attempts` retries the last error is raised."""
    script = Script(*(throttled() for _ in range(10)))
    retry = RetryPolicy(attempts=2)
    with client(script, retry=retry, sleep=script.sleep) as sdk, pytest.raises(RateLimitedError):
        sdk.account()
    assert len(script.requests) == 3
    assert script.waits == [2.0, 2.0]


def test_backoff_doubles_without_retry_after() -> None:
    """Without Retry-After the waits double from `backoff`."""
    script = Script(throttled(503, None), throttled(503, None), throttled(503, None))
    retry = RetryPolicy(attempts=3, backoff=0.25)
    with client(script, retry=retry, sleep=script.sleep) as sdk:
        sdk.account()
    assert script.waits == [0.25, 0.5, 1.0]


def test_long_retry_after_is_raised_at_once() -> None:
    """A Retry-After beyond max_delay is not waited for: the error carries it."""
    script = Script(throttled(423, "600"))
    with client(script, sleep=script.sleep) as sdk, pytest.raises(LockedError) as raised:
        sdk.account()
    assert raised.value.retry_after == 600
    assert script.waits == []


def test_post_is_not_retried_by_default() -> None:
    """Non-idempotent calls are not retried unless the policy says so."""
    script = Script(throttled())
    with client(script, sleep=script.sleep) as sdk, pytest.raises(RateLimitedError):
        sdk.request("POST", "/api/anything", json={})
    assert len(script.requests) == 1


def test_post_is_retried_when_configured() -> None:
    """retry_non_idempotent=True retries POST too."""
    script = Script(throttled())
    retry = RetryPolicy(retry_non_idempotent=True)
    with client(script, retry=retry, sleep=script.sleep) as sdk:
        sdk.request("POST", "/api/anything", json={"a": 1})
    assert len(script.requests) == 2
    assert json.loads(script.requests[1].content) == {"a": 1}


def test_other_errors_are_not_retried() -> None:
    """A 404 or 500 is raised at once."""
    script = Script(httpx2.Response(500))
    with client(script, sleep=script.sleep) as sdk, pytest.raises(ServerError):
        sdk.account()
    assert len(script.requests) == 1


def test_retry_after_as_http_date_is_understood() -> None:
    """Retry-After may be an HTTP date; a past date means no wait."""
    script = Script(throttled(429, "Wed, 21 Oct 2015 07:28:00 GMT"))
    with client(script, sleep=script.sleep) as sdk:
        sdk.account()
    assert script.waits == [0.0]


def test_invalid_retry_policy_is_refused() -> None:
    """A negative number of attempts is a configuration error."""
    with pytest.raises(ClientConfigError):
        RetryPolicy(attempts=-1)


async def test_async_client_retries_and_maps_errors_alike() -> None:
    """AsyncClient retries a 429 with its sleep and raises the same exceptions."""
    script = Script(throttled(429, "3"), httpx2.Response(404, json={"message": "gone"}))
    transport = httpx2.MockTransport(script)
    async with AsyncClient(
        ClientConfig(URL, KEY), transport=transport, sleep=script.async_sleep
    ) as sdk:
        with pytest.raises(NotFoundError, match="gone"):
            await sdk.account()
    assert script.waits == [3.0]


# -- timeouts and TLS settings reach httpx ---------------------------------------------------


def test_timeout_is_applied_to_requests() -> None:
    """The configured timeout is the request's connect/read/write/pool timeout."""
    seen: list[dict[str, float]] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.extensions["timeout"])
        return httpx2.Response(200, json={"login": "a"})

    config = ClientConfig(URL, KEY, timeout=2.5)
    with Client(config, transport=httpx2.MockTransport(record)) as sdk:
        sdk.account()
    assert seen == [{"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}]


def test_ca_bundle_with_verification_off_is_refused() -> None:
    """ca_bundle and verify=False contradict each other."""
    with pytest.raises(ClientConfigError):
        ClientConfig(URL, KEY, verify=False, ca_bundle=Path("ca.pem"))


def test_a_missing_ca_bundle_is_a_configuration_error(tmp_path: Path) -> None:
    """An unreadable ca_bundle raises ClientConfigError naming it, not an OSError."""
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(ClientConfigError, match=r"missing-ca\.pem"):
        Client(ClientConfig("https://a.example", KEY, ca_bundle=missing))


def test_redirects_are_not_followed() -> None:
    """A redirect is not followed (credentials stay on the server), and raised: what was
    asked was not done (``tests/client/test_redirects.py``)."""
    sent: list[str] = []

    def redirect(request: httpx2.Request) -> httpx2.Response:
        sent.append(str(request.url))
        return httpx2.Response(302, headers={"Location": "https://elsewhere.example.net/"})

    with client(redirect) as sdk, pytest.raises(RedirectError) as raised:
        sdk.request("GET", "/api/account")
    assert raised.value.status_code == 302
    assert sent == [f"{URL}/api/account"]
