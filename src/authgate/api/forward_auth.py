"""Forward-auth: ``/api/auth/verify`` lets a reverse proxy protect any HTTP API.

nginx (``auth_request``), Traefik (``ForwardAuth``) or Caddy (``forward_auth``) sends
each incoming request's headers here before passing it upstream. authgate
authenticates the credentials in them exactly as for its own API (``Authorization:
Bearer <JWT or key>`` or ``Utm-Api-Key``), with the client address from the
trusted-proxy rules, and holds the original method and path - read only from the
header pair of the configured proxy (``forward_auth_proxy``), in their canonical form -
to the forward-auth rules. It answers:

* 200 with identity headers for the upstream (``X-Auth-User``, ``X-Auth-User-Id``,
  ``X-Auth-Roles``, ``X-Auth-Method``, and for keys ``X-Auth-Key-Id``/``X-Auth-Scopes``);
* 400/401/403/423/429 with the usual JSON error, ``WWW-Authenticate``/``Retry-After``
  and the stable error code in ``X-Auth-Error`` (a proxy forwards headers, not bodies).
  An ambiguous upstream request (``ambiguous_upstream_request``: the header pairs
  disagree; ``ambiguous_upstream_path``: no canonical path) is refused - after the
  credentials, so that a caller without valid ones gets 401 as everywhere - and
  recorded in the audit trail with the caller.

Any method is accepted and a body is never read. It is the hottest endpoint: a lean
handler without FastAPI's parameter machinery, one pass over the headers, no database
round trip on a cache hit, usage and audit written in batches after the response like
every other request (with the upstream method and path).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.responses import JSONResponse
from starlette.types import Scope

from authgate.api.access import (
    AUTH_FAILURE_SCOPE_KEY,
    UPSTREAM_REQUEST_SCOPE_KEY,
    AuthenticatedRoute,
    AuthFailure,
    Authorizer,
    Handler,
    admit,
    services_of,
)
from authgate.api.errors import authgate_error_response, documented
from authgate.exceptions import AmbiguousUpstreamRequest, AuthgateError, ValidationFailed
from authgate.security.principal import Principal, join_authorities
from authgate.services.forward_auth import ForwardAuthPolicy

VERIFY_PATH = "/api/auth/verify"
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class ForwardAuthRoute(AuthenticatedRoute):
    """Serves ``verify`` itself: FastAPI only routes to it and documents it."""

    def get_route_handler(self) -> Handler:
        return verify


async def verify(request: Request) -> Response:
    services = services_of(request)
    try:
        method, authorize = _upstream_authorizer(request.scope, services.forward_auth)
        principal = await admit(request, services, method, authorize)
    except AuthgateError as error:
        response: Response = authgate_error_response(request, error)
        response.headers["X-Auth-Error"] = error.code
        return response
    return Response(status_code=200, headers=identity_headers(principal))


def _upstream_authorizer(scope: Scope, policy: ForwardAuthPolicy) -> tuple[str, Authorizer]:
    """The upstream request's method and how to authorize the caller for it.

    A request the proxy's headers do not describe one way only is refused once the caller
    is authenticated (as everywhere, a caller without valid credentials gets 401 first):
    the audit record then names who sent it, and the path it claimed.
    """
    headers = scope["headers"]
    try:
        upstream = policy.upstream_request(headers)
        path = policy.upstream_path(upstream)
    except AmbiguousUpstreamRequest as error:
        claimed = policy.reader.claimed_target(headers)
        if claimed is not None:  # raw, without the query (which may hold secrets)
            scope[UPSTREAM_REQUEST_SCOPE_KEY] = (str(scope["method"]), claimed.partition("?")[0])
        return str(scope["method"]), _refusal(scope, error)
    except ValidationFailed as error:  # the proxy's headers are missing or malformed
        return str(scope["method"]), _refusal(scope, error)
    scope[UPSTREAM_REQUEST_SCOPE_KEY] = (upstream.method, path)
    requirement = policy.requirement(upstream.method, path)
    return upstream.method, lambda caller, _method: requirement.check(caller)


def _refusal(scope: Scope, error: ValidationFailed) -> Authorizer:
    """Refuses any caller with ``error``; an ambiguous request is recorded for the audit."""

    def refuse(caller: Principal, _method: str) -> None:
        if isinstance(error, AmbiguousUpstreamRequest):
            scope[AUTH_FAILURE_SCOPE_KEY] = AuthFailure(
                caller.method, error.reason, caller.api_key, ambiguous_header=error.header or ""
            )
        raise error

    return refuse


def identity_headers(principal: Principal) -> dict[str, str]:
    """What the upstream learns about the caller (values are header-safe: logins are
    ``[_.@A-Za-z0-9-]``, roles and scopes are names)."""
    headers = {
        "X-Auth-User": principal.login,
        "X-Auth-User-Id": str(principal.user_id),
        "X-Auth-Roles": join_authorities(principal.authorities),
        "X-Auth-Method": principal.method,
    }
    if principal.api_key is not None:
        headers["X-Auth-Key-Id"] = principal.credential_id
    if principal.scopes is not None:
        headers["X-Auth-Scopes"] = join_authorities(principal.scopes)
    return headers


async def _documented_only() -> None:
    """Never called: ``ForwardAuthRoute`` serves the request."""


IDENTITY_HEADERS = {
    "X-Auth-User": "The caller's login.",
    "X-Auth-User-Id": "The caller's user id.",
    "X-Auth-Roles": "The roles in force, comma-separated (ROLE_ADMIN only for admin keys).",
    "X-Auth-Method": "jwt or api_key.",
    "X-Auth-Key-Id": "The API key's public id (keys only).",
    "X-Auth-Scopes": "The API key's scopes, comma-separated (keys only).",
}

router = APIRouter(tags=["forward-auth"], route_class=ForwardAuthRoute)
router.add_api_route(
    VERIFY_PATH,
    _documented_only,
    methods=["GET"],
    summary="Verify a proxied request's credentials (forward-auth)",
    description=(
        "For nginx `auth_request`, Traefik `ForwardAuth` and Caddy `forward_auth`: send the "
        "original request's credentials, `X-Forwarded-For` (from a trusted proxy) and its "
        "method and URI in the header pair of the configured proxy (nginx: "
        "`X-Original-Method` / `X-Original-URI`; Traefik, Caddy: `X-Forwarded-Method` / "
        "`X-Forwarded-Uri`). If the other pair is present it must agree "
        "(`ambiguous_upstream_request`); a path without one canonical form is refused "
        "(`ambiguous_upstream_path`). Every method is accepted; the body is ignored. The "
        "error code is also in `X-Auth-Error`."
    ),
    status_code=200,
    response_class=JSONResponse,
    responses={
        200: {
            "description": "Allowed; identity headers for the upstream.",
            "headers": {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in IDENTITY_HEADERS.items()
            },
            "content": None,
        },
        **documented(400, 401, 403, 423, 429),
    },
)
router.add_api_route(
    VERIFY_PATH,
    _documented_only,
    methods=[m for m in ANY_METHOD if m != "GET"],
    include_in_schema=False,
)
