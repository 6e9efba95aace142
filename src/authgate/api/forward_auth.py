"""Forward-auth: ``/api/auth/verify`` lets a reverse proxy protect any HTTP API.

nginx (``auth_request``), Traefik (``ForwardAuth``) or Caddy (``forward_auth``) sends
each incoming request's headers here before passing it upstream. authgate
authenticates the credentials in them exactly as for its own API (``Authorization:
Bearer <JWT or key>`` or ``Utm-Api-Key``), with the client address from the
trusted-proxy rules, and holds the original method and path - read only from the
header pair of the configured proxy (``forward_auth_proxy``), in their canonical form -
to the forward-auth rules. It answers:

* 200 with identity headers for the upstream (``X-Auth-User``, ``X-Auth-User-Id``,
  ``X-Auth-Roles``, ``X-Auth-Permissions``, ``X-Auth-Method``, and for keys
  ``X-Auth-Key-Id``/``X-Auth-Scopes``);
* 400/401/403/423/429 with the usual JSON error, ``WWW-Authenticate``/``Retry-After``
  and the stable error code in ``X-Auth-Error`` (a proxy forwards headers, not bodies).
  An ambiguous upstream request (``ambiguous_upstream_request``: the header pairs
  disagree, the method is not in upper case, a method override names no method;
  ``ambiguous_upstream_path``: no canonical path) is refused - after the credentials,
  so that a caller without valid ones gets 401 as everywhere - and recorded in the
  audit trail with the caller. A request carrying a method override (``?_method=``,
  ``X-HTTP-Method-Override``) must be allowed as that method too.

Any method is accepted and a body is never read. It is the hottest endpoint, so it is
answered by :class:`ForwardAuthFastPath`, a pure ASGI handler in front of routing and
the framework's middleware stack (which cost several times what authentication does):
the same :class:`~authgate.services.gate.Gate`, rules, caches, headers (the security
headers and ``RateLimit`` of :class:`~authgate.api.middleware.SecurityHeadersAndRequestLogs`,
the error body of :mod:`authgate.api.errors`), access log line and records (audit and
usage, batched, with the upstream method and path) as any other request. The route
below documents it in OpenAPI and serves it if the fast path is bypassed.
"""

from __future__ import annotations

import json
import logging
import time

from fastapi import APIRouter, Request, Response
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from authgate.api.access import (
    AuthenticatedRoute,
    Handler,
    client_address,
    header_credentials,
    services_of,
    verdict_of,
)
from authgate.api.encoded_headers import EncodedHeaders
from authgate.api.errors import (
    authentication_headers,
    authgate_error_response,
    documented,
    error_body,
    error_headers,
    status_of,
    unexpected_error,
)
from authgate.api.middleware import ScopeRequestInfo, finish_request, rate_limit_values
from authgate.container import Services
from authgate.exceptions import AmbiguousUpstreamRequest, ValidationFailed
from authgate.security.principal import Principal, join_authorities
from authgate.services.audit.events import current_request
from authgate.services.forward_auth import ForwardAuthPolicy
from authgate.services.gate import VERDICT_SCOPE_KEY, Requirement, Verdict

log = logging.getLogger(__name__)

VERIFY_PATH = "/api/auth/verify"
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def decide(scope: Scope, services: Services) -> Verdict:
    """The gate's verdict on a forward-auth request (left in the scope, too)."""
    verdict = verdict_of(scope)
    method, requirement = _upstream_requirement(verdict, scope, services.forward_auth)
    return await services.gate.check(
        verdict,
        # Headers only, never ``?access_token=``: a proxy may pass the client's query on
        # (Caddy does), and a token accepted there would reach the upstream in its URL.
        header_credentials(scope),
        client_address(scope, services),
        method,
        requirement,
    )


class ForwardAuthRoute(AuthenticatedRoute):
    """Serves ``verify`` when the fast path did not: FastAPI routes to it and documents it."""

    def get_route_handler(self) -> Handler:
        return verify


async def verify(request: Request) -> Response:
    verdict = await decide(request.scope, services_of(request))
    error = verdict.error
    if error is not None:
        response: Response = authgate_error_response(request, error)
        response.headers["X-Auth-Error"] = error.code
        return response
    assert verdict.principal is not None
    return Response(status_code=200, headers=identity_headers(verdict.principal))


def _upstream_requirement(
    verdict: Verdict, scope: Scope, policy: ForwardAuthPolicy
) -> tuple[str, Requirement]:
    """The upstream request's method and what the caller needs for it.

    A request the proxy's headers do not describe one way only is refused once the caller
    is authenticated (as everywhere, a caller without valid credentials gets 401 first):
    the audit record then names who sent it, and the path it claimed.
    """
    headers = scope["headers"]
    try:
        upstream = policy.upstream_request(headers)
        path, requirement = policy.decision(upstream)
    except AmbiguousUpstreamRequest as error:
        claimed = policy.reader.claimed_target(headers)
        if claimed is not None:  # raw, without the query (which may hold secrets)
            verdict.upstream = (str(scope["method"]), claimed.partition("?")[0])
        return str(scope["method"]), _refusal(error)
    except ValidationFailed as error:  # the proxy's headers are missing or malformed
        return str(scope["method"]), _refusal(error)
    verdict.upstream = (upstream.method, path)
    return upstream.method, requirement


def _refusal(error: ValidationFailed) -> Requirement:
    """Refuses any caller with ``error`` (the gate records an ambiguous request as such)."""

    def refuse(_caller: Principal, _method: str) -> None:
        raise error

    return refuse


RawHeaders = list[tuple[bytes, bytes]]
# status, headers (encoded, complete), body
Answer = tuple[int, RawHeaders | EncodedHeaders, bytes]
ALLOWED_HEADERS_CACHE = 4096

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class ForwardAuthFastPath:
    """Answers ``VERIFY_PATH`` itself, before routing and the middleware stack; hands
    every other request to ``app``. Same verdict, answer, log line and records as the
    framework would give (the forward-auth tests run through it)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.log_requests = services.settings.http.access_log
        # The encoded 200 headers per principal object (the key authenticator hands out
        # one object per key and owner state, the token service one per token); checked
        # by identity, so a changed principal is a new entry. Bounded.
        # Encoded once for HTTP/1.1 too (EncodedHeaders: authgate's protocol writes them
        # as they are).
        self._allowed: dict[int, tuple[Principal, EncodedHeaders]] = {}

    def _allowed_headers(self, principal: Principal) -> EncodedHeaders:
        cached = self._allowed.get(id(principal))
        if cached is not None and cached[0] is principal:
            return cached[1]
        raw = _encoded([*identity_headers(principal).items(), ("content-length", "0")])
        raw.append((b"cache-control", b"no-store"))
        headers = EncodedHeaders(raw)
        if len(self._allowed) >= ALLOWED_HEADERS_CACHE:
            del self._allowed[next(iter(self._allowed))]
        self._allowed[id(principal)] = (principal, headers)
        return headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        services = self.services
        verdict = Verdict()
        scope[VERDICT_SCOPE_KEY] = verdict
        request = ScopeRequestInfo(scope, services)
        context = current_request.set(request)
        status = 500
        try:
            status, raw, body = await self._answer(scope, verdict)
            limit = verdict.rate_limit
            if limit is not None:
                policy, state = rate_limit_values(limit)
                rate = (
                    (b"ratelimit-policy", policy.encode("latin-1")),
                    (b"ratelimit", state.encode("latin-1")),
                )
                raw = raw.extended(rate) if isinstance(raw, EncodedHeaders) else [*raw, *rate]
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
        finally:
            finish_request(
                scope,
                request,
                verdict,
                services.gate,
                status,
                started,
                VERIFY_PATH,
                self.log_requests,
            )
            current_request.reset(context)

    async def _answer(self, scope: Scope, verdict: Verdict) -> Answer:
        # The body is never read: a subrequest carrying the upload's Content-Length
        # and no body is answered like any other (see RequestBodyLimit).
        try:
            await decide(scope, self.services)
        except Exception as unexpected:  # answered as the framework would
            status, code, message, extra = unexpected_error(unexpected)
            if status == 500:
                log.exception("forward-auth failed")
            return _error(status, code, message, extra)
        error = verdict.error
        if error is None:
            assert verdict.principal is not None
            return 200, self._allowed_headers(verdict.principal), b""
        extra = authentication_headers(error)
        extra["X-Auth-Error"] = error.code
        # ValidationFailed: 400, as on every AuthenticatedRoute.
        status = 400 if isinstance(error, ValidationFailed) else status_of(error)
        return _error(status, error.code, error.message, extra)


def _error(status: int, code: str, message: str, extra: dict[str, str]) -> Answer:
    body = json.dumps(
        error_body(status=status, code=code, message=message, path=VERIFY_PATH),
        ensure_ascii=False,
        allow_nan=False,
        indent=None,
        separators=(",", ":"),
    ).encode("utf-8")
    headers = list(error_headers(message, code, extra).items())
    headers.append(("content-length", str(len(body))))
    headers.append(("content-type", "application/json"))
    return status, _encoded(headers), body


def _encoded(headers: list[tuple[str, str]]) -> RawHeaders:
    """ASGI headers: lower-case names, latin-1, and the security headers every response
    of authgate carries."""
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    raw.extend(_SECURITY_HEADERS)
    return raw


def identity_headers(principal: Principal) -> dict[str, str]:
    """What the upstream learns about the caller (values are header-safe: logins are
    ``[_.@A-Za-z0-9-]``, roles and scopes are names)."""
    headers = {
        "X-Auth-User": principal.login,
        "X-Auth-User-Id": str(principal.user_id),
        "X-Auth-Roles": join_authorities(principal.authorities),
        "X-Auth-Permissions": join_authorities(principal.permissions),
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
    "X-Auth-Roles": "The roles in force, comma-separated (for keys, the roles that grant "
    "permissions only with the admin scope).",
    "X-Auth-Permissions": "What the roles in force permit, comma-separated (users.read, ...).",
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
        "(`ambiguous_upstream_path`), and so is a method not in upper case. A method "
        "override (a `_method` query parameter, `X-HTTP-Method-Override`, `X-HTTP-Method`, "
        "`X-Method-Override`) must be allowed as well as the method itself. Every method "
        "is accepted; the body is ignored. The error code is also in `X-Auth-Error`."
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
