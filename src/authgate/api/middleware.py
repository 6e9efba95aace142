"""Pure ASGI middleware (no per-request framework objects): body limit, security headers,
the access log and the records of what the gate decided (audit, API key usage)."""

from __future__ import annotations

import logging
import re
import secrets
import time

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authgate.api.access import (
    VERDICT_SCOPE_KEY,
    Verdict,
    client_address,
    header_value,
)
from authgate.api.errors import unavailable_response
from authgate.container import Services
from authgate.security.log_lines import escape_control_characters
from authgate.security.principal import Principal
from authgate.services.audit.events import current_request
from authgate.services.gate import Gate, leaves_record
from authgate.services.rate_limits import RateLimitState
from authgate.storage.db import is_unavailable

access_log = logging.getLogger("authgate.access")
log = logging.getLogger(__name__)

_TOO_LARGE = "Request body too large"


class BodyTooLarge(HTTPException):
    """Raised while reading a streamed body past the limit; rendered as 413."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail=_TOO_LARGE)


class RequestBodyLimit:
    """Refuses bodies over ``max_bytes`` when a route reads one: before asking for any of
    it when ``Content-Length`` says so, otherwise as soon as the streamed body passes the
    limit.

    A route that reads no body is answered whatever length its head declares: a
    forward-auth subrequest (nginx ``auth_request`` with ``proxy_pass_request_body off``,
    UTMStack's ``/kill`` before a file upload) carries the upload's ``Content-Length``
    and no body, and a 413 there broke every upload over the limit. The HTTP protocol
    closes such a connection after the answer and drops whatever body still comes
    (``cli/http_protocol``), so nothing unread is held or parsed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = content_length(scope)
        # The Settings UI's forms answer a body over the limit with a page of their own
        # (web/pages.read_form): there the body is read up to the limit, then refused.
        too_large = (
            declared is not None
            and declared > self.max_bytes
            and not scope["path"].startswith("/settings/")
        )
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if too_large:
                # Before asking for any of it: receive() is what makes the server send
                # "100 Continue" and wait for the body (the diff review).
                raise BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited_receive, send)


class SecurityHeadersAndRequestLogs:
    """Adds defensive headers (and an API key's RateLimit headers) to every response, and
    once it is sent, logs one access line and hands what happened to the audit trail and
    the API key usage log (both written in batches elsewhere, never here).

    While a request runs it is the "current request" of the audit trail, so events that
    services record carry its client address, user agent, path and correlation id.
    Logs carry the path without the query string: a query may carry a token
    (``access_token``) and must not reach a log; control characters in the path are
    escaped (one request, one line).
    """

    def __init__(self, app: ASGIApp, *, services: Services) -> None:
        self.app = app
        self.services = services
        self.log_requests = services.settings.http.access_log
        self.gate: Gate = services.gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        is_api = scope["path"].startswith("/api/")
        verdict = scope[VERDICT_SCOPE_KEY] = Verdict()
        status_sent = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, status_sent
            if message["type"] == "http.response.start":
                status = message["status"]
                status_sent = True
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if is_api:
                    headers.setdefault("Cache-Control", "no-store")
                limit = verdict.rate_limit
                if limit is not None:
                    headers["RateLimit-Policy"], headers["RateLimit"] = rate_limit_values(limit)
            await send(message)

        request = ScopeRequestInfo(scope, self.services)
        context = current_request.set(request)
        try:
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception as error:
                # The database is down (or unreachable): whatever the route, the caller
                # gets a 503 with Retry-After, never a reset connection, and the access
                # log the status really sent. Anything else stays a bug (500, traced).
                if not is_unavailable(error) or status_sent:
                    raise
                log.warning("database unavailable (%s): answered 503", type(error).__name__)
                response = unavailable_response(Request(scope))
                await response(scope, receive, send_with_headers)
        finally:
            finish_request(
                scope,
                request,
                verdict,
                self.gate,
                status,
                started,
                scope["path"],
                self.log_requests,
            )
            current_request.reset(context)


def rate_limit_values(limit: RateLimitState) -> tuple[str, str]:
    """The ``RateLimit-Policy`` and ``RateLimit`` values (IETF draft) of a key's limit."""
    return (
        f'"key";q={limit.limit};w={limit.window_seconds}',
        f'"key";r={limit.remaining};t={limit.reset_seconds}',
    )


def finish_request(
    scope: Scope,
    request: ScopeRequestInfo,
    verdict: Verdict,
    gate: Gate,
    status: int,
    started: float,
    path: str,
    log_requests: bool,
) -> None:
    """What every request leaves when it is answered, through the framework or the
    forward-auth fast path alike: its access line, and its verdict's record when it
    leaves one (``path``: the route's path as recorded)."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    if log_requests:
        log_request(scope, request, status, elapsed_ms)
    if leaves_record(verdict):
        gate.record(
            verdict,
            method=scope["method"],
            path=path,
            status=status,
            user_agent=header_value(scope, b"user-agent"),
            elapsed_ms=elapsed_ms,
        )


def log_request(scope: Scope, request: ScopeRequestInfo, status: int, elapsed_ms: float) -> None:
    """The access line; its parts also as fields, for the JSON log format."""
    client = scope.get("client")
    address = client[0] if client else "-"
    # The method and path are the caller's text: escaped, so a %0a cannot forge a line.
    method = escape_control_characters(scope["method"])
    path = escape_control_characters(scope["path"])
    request_id = request.correlation_id
    principal = request.principal
    access_log.info(
        "%s %s %s %d %.1fms %s",
        address,
        method,
        path,
        status,
        elapsed_ms,
        request_id,
        extra={
            "request_id": request_id,
            "client": address,
            # Raw in the fields: the JSON format escapes them itself.
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(elapsed_ms, 3),
            "principal_id": principal.user_id if principal is not None else None,
        },
    )


class ScopeRequestInfo:
    """The audit trail's view of the current request, computed only when asked for."""

    __slots__ = ("_correlation_id", "_scope", "_services")

    def __init__(self, scope: Scope, services: Services) -> None:
        self._scope = scope
        self._services = services
        self._correlation_id: str | None = None

    @property
    def client_ip(self) -> str | None:
        address = client_address(self._scope, self._services)
        return str(address) if address is not None else None

    @property
    def user_agent(self) -> str | None:
        return header_value(self._scope, b"user-agent")

    @property
    def path(self) -> str | None:
        verdict: Verdict | None = self._scope.get(VERDICT_SCOPE_KEY)
        upstream = verdict.upstream if verdict is not None else None
        return str(upstream[1] if upstream else self._scope["path"])

    @property
    def correlation_id(self) -> str | None:
        """The caller's X-Request-ID when it looks like one, else a new random id."""
        if self._correlation_id is None:
            given = header_value(self._scope, b"x-request-id")
            valid = given is not None and _REQUEST_ID.fullmatch(given) is not None
            self._correlation_id = given if valid else secrets.token_hex(8)
        return self._correlation_id

    @property
    def principal(self) -> Principal | None:
        verdict: Verdict | None = self._scope.get(VERDICT_SCOPE_KEY)
        return verdict.principal if verdict is not None else None


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
