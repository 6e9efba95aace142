"""``Guard``: one per service; authenticates requests and builds FastAPI dependencies.

    guard = Guard(GuardConfig.from_env(os.environ))
    guard.install(app)                    # errors as authgate-shaped JSON

    @app.get("/orders")
    async def orders(caller: Annotated[GuardPrincipal, Depends(guard.require(scopes=["read"]))]):
        ...

A JWT is verified locally against authgate's JWKS, and a token older than
``local_jwt_max_age`` is then checked by authgate too, so that a logout, deactivation or
removed role reaches the guard within that bound; an API key (and every JWT with
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
from authgate.guard._link import AuthgateLink
from authgate.guard._principal import GuardPrincipal, Requirement
from authgate.guard._remote import RemoteVerifier

__all__ = ["PRINCIPAL_SCOPE_KEY", "Guard", "principal_of", "remember_principal"]

# Where the caller is kept in the ASGI scope (also ``request.state.principal``).
PRINCIPAL_SCOPE_KEY = "authgate.guard.principal"
# And by the guard that vouched for it: a dependency reuses only its own guard's
# principal, never a laxer guard's (longer local JWT age, another issuer, fewer checks).
_BY_GUARD_SCOPE_KEY = "authgate.guard.principals"

Dependency = Callable[[HTTPConnection], Awaitable[GuardPrincipal]]


class Guard:
    """Authenticates requests against one authgate.

    Args:
        config: where authgate is and the cache lifetimes.
        clock: seconds since the epoch (tests pass a fake one); token times (``exp``,
            ``nbf``, ``iat`` and a token's age) and error timestamps are read from it.
        timer: a clock that never steps back (tests pass a fake one); the cache
            deadlines (JWK Set, remote verifications) are read from it, so that a wall
            clock set back cannot stretch how long a success is trusted.
    """

    def __init__(
        self,
        config: GuardConfig,
        *,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._clock = clock
        self._link = AuthgateLink(config)
        self._jwks = JwksCache(
            self._link,
            algorithms=config.algorithms,
            ttl=config.jwks_ttl,
            min_refetch_interval=config.jwks_min_refetch_interval,
            timeout=config.timeout,
            timer=timer,
        )
        self._jwt = JwtVerifier(
            self._jwks,
            issuer=config.issuer,
            audience=config.audience,
            leeway=config.leeway,
            clock=clock,
        )
        self._remote = RemoteVerifier(
            self._link,
            cache_ttl=config.key_cache_ttl,
            cache_size=config.key_cache_size,
            timeout=config.timeout,
            timer=timer,
        )
        self._local_jwt = config.verify_jwt_locally and config.local_jwt_max_age > 0

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
        if credential.kind == "jwt" and self._local_jwt:
            token = await self._jwt.verify(credential.value)
            if token.age < self._config.local_jwt_max_age:
                return token.principal
            # Valid here, but old enough that the session may have ended or the roles
            # changed since: authgate says (as in remote mode, cached alike; 503 when it
            # cannot be asked). A forged token never gets this far.
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

        Reuses the principal when ``GuardMiddleware`` with this same guard (or another
        dependency of it) already authenticated the request; another guard's is not
        reused: this guard authenticates the request itself.
        Raises ``GuardError`` (401/403/429/503...); ``install`` renders it as JSON.
        """
        requirement = Requirement.of(scopes=scopes, roles=roles, permissions=permissions)

        async def guarded(connection: HTTPConnection) -> GuardPrincipal:
            principal = connection.scope.get(_BY_GUARD_SCOPE_KEY, {}).get(self)
            if not isinstance(principal, GuardPrincipal):
                principal = await self.authenticate(connection.scope)
                remember_principal(connection.scope, principal, guard=self)
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
        """Close the connection pool to authgate (``async with guard`` opens it again)."""
        await self._link.aclose()

    async def __aenter__(self) -> Self:
        self._link.reopen()  # a second lifespan of the same app
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def remember_principal(
    scope: Scope, principal: GuardPrincipal, *, guard: Guard | None = None
) -> None:
    """Keep the caller in the scope, for ``principal_of`` and as
    ``request.state.principal``; with ``guard``, also as that guard's, which its
    dependencies (``guard.require``) reuse instead of authenticating again."""
    scope[PRINCIPAL_SCOPE_KEY] = principal
    scope.setdefault("state", {})["principal"] = principal
    if guard is not None:
        scope.setdefault(_BY_GUARD_SCOPE_KEY, {})[guard] = principal


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
