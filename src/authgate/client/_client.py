"""``Client``: the blocking client (its ``async`` twin is in ``_async_client``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx2

from authgate.client import _endpoints as api
from authgate.client._auth import Clock, SecondFactorHook
from authgate.client._base_client import Params, _BaseClient, query
from authgate.client._config import ClientConfig
from authgate.client._exceptions import error_for
from authgate.client._models import (
    Account,
    ApiKey,
    AuditEvent,
    CreatedApiKey,
    Page,
    RegeneratedApiKey,
    Role,
    SessionInfo,
    Token,
    UsageRecord,
    User,
    V12User,
)
from authgate.client._token_pair import TokensHook

__all__ = ["Client"]

T = TypeVar("T")


class Client(_BaseClient):
    """A blocking client. ``Client()`` reads ``AUTHGATE_*`` variables; see ``ClientConfig``.

    Use it as a context manager, or call :meth:`close`::

        with Client() as client:
            print(client.account().login)

    Args:
        config: where and how to call; None reads the environment.
        second_factor: returns the second-factor code when a login needs one.
        transport: an ``httpx2`` transport (tests: ``MockTransport``).
        clock: Unix time, for renewing tokens before they expire.
        sleep: how to wait between retries.
    """

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        second_factor: SecondFactorHook | None = None,
        transport: httpx2.BaseTransport | None = None,
        clock: Clock = time.time,
        on_tokens: TokensHook | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(config, second_factor=second_factor, clock=clock, on_tokens=on_tokens)
        self._http = httpx2.Client(transport=transport, **self._http_options())
        self._sleep = sleep

    @classmethod
    def from_env(
        cls,
        variables: Mapping[str, str] | None = None,
        *,
        second_factor: SecondFactorHook | None = None,
    ) -> Self:
        """A client configured by ``AUTHGATE_*`` (or ``UTMSTACK_*``) variables."""
        return cls(ClientConfig.from_env(variables), second_factor=second_factor)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- sending ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        public: bool = False,
    ) -> httpx2.Response:
        """Call any endpoint; returns a 2xx response, or raises for any other answer.

        Raises:
            APIError: the server answered an error status or a redirect (a subclass
                names which; redirects are never followed).
            TransportError: no answer.
        """
        request = self._http.build_request(
            method.upper(),
            self._target(path),
            params=query(params),
            json=json,
            content=content,
            headers=headers,
        )
        response = self._send(request, public=public)
        if not response.is_success:  # a redirect too: it is not followed
            raise error_for(response)
        return response

    def _send(self, request: httpx2.Request, *, public: bool) -> httpx2.Response:
        retries = 0
        while True:
            if self._http.is_closed:
                raise self._closed_error()
            try:
                response = self._http.send(request, auth=None if public else self._auth)
            except httpx2.TransportError as error:
                raise self._transport_error(error) from error
            if not response.is_error:
                return response
            delay = self._retry_delay(response, retries)
            if delay is None:
                return response
            self._sleep(delay)
            retries += 1

    def _execute(self, call: api.Call[T]) -> T:
        headers = {"Content-Type": call.content_type} if call.content_type else None
        response = self.request(
            call.method,
            call.path,
            params=call.params,
            json=call.json,
            content=call.content,
            headers=headers,
            public=call.public,
        )
        return call.parse(response)

    def login(self) -> Token:
        """Log in now (otherwise the first request does); needs a username and password.
        With ``V12Credentials`` the pair's access token is returned; the refresh token
        goes to ``on_tokens``."""
        token: Token = self._run(self._login_flow())
        return token

    def _run(self, flow: Generator[httpx2.Request, httpx2.Response, T]) -> T:
        """Send what an auth flow asks for (logins, logout), without auth of its own."""
        try:
            request = next(flow)
            while True:
                if self._http.is_closed:
                    raise self._closed_error()
                try:
                    response = self._http.send(request)
                except httpx2.TransportError as error:
                    raise self._transport_error(error) from error
                request = flow.send(response)
        except StopIteration as done:
            result: T = done.value
            return result

    # -- typed helpers ----------------------------------------------------------------------

    def account(self) -> Account:
        """The caller's own account (``GET /api/account``)."""
        return self._execute(api.account())

    def logout(self) -> None:
        """Revoke the token in use (``POST /api/logout``; needs a token, not a key).
        With v12 token pairs: end the session (``POST /api/v1/auth/logout``); its access
        tokens stop working too."""
        flow = self._v12_logout_flow()
        if flow is not None:
            self._run(flow)
        else:
            self._execute(api.logout())

    # v12 (/api/v1/auth): any credentials work, the sessions are those of v12 logins.

    def me(self) -> V12User:
        """The caller as v12 shows them (``GET /api/v1/auth/me``)."""
        return self._execute(api.me())

    def sessions(self) -> tuple[SessionInfo, ...]:
        """The caller's live v12 sessions; ``current`` marks the one in use."""
        return self._execute(api.sessions())

    def revoke_session(self, session_id: str) -> None:
        """End one of the caller's sessions: its refresh and access tokens stop working."""
        self._execute(api.revoke_session(session_id))

    def revoke_other_sessions(self) -> None:
        """End every session of the caller but the current one."""
        self._execute(api.revoke_other_sessions())

    def change_password(self, current_password: str, new_password: str) -> None:
        """Change the caller's password (``POST /api/v1/auth/change-password``)."""
        self._execute(api.change_password(current_password, new_password))

    # Password reset: public, sent without the client's credentials.

    def request_password_reset(self, email: str) -> None:
        """Ask for a reset link by e-mail; the answer is the same whether or not the
        address has an account."""
        self._execute(api.request_password_reset(email))

    def finish_password_reset(self, key: str, new_password: str) -> None:
        """Set a new password with the key of a reset link (single use, 24 h)."""
        self._execute(api.finish_password_reset(key, new_password))

    def list_api_keys(
        self,
        *,
        page: int = 0,
        size: int = 20,
        include_revoked: bool = False,
        all_users: bool = False,
    ) -> Page[ApiKey]:
        """One page of your API keys (admins: everyone's with ``all_users``)."""
        return self._execute(
            api.list_api_keys(
                page=page, size=size, include_revoked=include_revoked, all_users=all_users
            )
        )

    def get_api_key(self, key_id: str) -> ApiKey:
        return self._execute(api.get_api_key(key_id))

    def create_api_key(
        self,
        name: str,
        *,
        expires_at: datetime | None,
        allowed_ips: Sequence[str] = (),
        scopes: Sequence[str] | None = None,
        rate_limit: str | None = None,
    ) -> CreatedApiKey:
        """Create a key; the result holds the key itself, this once."""
        return self._execute(
            api.create_api_key(
                name,
                expires_at=expires_at,
                allowed_ips=allowed_ips,
                scopes=scopes,
                rate_limit=rate_limit,
            )
        )

    def update_api_key(
        self,
        key_id: str,
        *,
        name: str,
        expires_at: datetime | None,
        allowed_ips: Sequence[str] = (),
        scopes: Sequence[str] | None = None,
        rate_limit: str | None = None,
    ) -> ApiKey:
        """Replace a key's name, allowed IPs and expiry (and scopes, rate limit if given)."""
        return self._execute(
            api.update_api_key(
                key_id,
                name=name,
                expires_at=expires_at,
                allowed_ips=allowed_ips,
                scopes=scopes,
                rate_limit=rate_limit,
            )
        )

    def regenerate_api_key(
        self, key_id: str, *, grace: timedelta = timedelta(0)
    ) -> RegeneratedApiKey:
        """Rotate a key: a new secret, once; the old one works for ``grace`` more."""
        return self._execute(api.regenerate_api_key(key_id, grace=grace))

    def revoke_api_key(self, key_id: str) -> None:
        self._execute(api.revoke_api_key(key_id))

    def api_key_usage(
        self,
        api_key_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        status: int | None = None,
        outcome: str | None = None,
        page: int = 0,
        size: int = 20,
    ) -> Page[UsageRecord]:
        """Usage records of your keys (admins: all keys), newest first."""
        return self._execute(
            api.api_key_usage(
                api_key_id=api_key_id,
                since=since,
                until=until,
                status=status,
                outcome=outcome,
                page=page,
                size=size,
            )
        )

    def list_users(self, *, page: int = 0, size: int = 20) -> Page[User]:
        """Admins: one page of users."""
        return self._execute(api.list_users(page=page, size=size))

    def get_user(self, login: str) -> User:
        return self._execute(api.get_user(login))

    def create_user(
        self,
        login: str,
        *,
        email: str,
        password: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        authorities: Sequence[str] = ("ROLE_USER",),
        activated: bool = True,
    ) -> User:
        """Admins: create a user. Without ``password`` the user is inactive until they
        choose one through a single-use link, e-mailed by the server or, when it sends
        no e-mail, returned once as ``reset_link``."""
        return self._execute(
            api.create_user(
                login,
                email=email,
                password=password,
                first_name=first_name,
                last_name=last_name,
                authorities=authorities,
                activated=activated,
            )
        )

    def update_user(
        self,
        login: str,
        *,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        lang_key: str | None = None,
        authorities: Sequence[str] | None = None,
        activated: bool | None = None,
    ) -> User:
        """Admins: change what is given; the rest keeps its value."""
        return self._execute(
            api.update_user(
                login,
                email=email,
                first_name=first_name,
                last_name=last_name,
                lang_key=lang_key,
                authorities=authorities,
                activated=activated,
            )
        )

    def delete_user(self, login: str) -> None:
        self._execute(api.delete_user(login))

    def roles(self) -> list[Role]:
        """The roles and what each permits (``GET /api/v1/roles``; needs ``roles.read``).
        The caller's own roles are ``account().authorities``."""
        return [self._execute(api.role(listed.id)) for listed in self._execute(api.roles())]

    def audit_events(
        self,
        *,
        types: Sequence[str] = (),
        outcome: str | None = None,
        actor: str | None = None,
        ip: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        api_key_id: str | None = None,
        page: int = 0,
        size: int = 20,
    ) -> Page[AuditEvent]:
        """Admins: one page of the audit trail, newest first."""
        return self._execute(
            api.audit_events(
                types=types,
                outcome=outcome,
                actor=actor,
                ip=ip,
                since=since,
                until=until,
                api_key_id=api_key_id,
                page=page,
                size=size,
            )
        )
