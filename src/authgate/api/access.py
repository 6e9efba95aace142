"""Who may call a route, decided before the endpoint runs.

A router declares its audience with its route class, each derived from
``AuthgateRoute`` (``api/routing.py``: HEAD answered wherever GET is); plain
``AuthgateRoute`` is public:

* ``AuthenticatedRoute``: any caller with a valid bearer token or API key;
* ``AdminRoute``: the admin API. Each endpoint names the permission it needs with
  :func:`requires_permission` (``users.read``, ...; ``security/permissions.py``), so a
  ROLE_VIEWER may read what a ROLE_ADMIN may change; an endpoint without the mark needs
  ROLE_ADMIN itself. An API key holds permissions only with the ``admin`` scope (then
  its owner's, never more);
* ``SelfServiceRoute``: the caller's own credentials (password, sessions): reading is
  open to API keys, changing needs a user session, so a leaked key cannot change the
  password or keep itself alive;
* ``ApiKeyManagementRoute``: as self-service, and validation errors are 422.

Every authenticated route also enforces API key scopes: without ``write`` a key may
only use safe methods (GET, HEAD, OPTIONS).

An endpoint that sets credentials (sets or resets a password, creates a user, grants
ROLE_ADMIN, creates, edits, regenerates or re-enables an API key) says so with
:func:`sets_credentials`; whatever its route class, only a user session from a password
login reaches it, never an API key (403 ``session_required``), so a leaked key, even
one with the admin scope, cannot mint itself a password or another key. The Settings
UI's page routes honour the same mark (``web/pages.py``).

The route class authenticates the request before FastAPI solves the endpoint's
parameters (so an unauthenticated caller gets 401 even for a malformed body) and the
endpoint reads the caller with :func:`principal_of`. It is not a FastAPI dependency on
purpose: in FastAPI 0.163 each ``Depends`` level costs ~25 µs per request (measured on
this project's machine: 60-80 µs for a bare endpoint, +25 µs with one trivial
dependency), more than all of authentication on a cache hit (~4 µs). The OpenAPI
document declares the security schemes from the same route classes.

The verdict itself comes from the framework-free :class:`authgate.services.gate.Gate`
(which credentials count, and how - ``agk_`` keys and 43-character legacy keys imported
from UTMStack are told from JWTs by format, never by trial - is described there); this
layer only extracts the credential headers and renders the verdict. The request's passage
through the gate lives in one ASGI scope key (``VERDICT_SCOPE_KEY``), read by the logs
after the response.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request, Response
from starlette.types import Scope

from authgate.api.routing import AuthgateRoute
from authgate.container import Services
from authgate.exceptions import (
    AuthenticationFailed,
    CredentialsMissing,
    InsufficientScope,
    PermissionDenied,
    SessionRequired,
)
from authgate.reasons import Reason
from authgate.security.credentials import bearer_credential
from authgate.security.networks import IPAddress
from authgate.security.permissions import ALL_PERMISSIONS, role_change_refusal
from authgate.security.principal import ROLE_ADMIN, SCOPE_ADMIN, Principal
from authgate.security.tokens import PendingClaims
from authgate.services.gate import (
    DUPLICATE_CREDENTIALS,
    NO_CREDENTIALS,
    SAFE_METHODS,
    VERDICT_SCOPE_KEY,
    AuthFailure,
    Credentials,
    Requirement,
    Verdict,
    credentials_of,
)

__all__ = ["SAFE_METHODS", "VERDICT_SCOPE_KEY", "AuthFailure", "Verdict"]

# The claims of a pre-verification token (PreVerificationRoute).
PENDING_SCOPE_KEY = "authgate.pending_login"

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
BodyTest = Callable[[Mapping[str, Any]], bool]

_CREDENTIAL_MARK = "__authgate_sets_credentials__"
_PERMISSION_MARK = "__authgate_requires_permission__"


@dataclass(frozen=True, slots=True)
class CredentialSetting:
    """What a credential-setting endpoint does (for people and the route audit test),
    and, when only some bodies set credentials, which: ``when`` is asked about the
    JSON body of a caller who is not a password session; ``None`` means every call."""

    what: str
    when: BodyTest | None = None


def sets_credentials(what: str, *, when: BodyTest | None = None) -> Callable[[Endpoint], Endpoint]:
    """Mark an endpoint as setting credentials: only a password session may call it.

    Put it *below* the router's decorator, so the route is built from a marked function::

        @router.post("/{login}/password")
        @sets_credentials("resets a user's password")
        async def reset_password(...): ...
    """

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _CREDENTIAL_MARK, CredentialSetting(what, when))
        return endpoint

    return mark


def credential_setting_of(endpoint: Callable[..., Any]) -> CredentialSetting | None:
    """The :func:`sets_credentials` mark of an endpoint, if it has one."""
    setting: CredentialSetting | None = getattr(endpoint, _CREDENTIAL_MARK, None)
    return setting


def requires_permission(permission: str) -> Callable[[Endpoint], Endpoint]:
    """Mark an endpoint of an ``AdminRoute`` with the permission it needs (403 without).

    Put it *below* the router's decorator, as :func:`sets_credentials`::

        @router.get("")
        @requires_permission(USERS_READ)
        async def list_users(...): ...
    """
    if permission not in ALL_PERMISSIONS:  # a typo would lock everyone but nobody out
        raise ValueError(f"unknown permission {permission!r}")

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _PERMISSION_MARK, permission)
        return endpoint

    return mark


def required_permission_of(endpoint: Callable[..., Any]) -> str | None:
    """The :func:`requires_permission` mark of an endpoint, if it has one."""
    permission: str | None = getattr(endpoint, _PERMISSION_MARK, None)
    return permission


async def require_password_session(
    request: Request, principal: Principal, setting: CredentialSetting
) -> None:
    """Refuse (``SessionRequired``, recorded in the verdict) a caller who is not a
    password session, unless the endpoint sets credentials only for some bodies and this
    body is not one of them.

    The body is read through Starlette's cached ``request.json()``, the very object
    FastAPI then validates, so the test and the endpoint can never see two different
    parses (duplicate keys, say). A body that cannot be read as a JSON object (deep
    nesting included) is refused: when in doubt, the operation is taken to set
    credentials.
    """
    if principal.is_password_session:
        return
    if setting.when is not None:
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # (nesting deeper than the parser goes)
            body = None
        if isinstance(body, dict) and not setting.when(body):
            return
    raise _session_required(request, principal)


def require_password_session_for_target(request: Request) -> None:
    """The refusal of :func:`require_password_session`, for an endpoint that learns only
    from the record it changes that this call sets a credential (a new e-mail address
    is where the password-reset links and e-mailed codes go) or needs such a session
    (ending a session other than the caller's own)."""
    principal = principal_of(request)
    if not principal.is_password_session:
        raise _session_required(request, principal)


def _session_required(request: Request, principal: Principal) -> SessionRequired:
    """The refusal of a caller who is not a password session, recorded in the verdict
    (audited with the key, as any refusal of the gate)."""
    if principal.method == "jwt":  # a session, but one that skipped the second factor
        error = SessionRequired(
            "This operation needs a session that passed your second factor; sign in again",
            reason=Reason.SECOND_FACTOR_REQUIRED,
        )
    else:
        error = SessionRequired(reason=Reason.SESSION_REQUIRED)
    verdict_of(request.scope).refuse(
        AuthFailure(principal.method, error.reason, principal.api_key), error
    )
    return error


def services_of(request: Request) -> Services:
    services: Services = request.scope["app"].services  # AuthgateApp.services
    return services


def verdict_of(scope: Scope) -> Verdict:
    """The request's passage through the gate (made on first use)."""
    verdict: Verdict | None = scope.get(VERDICT_SCOPE_KEY)
    if verdict is None:
        verdict = scope[VERDICT_SCOPE_KEY] = Verdict()
    return verdict


def principal_of(request: Request) -> Principal:
    """The caller of an ``AuthenticatedRoute`` (set before the endpoint runs)."""
    principal = verdict_of(request.scope).principal
    if principal is None:  # only an unauthenticated route could ask: a bug
        raise RuntimeError("principal_of() on a request that was not authenticated")
    return principal


def header_credentials(scope: Scope) -> Credentials:
    """The credential headers, classified (one pass over the headers)."""
    api_key = authorization = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is not None:
                return DUPLICATE_CREDENTIALS
            authorization = value.decode("latin-1")
        elif name == b"utm-api-key":
            if api_key is not None:
                return DUPLICATE_CREDENTIALS
            api_key = value.decode("latin-1")
    return credentials_of(api_key, authorization)


def request_credentials(scope: Scope, services: Services) -> Credentials:
    """The credential headers, or else ``?access_token=`` where
    ``access_token_query_param`` allows it."""
    credentials = header_credentials(scope)
    if credentials is NO_CREDENTIALS and services.settings.tokens.query_param:
        query = scope.get("query_string", b"").decode("latin-1")
        # The last one, as Starlette's ``query_params`` reads it.
        tokens = [v for n, v in parse_qsl(query, keep_blank_values=True) if n == "access_token"]
        if tokens:
            return credentials_of(None, None, tokens[-1])
    return credentials


def client_address(scope: Scope, services: Services) -> IPAddress | None:
    """The request's client address (trusted-proxy aware), resolved once per request."""
    verdict = verdict_of(scope)
    if verdict.client_ip_known:
        return verdict.client_ip
    resolver = services.client_ips
    client = scope.get("client")
    peer = str(client[0]) if client else None
    address, trusted = resolver.peer(peer)
    if trusted:
        # The forwarding header matters only from a trusted proxy: no header scan
        # otherwise (and then the peer is the client: one memoised lookup).
        address = resolver.resolve(peer, joined_header_values(scope, resolver.header_name))
    verdict.client_ip, verdict.client_ip_known = address, True
    return address


def header_value(scope: Scope, name: bytes) -> str | None:
    """One header straight from the ASGI scope (names arrive lower-cased), without
    building Starlette's ``Headers`` object for the whole request."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def joined_header_values(scope: Scope, name: bytes) -> str | None:
    """Every line of a list-valued header, joined with commas (RFC 9110 5.3)."""
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == name]
    return ", ".join(values) if values else None


class AuthenticatedRoute(AuthgateRoute):
    """A route only authenticated callers reach (401 otherwise)."""

    required_authority: ClassVar[str | None] = None
    # False: API keys may read (safe methods) but not change anything here.
    api_keys_may_change: ClassVar[bool] = True
    # Status of request validation errors on this route (JHipster answers 400).
    validation_status: ClassVar[int] = 400

    # The mark this route's handler enforces, read when the handler is built: a mark
    # put on the function after the route was built (decorators in the wrong order)
    # is not enforced, and the route audit test sees that.
    credential_setting: CredentialSetting | None = None
    # Likewise the permission the handler requires (it replaces ``required_authority``).
    required_permission: str | None = None

    def get_route_handler(self) -> Handler:
        handle = super().get_route_handler()
        keys_may_change = self.api_keys_may_change
        setting = self.credential_setting = credential_setting_of(self.endpoint)
        permission = self.required_permission = required_permission_of(self.endpoint)
        required = None if permission is not None else self.required_authority

        def authorize(principal: Principal, method: str) -> None:
            _authorize(principal, method, required, keys_may_change)
            if permission is not None:
                require_permission(principal, permission)

        async def authenticated(request: Request) -> Response:
            await admit(request, services_of(request), request.method, authorize)
            return await handle(request)

        if setting is None:
            return authenticated
        marked: CredentialSetting = setting

        async def setting_credentials(request: Request) -> Response:
            principal = await admit(request, services_of(request), request.method, authorize)
            await require_password_session(request, principal, marked)
            return await handle(request)

        return setting_credentials


Authorizer = Requirement


async def admit(
    request: Request, services: Services, method: str, authorize: Authorizer
) -> Principal:
    """Ask the gate about the request (authenticate, authorize ``method`` for the caller,
    count it against an API key's rate limit); the verdict stays in the scope for the
    headers and the audit and usage logs (written after the response, in batches).
    Raises the refusal's ``AuthgateError``."""
    scope = request.scope
    verdict = await services.gate.check(
        verdict_of(scope),
        request_credentials(scope, services),
        client_address(scope, services),
        method,
        authorize,
    )
    if verdict.error is not None:
        raise verdict.error
    principal = verdict.principal
    assert principal is not None  # no error: the gate admitted a caller
    return principal


def check_method_scope(principal: Principal, method: str) -> None:
    """What an API key's scopes allow ``method`` (403 otherwise): reading needs ``read``
    or ``write``, anything else ``write``. A user's token: anything."""
    if principal.scopes is None:
        return
    if method in SAFE_METHODS:
        if not principal.may_read():
            raise InsufficientScope(
                "This API key may not read here (it has neither the read nor the write scope)",
                reason=Reason.SCOPE_READ,
            )
    elif not principal.may_write():
        raise InsufficientScope(
            "This API key may only read (it lacks the write scope)", reason=Reason.SCOPE_WRITE
        )


def _authorize(
    principal: Principal, method: str, required: str | None, keys_may_change: bool
) -> None:
    check_method_scope(principal, method)
    if method not in SAFE_METHODS and principal.scopes is not None and not keys_may_change:
        raise SessionRequired(reason=Reason.SESSION_REQUIRED)
    if required is not None and not principal.has_authority(required):
        if principal.scopes is not None and required == ROLE_ADMIN:
            raise InsufficientScope(
                "Admin operations need an API key with the admin scope, owned by an admin",
                reason=Reason.SCOPE_ADMIN,
            )
        raise PermissionDenied(reason=Reason.authority_required(required))


def require_permission(principal: Principal, permission: str) -> None:
    """Refuse (403) a caller whose roles in force lack ``permission``; an API key without
    the admin scope is told that is what it lacks."""
    if principal.has_permission(permission):
        return
    if principal.scopes is not None and SCOPE_ADMIN not in principal.scopes:
        raise InsufficientScope(
            "Admin operations need an API key with the admin scope, owned by a user "
            f"with the {permission} permission",
            reason=Reason.SCOPE_ADMIN,
        )
    raise PermissionDenied(
        f"This needs the {permission} permission", reason=Reason.PERMISSION_REQUIRED
    )


def check_role_change(
    principal: Principal, current: frozenset[str], wanted: frozenset[str]
) -> None:
    """Refuse (403) a change of a user's roles from ``current`` to ``wanted`` that the
    caller may not make (``role_change_refusal``)."""
    refusal = role_change_refusal(principal.permissions, current, wanted)
    if refusal is not None:
        raise PermissionDenied(refusal, reason=Reason.ROLE_CHANGE_DENIED)


class AdminRoute(AuthenticatedRoute):
    """The admin API: the permission the endpoint's :func:`requires_permission` names,
    or ROLE_ADMIN for an unmarked one (403 for others, 401 without credentials)."""

    required_authority = ROLE_ADMIN


class SelfServiceRoute(AuthenticatedRoute):
    """The caller's own credentials: API keys may read, only user sessions may change."""

    api_keys_may_change = False


class ApiKeyManagementRoute(SelfServiceRoute):
    """``/api/api-keys``: self-service, with validation errors answered 422.

    Unlike the rest of the self-service API, a key with the ``write`` scope may use the
    unsafe methods here that set nothing: revoking a key (taking access away, as an
    admin-scoped key may deactivate a user) and ``POST /usage`` (UTMStack's verb for a
    read). Creating, editing, regenerating and re-enabling keys set credentials: their
    ``sets_credentials`` marks still refuse every key."""

    validation_status = 422
    api_keys_may_change = True


class AdminConfigurationRoute(AdminRoute):
    """Admin-only configuration (alert rules, the key review): validation errors are 422."""

    validation_status = 422


class PreVerificationRoute(AuthgateRoute):
    """A second-factor route: only a pre-verification token (password right, second
    factor to come) reaches it; anything else, access tokens and API keys included, is
    401. The reverse holds everywhere else: no other route accepts such a token."""

    def get_route_handler(self) -> Handler:
        handle = super().get_route_handler()

        async def pre_verified(request: Request) -> Response:
            services = services_of(request)
            bearer = bearer_credential(header_value(request.scope, b"authorization"))
            if bearer is None:
                raise CredentialsMissing()
            try:
                claims = await services.tokens.authenticate_pre_verification(bearer)
            except AuthenticationFailed as error:
                verdict_of(request.scope).failure = AuthFailure("jwt", error.reason)
                raise
            request.scope[PENDING_SCOPE_KEY] = claims
            return await handle(request)

        return pre_verified


def pending_of(request: Request) -> PendingClaims:
    """The pre-verification token's claims on a ``PreVerificationRoute``."""
    claims: PendingClaims = request.scope[PENDING_SCOPE_KEY]
    return claims
