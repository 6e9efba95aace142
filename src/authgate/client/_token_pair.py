"""UTMStack v12's token pairs as an httpx ``Auth`` flow.

:class:`TokenPairAuth` logs in at ``POST /api/v1/auth/login`` (or resumes a stored
refresh token), sends the access token, and renews it at ``POST /api/v1/auth/refresh``
shortly before its ``expires_at`` and once after a 401. Each refresh returns a new
refresh token and retires the old one; ``on_tokens`` hears of every new pair, so that
whoever stores the refresh token (``authgate-client``) keeps the live one.

A user with a second factor gets no pair from the login but ``tfa_required`` and a
short-lived ``pre_auth_token``: the ``second_factor`` hook (as for v10/v11 logins) gives
the code, sent with that token to ``POST /api/v1/auth/tfa/verify-code``, which answers
the pair.

Refreshing twice is worse than wasteful: presenting a retired refresh token is reuse,
and the server then ends the whole session. Renewals are serialised by the drivers this
class shares with :class:`~authgate.client._auth.LoginAuth` (see
``RenewedTokenAuth``): every request decides whether to renew, and renews, holding the
flow's lock, so a request that waited sees the renewal another one made meanwhile. The
pure flows below do no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from datetime import datetime
from typing import Any

import httpx2

from authgate.client._auth import (
    Clock,
    RenewedTokenAuth,
    SecondFactorHook,
    own_request,
    second_factor_code,
)
from authgate.client._config import RefreshTokenCredentials, V12Credentials
from authgate.client._exceptions import (
    SessionEndedError,
    UnexpectedResponseError,
    error_for,
    json_object,
    second_factor_rejected,
)
from authgate.client._models import TokenPair

__all__ = ["V12_LOGIN_PATH", "V12_LOGOUT_PATH", "V12_REFRESH_PATH", "TokenPairAuth"]

V12_LOGIN_PATH = "api/v1/auth/login"
V12_REFRESH_PATH = "api/v1/auth/refresh"
V12_LOGOUT_PATH = "api/v1/auth/logout"
V12_VERIFY_CODE_PATH = "api/v1/auth/tfa/verify-code"

TokensHook = Callable[[TokenPair], None]
"""Hears of every new token pair (login or refresh), e.g. to store the refresh token."""


class TokenPairAuth(RenewedTokenAuth):
    """v12: an access token from a login or a refresh, renewed with the refresh token."""

    def __init__(
        self,
        credentials: V12Credentials | RefreshTokenCredentials,
        *,
        base_url: httpx2.URL | str,
        clock: Clock = time.time,
        refresh_margin: float = 30.0,
        on_tokens: TokensHook | None = None,
        second_factor: SecondFactorHook | None = None,
        user_agent: str | None = None,
    ) -> None:
        super().__init__(clock=clock, refresh_margin=refresh_margin)
        base = httpx2.URL(str(base_url).rstrip("/") + "/")
        self._credentials = credentials
        self._second_factor = second_factor
        self._user_agent = user_agent
        self._login_url = base.join(V12_LOGIN_PATH)
        self._verify_code_url = base.join(V12_VERIFY_CODE_PATH)
        self._refresh_url = base.join(V12_REFRESH_PATH)
        self._logout_url = base.join(V12_LOGOUT_PATH)
        self._on_tokens = on_tokens
        self._refresh_token: str | None = None
        if isinstance(credentials, RefreshTokenCredentials):
            self._refresh_token = credentials.refresh_token
            if credentials.access_token:
                self._keep(credentials.access_token)

    def __repr__(self) -> str:
        return f"TokenPairAuth({self._credentials!r})"

    # -- pure flows -------------------------------------------------------------------------

    def _renewal_flow(self) -> Generator[httpx2.Request, httpx2.Response, TokenPair]:
        return self.renew_flow()

    def renew_flow(self) -> Generator[httpx2.Request, httpx2.Response, TokenPair]:
        """Refresh if there is a refresh token, else log in; a refused refresh falls back
        to a login when the password is known.

        Raises:
            SessionEndedError: the session ended and there is no password to log in.
            APIError: the login was refused.
        """
        if self._refresh_token is not None:
            body = {"refresh_token": self._refresh_token}
            response = yield own_request("POST", self._refresh_url, self._user_agent, json=body)
            if response.is_success:
                return self._remember(response)
            if response.status_code != 401:
                # A passing failure (5xx, 429, the network's): the refresh token is still
                # good, so the pair stays for the next call to try again.
                raise error_for(response)
            self._forget()
            if not isinstance(self._credentials, V12Credentials):
                raise SessionEndedError(
                    "the v12 session has ended (the server refused its refresh token): log in again"
                )
        return (yield from self.login_flow())

    def login_flow(self) -> Generator[httpx2.Request, httpx2.Response, TokenPair]:
        """Log in with the password; remembers and returns the pair."""
        credentials = self._credentials
        if not isinstance(credentials, V12Credentials):
            raise SessionEndedError("the v12 session has ended: log in again")
        body = {"login": credentials.login, "password": credentials.password}
        response = yield own_request("POST", self._login_url, self._user_agent, json=body)
        if not response.is_success:
            raise error_for(response)
        answer = json_object(response)
        if answer.get("tfa_required") is True:
            response = yield from self._second_factor_flow(credentials, answer, response)
        return self._remember(response)

    def _second_factor_flow(
        self, credentials: V12Credentials, answer: dict[str, Any], login: httpx2.Response
    ) -> Generator[httpx2.Request, httpx2.Response, httpx2.Response]:
        """The code for a login that asked for one; returns the answer holding the pair."""
        pre_auth_token = answer.get("pre_auth_token")
        if not isinstance(pre_auth_token, str) or not pre_auth_token:
            raise UnexpectedResponseError(
                "the login asks for a second factor but carries no pre_auth_token",
                response=login,
            )
        kind = answer.get("tfa_type")
        code = second_factor_code(
            self._second_factor, credentials.login, kind=kind if isinstance(kind, str) else None
        )
        body = {"pre_auth_token": pre_auth_token, "code": code}
        response = yield own_request("POST", self._verify_code_url, self._user_agent, json=body)
        if response.status_code == 401:
            raise second_factor_rejected(response)
        if not response.is_success:
            raise error_for(response)
        return response

    def logout_flow(self) -> Generator[httpx2.Request, httpx2.Response, None]:
        """End the session on the server (its access tokens stop working too) and forget
        the tokens here. The server answers 204 for unknown tokens too."""
        refresh_token = self._refresh_token
        self._forget()
        if refresh_token is None:
            return
        response = yield own_request(
            "POST", self._logout_url, self._user_agent, json={"refresh_token": refresh_token}
        )
        if not response.is_success:
            raise error_for(response)

    # -- helpers ----------------------------------------------------------------------------

    def _forget(self) -> None:
        self._token = None
        self._refresh_token = None
        self._renew_at = None

    def _remember(self, response: httpx2.Response) -> TokenPair:
        answer = json_object(response)
        access, refresh = answer.get("access_token"), answer.get("refresh_token")
        if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh):
            raise UnexpectedResponseError(
                "the answer carries no access and refresh token", response=response
            )
        self._refresh_token = refresh
        pair = TokenPair(
            access=self._keep(access),
            refresh_token=refresh,
            refresh_expires_at=_instant(answer.get("refresh_expires_at")),
        )
        if self._on_tokens is not None:
            self._on_tokens(pair)
        return pair


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
