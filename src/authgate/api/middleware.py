"""Pure ASGI middleware (no per-request framework objects): body limit, security headers,
the access log and the API key usage log."""

from __future__ import annotations

import logging
import time

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authgate.api.access import (
    CLIENT_IP_SCOPE_KEY,
    KEY_FAILURE_SCOPE_KEY,
    PRINCIPAL_SCOPE_KEY,
    header_value,
)
from authgate.api.errors import error_response
from authgate.clock import Clock
from authgate.services.usage import UsageEvent, UsageRecorder

access_log = logging.getLogger("authgate.access")

_TOO_LARGE = "Request body too large"


class BodyTooLarge(HTTPException):
    """Raised while reading a streamed body past the limit; rendered as 413."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail=_TOO_LARGE)


class RequestBodyLimit:
    """Refuses bodies over ``max_bytes``: at once when ``Content-Length`` says so,
    otherwise as soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            response = error_response(
                Request(scope), status=413, code="payload_too_large", message=_TOO_LARGE
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited_receive, send)


class SecurityHeadersAndRequestLogs:
    """Adds defensive headers to every response; once it is sent, logs one access line
    and, for requests made (or attempted) with a known API key, queues a usage record.

    Logs carry the path without the query string: a query may carry a token
    (``access_token``) and must not reach a log. Usage records are written in batches
    by ``UsageRecorder``, never here.
    """

    def __init__(
        self, app: ASGIApp, *, log_requests: bool, usage: UsageRecorder, clock: Clock
    ) -> None:
        self.app = app
        self.log_requests = log_requests
        self.usage = usage
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        is_api = scope["path"].startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if is_api:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            if self.log_requests:
                client = scope.get("client")
                access_log.info(
                    "%s %s %s %d %.1fms",
                    client[0] if client else "-",
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed_ms,
                )
            self._record_key_usage(scope, status, elapsed_ms)

    def _record_key_usage(self, scope: Scope, status: int, elapsed_ms: float) -> None:
        failure = scope.get(KEY_FAILURE_SCOPE_KEY)
        if failure is not None:
            key, reason = failure
        else:
            principal = scope.get(PRINCIPAL_SCOPE_KEY)
            if principal is None or principal.api_key is None:
                return
            key, reason = principal.api_key, None
        self.usage.record(
            UsageEvent(
                api_key_id=key.key_id,
                api_key_name=key.name,
                user_id=key.owner_id,
                occurred_at=self.clock(),
                method=scope["method"],
                path=scope["path"],
                status=status,
                client_ip=scope.get(CLIENT_IP_SCOPE_KEY),
                user_agent=header_value(scope, b"user-agent"),
                latency_ms=round(elapsed_ms, 3),
                failure_reason=reason,
            )
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
