"""``Guard``: one per service; authenticates requests and builds FastAPI dependencies.

    guard = Guard(GuardConfig.from_env(os.environ))
    guard.install(app)                    # errors as authgate-shaped JSON

    @app.get("/orders")
    async def orders(caller: Annotated[GuardPrincipal, Depends(guard.require(scopes=["read"]))]):
        ...

A JWT is verified locally against authgate's JWKS; an API key (and a JWT with
``verify_jwt_locally=False``) is checked by authgate's ``/api/auth/verify``. The guard
owns one ``httpx2.AsyncClient``: close it with ``await guard.aclose()`` or
``async with guard:`` in the application's lifespan.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Self

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from authgate.guard._config import GuardConfig
from authgate.guard._errors import REALM, GuardError, NotAuthenticated, error_response
from authgate.guard._incoming import IncomingRequest
from authgate.guard._jwks import JwksCache
from authgate.guard._jwt import JwtVerifier
from authgate.guard._principal import GuardPrincipal, Requirement
from authgate.guard._remote import RemoteVerifier

__all__ = ["PRINCIPAL_SCOPE_KEY", "Guard", "principal_of", "remember_principal"]

# Where the caller is kept in the ASGI scope (also ``request.state.principal``).
PRINCIPAL_SCOPE_KEY = "authgate.guard.principal"

Dependency = Callable[[HTTPConnection], Awaitable[GuardPrincipal]]


class Guard:
    """Authenticates requests against one authgate.

    Args:
        config: where authgate is and the cache lifetimes.
        clock: seconds since the epoch (tests pass a fake one); token times and
            cache deadlines are read from it.
    """

    def __init__(self, config: GuardConfig, *, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock
        self._http = config.http_client()
        self._jwks = JwksCache(
            self._http,
            algorithms=config.algorithms,
            ttl=config.jwks_ttl,
            min_refetch_interval=config.jwks_min_refetch_interval,
            timeout=config.timeout,
            clock=clock,
        )
        self._jwt = JwtVerifier(
            self._jwks,
            issuer=config.issuer,
            audience=config.audience,
            leeway=config.leeway,
            clock=clock,
        )
        self._remote = RemoteVerifier(
            self._http,
            cache_ttl=config.key_cache_ttl,
            cache_size=config.key_cache_size,
            timeout=config.timeout,
            clock=clock,
        )

    @property
    def config(self) -> GuardConfig:
        return self._config

    def __repr__(self) -> str:
        return f"<Guard authgate_url={self._config.authgate_url!r}>"

    async def authenticate(self, scope: Scope) -> GuardPrincipal:
        """The caller of an ``http`` or ``websocket`` request.

        Raises:
            NotAuthenticated: no credential (401 ``credentials_missing``) or a bad one.
            AccessDenied, Throttled, InvalidRequest: authgate's refusal, passed on.
            AuthgateUnavailable: authgate could not vouch for the caller (503).
        """
        request = IncomingRequest.from_scope(scope)
        credential = request.credential
        if credential is None:
            raise NotAuthenticated(code="credentials_missing", headers={"WWW-Authenticate": REALM})
        if credential.kind == "jwt" and self._config.verify_jwt_locally:
            return await self._jwt.verify(credential.value)
        return await self._remote.verify(request)

    def require(
        self,
        *,
        scopes: Iterable[str] = (),
        roles: Iterable[str] = (),
        permissions: Iterable[str] = (),
    ) -> Dependency:
        """A FastAPI dependency returning the caller, who must hold all ``scopes`` (they
        limit API keys; a user's token carries the user's rights), one of ``roles`` and
        all of ``permissions`` (what authgate's roles grant: ``users.read``, ...).

        Reuses the principal when ``GuardMiddleware`` already authenticated the request.
        Raises ``GuardError`` (401/403/429/503...); ``install`` renders it as JSON.
        """
        requirement = Requirement.of(scopes=scopes, roles=roles, permissions=permissions)

        async def guarded(connection: HTTPConnection) -> GuardPrincipal:
            principal = connection.scope.get(PRINCIPAL_SCOPE_KEY)
            if not isinstance(principal, GuardPrincipal):
                principal = await self.authenticate(connection.scope)
                remember_principal(connection.scope, principal)
            requirement.check(principal)
            return principal

        return guarded

    def require_permission(self, permission: str) -> Dependency:
        """``require(permissions=[permission])``: the caller's roles must grant it."""
        return self.require(permissions=[permission])

    def install(self, app: Starlette) -> None:
        """Answer ``GuardError`` raised by dependencies with authgate's JSON error shape."""
        app.add_exception_handler(GuardError, self._on_guard_error)

    def error_response(self, error: GuardError, *, path: str) -> JSONResponse:
        return error_response(error, path=path, now=self._clock())

    async def _on_guard_error(self, request: Request, error: Exception) -> Response:
        if not isinstance(error, GuardError):  # registered for GuardError only
            raise error
        return self.error_response(error, path=request.url.path)

    async def aclose(self) -> None:
        """Close the connection pool to authgate."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def remember_principal(scope: Scope, principal: GuardPrincipal) -> None:
    """Keep the caller in the scope, for dependencies and as ``request.state.principal``."""
    scope[PRINCIPAL_SCOPE_KEY] = principal
    scope.setdefault("state", {})["principal"] = principal


def principal_of(connection: HTTPConnection) -> GuardPrincipal:
    """The caller of a request that ``GuardMiddleware`` (or a guard dependency) let in.

    Raises:
        RuntimeError: nothing authenticated this request (an exempt path, or no
            ``GuardMiddleware`` in front of this app).
    """
    principal = connection.scope.get(PRINCIPAL_SCOPE_KEY)
    if not isinstance(principal, GuardPrincipal):
        raise RuntimeError(
            "no authenticated caller: add GuardMiddleware in front of this app, "
            "or use Depends(guard.require()), and do not exempt this path"
        )
    return principal
