"""``AsyncClient``: the ``async`` twin of ``Client``, with the same methods, awaited."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
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

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(_BaseClient):
    """The ``async`` twin of :class:`Client`: same arguments, same methods, awaited.

    ``sleep`` defaults to ``anyio.sleep`` (asyncio and trio).
    """

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        second_factor: SecondFactorHook | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
        on_tokens: TokensHook | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        super().__init__(config, second_factor=second_factor, clock=clock, on_tokens=on_tokens)
        self._http = httpx2.AsyncClient(transport=transport, **self._http_options())
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- sending ----------------------------------------------------------------------------

    async def request(
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
        """Call any endpoint; returns a 2xx response, or raises for any other answer."""
        request = self._http.build_request(
            method.upper(),
            self._target(path),
            params=query(params),
            json=json,
            content=content,
            headers=headers,
        )
        response = await self._send(request, public=public)
        if not response.is_success:  # a redirect too: it is not followed
            raise error_for(response)
        return response

    async def _send(self, request: httpx2.Request, *, public: bool) -> httpx2.Response:
        retries = 0
        while True:
            if self._http.is_closed:
                raise self._closed_error()
            try:
                response = await self._http.send(request, auth=None if public else self._auth)
            except httpx2.TransportError as error:
                raise self._transport_error(error) from error
            if not response.is_error:
                return response
            delay = self._retry_delay(response, retries)
            if delay is None:
                return response
            await self._sleep(delay)
            retries += 1

    async def _execute(self, call: api.Call[T]) -> T:
        headers = {"Content-Type": call.content_type} if call.content_type else None
        response = await self.request(
            call.method,
            call.path,
            params=call.params,
            json=call.json,
            content=call.content,
            headers=headers,
            public=call.public,
        )
        return call.parse(response)

    async def login(self) -> Token:
        """Log in now (otherwise the first request does); needs a username and password."""
        token: Token = await self._run(self._login_flow())
        return token

    async def _run(self, flow: Generator[httpx2.Request, httpx2.Response, T]) -> T:
        """Send what an auth flow asks for (logins, logout), without auth of its own."""
        try:
            request = next(flow)
            while True:
                if self._http.is_closed:
                    raise self._closed_error()
                try:
                    response = await self._http.send(request)
                except httpx2.TransportError as error:
                    raise self._transport_error(error) from error
                request = flow.send(response)
        except StopIteration as done:
            result: T = done.value
            return result

    # -- typed helpers (documented on Client) -----------------------------------------------

    async def account(self) -> Account:
        return await self._execute(api.account())

    async def logout(self) -> None:
        flow = self._v12_logout_flow()
        if flow is not None:
            await self._run(flow)
        else:
            await self._execute(api.logout())

    async def me(self) -> V12User:
        return await self._execute(api.me())

    async def sessions(self) -> tuple[SessionInfo, ...]:
        return await self._execute(api.sessions())

    async def revoke_session(self, session_id: str) -> None:
        await self._execute(api.revoke_session(session_id))

    async def revoke_other_sessions(self) -> None:
        await self._execute(api.revoke_other_sessions())

    async def change_password(self, current_password: str, new_password: str) -> None:
        await self._execute(api.change_password(current_password, new_password))

    async def request_password_reset(self, email: str) -> None:
        await self._execute(api.request_password_reset(email))

    async def finish_password_reset(self, key: str, new_password: str) -> None:
        await self._execute(api.finish_password_reset(key, new_password))

    async def list_api_keys(
        self,
        *,
        page: int = 0,
        size: int = 20,
        include_revoked: bool = False,
        all_users: bool = False,
    ) -> Page[ApiKey]:
        return await self._execute(
            api.list_api_keys(
                page=page, size=size, include_revoked=include_revoked, all_users=all_users
            )
        )

    async def get_api_key(self, key_id: str) -> ApiKey:
        return await self._execute(api.get_api_key(key_id))

    async def create_api_key(
        self,
        name: str,
        *,
        expires_at: datetime | None,
        allowed_ips: Sequence[str] = (),
        scopes: Sequence[str] | None = None,
        rate_limit: str | None = None,
    ) -> CreatedApiKey:
        return await self._execute(
            api.create_api_key(
                name,
                expires_at=expires_at,
                allowed_ips=allowed_ips,
                scopes=scopes,
                rate_limit=rate_limit,
            )
        )

    async def update_api_key(
        self,
        key_id: str,
        *,
        name: str,
        expires_at: datetime | None,
        allowed_ips: Sequence[str] = (),
        scopes: Sequence[str] | None = None,
        rate_limit: str | None = None,
    ) -> ApiKey:
        return await self._execute(
            api.update_api_key(
                key_id,
                name=name,
                expires_at=expires_at,
                allowed_ips=allowed_ips,
                scopes=scopes,
                rate_limit=rate_limit,
            )
        )

    async def regenerate_api_key(
        self, key_id: str, *, grace: timedelta = timedelta(0)
    ) -> RegeneratedApiKey:
        return await self._execute(api.regenerate_api_key(key_id, grace=grace))

    async def revoke_api_key(self, key_id: str) -> None:
        await self._execute(api.revoke_api_key(key_id))

    async def api_key_usage(
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
        return await self._execute(
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

    async def list_users(self, *, page: int = 0, size: int = 20) -> Page[User]:
        return await self._execute(api.list_users(page=page, size=size))

    async def get_user(self, login: str) -> User:
        return await self._execute(api.get_user(login))

    async def create_user(
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
        return await self._execute(
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

    async def update_user(
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
        return await self._execute(
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

    async def delete_user(self, login: str) -> None:
        await self._execute(api.delete_user(login))

    async def roles(self) -> list[Role]:
        """The roles and what each permits (``GET /api/v1/roles``; needs ``roles.read``).
        The caller's own roles are ``account().authorities``."""
        return [
            await self._execute(api.role(listed.id)) for listed in await self._execute(api.roles())
        ]

    async def audit_events(
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
        return await self._execute(
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
