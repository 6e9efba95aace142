"""How requests carry credentials, as httpx ``Auth`` flows.

A flow is a generator: it yields requests and is sent their responses. It does no I/O
itself, so one flow serves ``Client`` and ``AsyncClient``, and tests drive it by hand.

* :class:`HeaderAuth` — an API key (``Authorization: Bearer`` or ``Utm-Api-Key``) or a
  stored token: one header on every request.
* :class:`LoginAuth` — method 1: ``POST /api/authenticate`` before the first request,
  again shortly before the token's ``exp`` (read without verifying the signature: the
  client only needs to know when to renew, the server does the verifying), and once
  after a 401 (the token was revoked, or the clocks disagree). A request never causes
  more than one login, so a server that keeps refusing cannot make the client loop.
  A login answered ``authenticated: false`` needs a second factor: the ``second_factor``
  hook gives the code, sent with the pre-verification token to ``POST
  /api/tfa/verify-code`` as a text body (UTMStack v11, authgate), or, when a server has
  no such route (404/405: UTMStack v10), to ``GET /api/tfa/verifyCode?code=``.

One client may serve concurrent requests, and they share one renewal: each decides
whether to renew, and renews, holding the flow's lock (a thread lock for ``Client``, an
anyio lock for ``AsyncClient``), so a request that waited finds the token another one
obtained meanwhile. A login each would trip the server's login limits (429 "Too many
logins from this address at once") for a busy client, and two v12 refreshes with one
refresh token would be reuse. The pure flows do no I/O; only the two drivers lock.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx2

from authgate.client._config import (
    ApiKeyCredentials,
    PasswordCredentials,
    TokenCredentials,
    mask_secret,
)
from authgate.client._exceptions import (
    SecondFactorRequired,
    UnexpectedResponseError,
    error_for,
    json_object,
    second_factor_rejected,
)
from authgate.client._models import Token

__all__ = [
    "LOGIN_PATH",
    "VERIFY_CODE_PATH",
    "VERIFY_CODE_V10_PATH",
    "Clock",
    "HeaderAuth",
    "LoginAuth",
    "RenewedTokenAuth",
    "SecondFactorHook",
    "auth_for",
    "own_request",
    "second_factor_code",
    "timed_like",
    "token_expiry",
]

LOGIN_PATH = "api/authenticate"
VERIFY_CODE_PATH = "api/tfa/verify-code"
VERIFY_CODE_V10_PATH = "api/tfa/verifyCode"

Clock = Callable[[], float]
SecondFactorHook = Callable[[], str]
"""Returns the second-factor code (TOTP or e-mailed), e.g. by prompting the user."""


class HeaderAuth(httpx2.Auth):
    """One fixed header on every request; nothing to renew."""

    def __init__(self, name: str, value: str) -> None:
        self._name = name
        self._value = value

    def __repr__(self) -> str:
        return f"HeaderAuth({self._name!r}, {mask_secret(self._value.removeprefix('Bearer '))!r})"

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers[self._name] = self._value
        yield request


class RenewedTokenAuth(httpx2.Auth):
    """A token the flow obtains itself and sends as ``Authorization: Bearer``, renewed
    shortly before its ``exp`` and once after a 401, one renewal at a time: what
    :class:`LoginAuth` and v12's ``TokenPairAuth`` share. A subclass says how a token is
    obtained (:meth:`_renewal_flow`, which keeps it with :meth:`_keep`).
    """

    def __init__(self, *, clock: Clock, refresh_margin: float) -> None:
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._token: Token | None = None
        self._renew_at: float | None = None
        self._thread_lock = threading.Lock()
        self._lock_owner: int | None = None  # the thread holding _thread_lock
        self._task_lock: anyio.Lock | None = None

    @property
    def token(self) -> Token | None:
        """The current (access) token, if any."""
        return self._token

    def needs_renewal(self) -> bool:
        """No token yet, or it expires within the refresh margin."""
        if self._token is None:
            return True
        return self._renew_at is not None and self._clock() >= self._renew_at

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        renewed_now = False
        if self.needs_renewal():
            yield from self._renewal_flow()
            renewed_now = True
        used = self._bearer(request)
        response = yield request
        if response.status_code != 401 or renewed_now:
            return
        if self._token is used:  # else another request renewed it meanwhile
            yield from self._renewal_flow()
        self._bearer(request)
        yield request

    # -- drivers: serialise renewals, read only the answers the flow reads -------------------
    # (httpx's default drivers read every response body, and would load a streamed
    # download into memory.)

    def sync_auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        # Held from the decision to renew until the request goes out: deciding without
        # it lets the renewal time pass between a check here and the flow's own, and
        # the flow would then renew unlocked beside another request's renewal.
        self._lock_thread()
        locked = True
        try:
            flow = self.auth_flow(request)
            outgoing = next(flow)
            while True:
                if outgoing is request and locked:
                    self._unlock_thread()
                    locked = False
                response = yield timed_like(outgoing, request)
                if outgoing is not request:
                    response.read()
                elif response.status_code == 401:
                    self._lock_thread()
                    locked = True
                try:
                    outgoing = flow.send(response)
                except StopIteration:
                    return
        finally:
            if locked:
                self._unlock_thread()

    def _lock_thread(self) -> None:
        """Take the renewal lock; a hook (``second_factor``, ``on_tokens``) that calls the
        client it authenticates would wait for itself for ever: refused instead (the
        asynchronous client's lock refuses it too)."""
        me = threading.get_ident()
        if self._lock_owner == me:
            raise RuntimeError(
                "a second_factor or on_tokens hook may not send requests through the "
                "client it is logging in; use another client"
            )
        self._thread_lock.acquire()
        self._lock_owner = me

    def _unlock_thread(self) -> None:
        self._lock_owner = None
        self._thread_lock.release()

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if self._task_lock is None:
            self._task_lock = anyio.Lock()
        lock = self._task_lock
        await lock.acquire()  # as in sync_auth_flow: the decision to renew is taken locked
        locked = True
        try:
            flow = self.auth_flow(request)
            outgoing = next(flow)
            while True:
                if outgoing is request and locked:
                    lock.release()
                    locked = False
                response = yield timed_like(outgoing, request)
                if outgoing is not request:
                    await response.aread()
                elif response.status_code == 401:
                    await lock.acquire()
                    locked = True
                try:
                    outgoing = flow.send(response)
                except StopIteration:
                    return
        finally:
            if locked:
                lock.release()

    def _renewal_flow(self) -> Generator[httpx2.Request, httpx2.Response, object]:
        """Obtains a new token and keeps it (:meth:`_keep`), or raises."""
        raise NotImplementedError

    def _bearer(self, request: httpx2.Request) -> Token:
        token = self._token
        assert token is not None  # set by _renewal_flow, which raises on failure
        request.headers["Authorization"] = f"Bearer {token.value}"
        return token

    def _keep(self, value: str) -> Token:
        """Makes ``value`` the current token, to be renewed before its ``exp``."""
        now = self._clock()
        expiry = token_expiry(value)
        self._renew_at = None
        if expiry is not None and expiry > now:
            # Renew at most half-way through the lifetime, so a short-lived token is not
            # renewed before every request. An already-past exp (the clocks disagree) is
            # ignored: the server decides, and a 401 triggers the one renewal.
            self._renew_at = expiry - min(self._refresh_margin, (expiry - now) / 2)
        expires_at = datetime.fromtimestamp(expiry, UTC) if expiry is not None else None
        self._token = Token(value=value, expires_at=expires_at)
        return self._token


class LoginAuth(RenewedTokenAuth):
    """Method 1: a token from ``POST /api/authenticate``, renewed when needed."""

    def __init__(
        self,
        credentials: PasswordCredentials,
        *,
        base_url: httpx2.URL | str,
        second_factor: SecondFactorHook | None = None,
        clock: Clock = time.time,
        refresh_margin: float = 30.0,
        user_agent: str | None = None,
    ) -> None:
        super().__init__(clock=clock, refresh_margin=refresh_margin)
        base = httpx2.URL(str(base_url).rstrip("/") + "/")
        self._credentials = credentials
        self._user_agent = user_agent
        self._login_url = base.join(LOGIN_PATH)
        self._verify_url = base.join(VERIFY_CODE_PATH)
        self._verify_v10_url = base.join(VERIFY_CODE_V10_PATH)
        self._second_factor = second_factor

    def __repr__(self) -> str:
        return f"LoginAuth({self._credentials!r})"

    # -- flows ------------------------------------------------------------------------------

    def _renewal_flow(self) -> Generator[httpx2.Request, httpx2.Response, Token]:
        return self.login_flow()

    def login_flow(self) -> Generator[httpx2.Request, httpx2.Response, Token]:
        """Log in (and pass the second factor); remembers and returns the token.

        Raises:
            APIError: the login was refused (401, 423, 429...).
            SecondFactorRequired: a second factor is needed and no hook was given.
            SecondFactorRejected: the code was refused.
        """
        credentials = self._credentials
        body = {
            "username": credentials.username,
            "password": credentials.password,
            "rememberMe": credentials.remember_me,
        }
        response = yield own_request("POST", self._login_url, self._user_agent, json=body)
        if not response.is_success:
            raise error_for(response)
        answer = json_object(response)
        value = _token_in(response, answer)
        if answer.get("authenticated") is False:
            value = yield from self._second_factor_flow(value)
        return self._keep(value)

    def _second_factor_flow(
        self, pre_verification_token: str
    ) -> Generator[httpx2.Request, httpx2.Response, str]:
        code = second_factor_code(self._second_factor, self._credentials.username)
        authorization = {"Authorization": f"Bearer {pre_verification_token}"}
        response = yield own_request(
            "POST",
            self._verify_url,
            self._user_agent,
            content=code.encode("utf-8"),
            headers={**authorization, "Content-Type": "text/plain"},
        )
        if response.status_code in (404, 405):  # UTMStack v10
            response = yield own_request(
                "GET",
                self._verify_v10_url,
                self._user_agent,
                params={"code": code},
                headers=authorization,
            )
            if response.status_code == 401 and "x-utmstack-error" in response.headers:
                raise second_factor_rejected(response)
        if response.status_code == 412:
            raise second_factor_rejected(response)
        if not response.is_success:
            raise error_for(response)
        answer = json_object(response)
        if answer.get("authenticated") is False:
            raise UnexpectedResponseError(
                "the server accepted the code but still reports authenticated: false",
                response=response,
            )
        return _token_in(response, answer)


def auth_for(
    credentials: ApiKeyCredentials | PasswordCredentials | TokenCredentials,
    *,
    base_url: httpx2.URL | str,
    second_factor: SecondFactorHook | None = None,
    clock: Clock = time.time,
    refresh_margin: float = 30.0,
    user_agent: str | None = None,
) -> httpx2.Auth:
    """The auth flow for a kind of credentials (v12's token pairs: ``TokenPairAuth``)."""
    if isinstance(credentials, ApiKeyCredentials):
        if credentials.header == "utm-api-key":
            return HeaderAuth("Utm-Api-Key", credentials.key)
        return HeaderAuth("Authorization", f"Bearer {credentials.key}")
    if isinstance(credentials, TokenCredentials):
        return HeaderAuth("Authorization", f"Bearer {credentials.token}")
    return LoginAuth(
        credentials,
        base_url=base_url,
        second_factor=second_factor,
        clock=clock,
        refresh_margin=refresh_margin,
        user_agent=user_agent,
    )


def own_request(
    method: str,
    url: httpx2.URL,
    user_agent: str | None,
    *,
    headers: Mapping[str, str] | None = None,
    **options: Any,
) -> httpx2.Request:
    """A request an auth flow makes itself (login, refresh...), with the client's
    User-Agent: httpx adds the client's headers only to the requests it builds, and the
    server shows the User-Agent in the sessions a login starts."""
    own_headers = dict(headers or {})
    if user_agent is not None:
        own_headers["User-Agent"] = user_agent
    return httpx2.Request(method, url, headers=own_headers, **options)


def timed_like(outgoing: httpx2.Request, request: httpx2.Request) -> httpx2.Request:
    """``outgoing`` (a login, refresh or second-factor step) with the timeout of the
    ``request`` it authenticates, the client's: httpx gives it only to the request it
    was asked to send, and one an auth flow yields would wait forever for a server that
    accepts the connection and never answers (holding the client's lock meanwhile)."""
    timeout = request.extensions.get("timeout")
    if outgoing is not request and timeout is not None and "timeout" not in outgoing.extensions:
        outgoing.extensions = {**outgoing.extensions, "timeout": timeout}
    return outgoing


def second_factor_code(
    hook: SecondFactorHook | None, login: str, *, kind: str | None = None
) -> str:
    """The code the hook gives; without a hook, ``SecondFactorRequired`` naming the login
    (and the kind of factor, when the server said which)."""
    if hook is None:
        factor = f" ({kind})" if kind is not None else ""
        raise SecondFactorRequired(
            f"the server requires a second factor{factor} for {login!r}:"
            " give the client a second_factor hook that returns the code"
        )
    return hook().strip()


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT as a Unix time, unverified; None if unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    return float(exp) / 1000 if exp > 100_000_000_000 else float(exp)  # seconds, or ms


def _token_in(response: httpx2.Response, answer: dict[str, Any]) -> str:
    """The token: ``id_token`` (v10), ``token`` (v11), or the ``Authorization`` header."""
    for name in ("id_token", "token"):
        value = answer.get(name)
        if isinstance(value, str) and value:
            return value
    header = response.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    raise UnexpectedResponseError("the login answer carries no token", response=response)
