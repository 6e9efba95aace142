"""The auth flows, driven by hand: no client, no transport, no network."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Generator
from typing import Any

import httpx2
import pytest

from authgate.client import (
    AuthenticationError,
    LockedError,
    PasswordCredentials,
    SecondFactorRejected,
    SecondFactorRequired,
    UnexpectedResponseError,
    token_expiry,
)
from authgate.client._auth import HeaderAuth, LoginAuth, auth_for
from authgate.client._config import ApiKeyCredentials, TokenCredentials

BASE = "https://auth.example.com/prefix"
LOGIN_URL = "https://auth.example.com/prefix/api/authenticate"
VERIFY_URL = "https://auth.example.com/prefix/api/tfa/verify-code"
NOW = 1_900_000_000.0

Flow = Generator[httpx2.Request, httpx2.Response, Any]


def jwt(exp: float | None, **claims: Any) -> str:
    """An unsigned token with the given ``exp``: the client never verifies signatures."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    payload = {"sub": "alice", **claims}
    if exp is not None:
        payload["exp"] = exp
    return f"{part({'alg': 'ES256'})}.{part(payload)}.c2lnbmF0dXJl"


def answer(request: httpx2.Request, status: int = 200, **kwargs: Any) -> httpx2.Response:
    return httpx2.Response(status, request=request, **kwargs)


def login_answer(request: httpx2.Request, token: str, **extra: Any) -> httpx2.Response:
    return answer(request, json={"id_token": token, "authenticated": True, **extra})


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def login_auth(clock: Clock | None = None, **options: Any) -> LoginAuth:
    return LoginAuth(
        PasswordCredentials("alice", "correct horse battery"),
        base_url=BASE,
        clock=clock or Clock(),
        **options,
    )


def api_request() -> httpx2.Request:
    return httpx2.Request("GET", f"{BASE}/api/account")


def start(auth: LoginAuth, request: httpx2.Request) -> tuple[Flow, httpx2.Request]:
    flow = auth.auth_flow(request)
    return flow, next(flow)


def finish(flow: Flow, response: httpx2.Response) -> None:
    with pytest.raises(StopIteration):
        flow.send(response)


# -- login before the first request --------------------------------------------------------


def test_first_request_logs_in_then_sends_the_token_as_bearer() -> None:
    """The first request is preceded by POST /api/authenticate with the credentials."""
    auth = login_auth()
    request = api_request()
    flow, login = start(auth, request)
    assert (login.method, str(login.url)) == ("POST", LOGIN_URL)
    assert json.loads(login.content) == {
        "username": "alice",
        "password": "correct horse battery",
        "rememberMe": False,
    }
    token = jwt(NOW + 3600)
    sent = flow.send(login_answer(login, token))
    assert sent is request
    assert sent.headers["Authorization"] == f"Bearer {token}"
    finish(flow, answer(sent))


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"id_token": "T", "authenticated": True}, {}),  # UTMStack v10
        ({"success": True, "token": "T", "authenticated": True}, {}),  # v11
        ({"authenticated": True}, {"Authorization": "Bearer T"}),  # only the header
    ],
    ids=["v10-id_token", "v11-token", "header"],
)
def test_token_is_read_from_every_login_shape(
    body: dict[str, Any], headers: dict[str, str]
) -> None:
    """The token comes from id_token (v10), token (v11) or the Authorization header."""
    auth = login_auth()
    flow, login = start(auth, api_request())
    sent = flow.send(answer(login, json=body, headers=headers))
    assert sent.headers["Authorization"] == "Bearer T"


def test_login_answer_without_token_is_unexpected() -> None:
    """A 200 login answer with no token anywhere raises UnexpectedResponseError."""
    auth = login_auth()
    flow, login = start(auth, api_request())
    with pytest.raises(UnexpectedResponseError, match="no token"):
        flow.send(answer(login, json={"authenticated": True}))


def test_refused_login_raises_the_mapped_error() -> None:
    """A 401 login raises AuthenticationError with the server's message."""
    auth = login_auth()
    flow, login = start(auth, api_request())
    refused = answer(login, 401, json={"code": "bad_credentials", "message": "Bad credentials"})
    with pytest.raises(AuthenticationError) as raised:
        flow.send(refused)
    assert raised.value.message == "Bad credentials"
    assert raised.value.code == "bad_credentials"
    assert auth.token is None


def test_blocked_login_raises_locked_error_with_retry_after() -> None:
    """A 423 login raises LockedError carrying Retry-After."""
    auth = login_auth()
    flow, login = start(auth, api_request())
    with pytest.raises(LockedError) as raised:
        flow.send(answer(login, 423, headers={"Retry-After": "120"}))
    assert raised.value.retry_after == 120


# -- the token is reused, renewed before exp, and once after a 401 -------------------------


def test_valid_token_is_reused_without_login() -> None:
    """A second request reuses the token: no login request."""
    auth = login_auth()
    token = jwt(NOW + 3600)
    flow, login = start(auth, api_request())
    finish(flow, answer(flow.send(login_answer(login, token))))

    second = api_request()
    flow, sent = start(auth, second)
    assert sent is second
    assert sent.headers["Authorization"] == f"Bearer {token}"
    finish(flow, answer(sent))


def test_token_about_to_expire_is_renewed_before_the_request() -> None:
    """Within the refresh margin of exp, the next request logs in first."""
    clock = Clock()
    auth = login_auth(clock, refresh_margin=30)
    flow, login = start(auth, api_request())
    finish(flow, answer(flow.send(login_answer(login, jwt(NOW + 3600)))))

    clock.now = NOW + 3600 - 29
    assert auth.needs_renewal()
    flow, renewal = start(auth, api_request())
    assert str(renewal.url) == LOGIN_URL
    new_token = jwt(clock.now + 3600)
    sent = flow.send(login_answer(renewal, new_token))
    assert sent.headers["Authorization"] == f"Bearer {new_token}"


def test_token_outside_the_margin_is_not_renewed() -> None:
    """Before the refresh margin, the token is still used as is."""
    clock = Clock()
    auth = login_auth(clock, refresh_margin=30)
    flow, login = start(auth, api_request())
    finish(flow, answer(flow.send(login_answer(login, jwt(NOW + 3600)))))
    clock.now = NOW + 3600 - 31
    assert not auth.needs_renewal()


def test_short_lived_token_is_renewed_half_way_at_most() -> None:
    """A margin longer than the token's lifetime is cut to half the lifetime."""
    clock = Clock()
    auth = login_auth(clock, refresh_margin=300)
    flow, login = start(auth, api_request())
    finish(flow, answer(flow.send(login_answer(login, jwt(NOW + 60)))))
    clock.now = NOW + 29
    assert not auth.needs_renewal()
    clock.now = NOW + 30
    assert auth.needs_renewal()


def test_already_past_exp_is_ignored_so_requests_do_not_each_log_in() -> None:
    """A token whose exp is already past by our clock (skew) is used until a 401."""
    auth = login_auth()
    flow, login = start(auth, api_request())
    finish(flow, answer(flow.send(login_answer(login, jwt(NOW - 10)))))
    assert not auth.needs_renewal()


def test_401_triggers_one_login_and_one_retry() -> None:
    """A 401 on a reused token: log in again, resend the request once with the new token."""
    auth = login_auth()
    flow, login = start(auth, api_request())
    finish(flow, answer(flow.send(login_answer(login, jwt(NOW + 3600, jti="old")))))

    request = api_request()
    flow, sent = start(auth, request)
    renewal = flow.send(answer(sent, 401, json={"code": "token_revoked"}))
    assert str(renewal.url) == LOGIN_URL
    new_token = jwt(NOW + 3600, jti="new")
    retried = flow.send(login_answer(renewal, new_token))
    assert retried is request
    assert retried.headers["Authorization"] == f"Bearer {new_token}"
    finish(flow, answer(retried, 401))  # a second 401 is returned, not retried again


def test_401_right_after_a_login_is_not_retried() -> None:
    """A 401 on a token just obtained ends the flow: one login per request, no loop."""
    auth = login_auth()
    flow, login = start(auth, api_request())
    sent = flow.send(login_answer(login, jwt(NOW + 3600)))
    finish(flow, answer(sent, 401))


def test_401_after_another_request_renewed_reuses_the_new_token() -> None:
    """If another request renewed the token meanwhile, the retry uses it without a login."""
    auth = login_auth()
    flow, login = start(auth, api_request())
    finish(flow, answer(flow.send(login_answer(login, jwt(NOW + 3600, jti="old")))))

    slow, slow_sent = start(auth, api_request())
    fast, fast_sent = start(auth, api_request())
    fast_renewal = fast.send(answer(fast_sent, 401))
    newest = jwt(NOW + 3600, jti="newest")
    finish(fast, answer(fast.send(login_answer(fast_renewal, newest))))

    retried = slow.send(answer(slow_sent, 401))
    assert retried.headers["Authorization"] == f"Bearer {newest}"


def test_other_error_statuses_are_not_retried() -> None:
    """403 and 404 end the flow with that answer."""
    auth = login_auth()
    flow, login = start(auth, api_request())
    sent = flow.send(login_answer(login, jwt(NOW + 3600)))
    finish(flow, answer(sent, 403))


# -- second factor -------------------------------------------------------------------------


def pre_verification(login: httpx2.Request) -> httpx2.Response:
    return answer(login, json={"success": True, "token": "PRE", "authenticated": False})


def test_second_factor_without_hook_raises_second_factor_required() -> None:
    """authenticated:false without a hook raises SecondFactorRequired, naming the fix."""
    auth = login_auth()
    flow, login = start(auth, api_request())
    with pytest.raises(SecondFactorRequired, match="second_factor"):
        flow.send(pre_verification(login))
    assert auth.token is None


def test_second_factor_code_is_sent_with_the_pre_verification_token() -> None:
    """The hook's code goes to /api/tfa/verify-code, as a text body (UTMStack v11's UI),
    with the pre-verification token."""
    auth = login_auth(second_factor=lambda: " 123456 ")
    request = api_request()
    flow, login = start(auth, request)
    verify = flow.send(pre_verification(login))
    assert (verify.method, str(verify.url)) == ("POST", VERIFY_URL)
    assert verify.headers["Authorization"] == "Bearer PRE"
    assert verify.content == b"123456"
    assert verify.headers["Content-Type"] == "text/plain"
    final = jwt(NOW + 3600)
    sent = flow.send(answer(verify, json={"token": final, "authenticated": True}))
    assert sent is request
    assert sent.headers["Authorization"] == f"Bearer {final}"


def test_wrong_second_factor_code_raises_second_factor_rejected() -> None:
    """UTMStack's 412 for a wrong code raises SecondFactorRejected with its header message."""
    auth = login_auth(second_factor=lambda: "000000")
    flow, login = start(auth, api_request())
    verify = flow.send(pre_verification(login))
    rejected = answer(verify, 412, headers={"X-UtmStack-error": "Invalid verification code"})
    with pytest.raises(SecondFactorRejected) as raised:
        flow.send(rejected)
    assert raised.value.message == "Invalid verification code"
    assert isinstance(raised.value, AuthenticationError)


# -- API keys and stored tokens ------------------------------------------------------------


def test_api_key_is_sent_as_bearer_by_default() -> None:
    """ApiKeyCredentials default: Authorization: Bearer <key>, no other request."""
    auth = auth_for(ApiKeyCredentials("agk_abc_secret"), base_url=BASE)
    request = api_request()
    flow = auth.auth_flow(request)
    sent = next(flow)
    assert sent.headers["Authorization"] == "Bearer agk_abc_secret"
    assert "Utm-Api-Key" not in sent.headers
    finish(flow, answer(sent, 401))  # a refused key is not retried


def test_api_key_can_go_in_utm_api_key_header() -> None:
    """header='utm-api-key' sends Utm-Api-Key and no Authorization header."""
    auth = auth_for(ApiKeyCredentials("k" * 43, header="utm-api-key"), base_url=BASE)
    sent = next(auth.auth_flow(api_request()))
    assert sent.headers["Utm-Api-Key"] == "k" * 43
    assert "Authorization" not in sent.headers


def test_stored_token_is_sent_as_bearer() -> None:
    """TokenCredentials send the token as a bearer token."""
    auth = auth_for(TokenCredentials("stored-token"), base_url=BASE)
    assert isinstance(auth, HeaderAuth)
    assert next(auth.auth_flow(api_request())).headers["Authorization"] == "Bearer stored-token"


# -- reading exp ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (jwt(1_900_000_000), 1_900_000_000.0),
        (jwt(1_900_000_000_000), 1_900_000_000.0),  # milliseconds
        (jwt(None), None),
        ("not-a-jwt", None),
        ("a.!!!.c", None),
        (jwt("soon"), None),  # type: ignore[arg-type]
        (f"a.{base64.urlsafe_b64encode(b'[1]').decode()}.c", None),
    ],
)
def test_token_expiry_reads_exp_without_verifying(token: str, expected: float | None) -> None:
    """exp is read from the payload; anything unreadable gives None."""
    assert token_expiry(token) == expected


def test_a_hook_that_uses_the_client_it_logs_in_is_refused_not_hung() -> None:
    """A second_factor hook sending a request through the same (sync) client would wait
    for the renewal lock its own login holds, for ever (the diff review): refused with
    a RuntimeError that says why."""
    outcome: list[BaseException | None] = []

    def hook() -> str:
        next(auth.sync_auth_flow(api_request()))  # the client's next request
        return "123456"

    auth = login_auth(second_factor=hook)

    def log_in() -> None:
        flow = auth.sync_auth_flow(api_request())
        login = next(flow)
        try:
            flow.send(pre_verification(login))
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome.append(error)
        else:
            outcome.append(None)

    thread = threading.Thread(target=log_in, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the login waited for itself"
    [error] = outcome
    assert isinstance(error, RuntimeError)
    assert "hook" in str(error)
