"""The one place that turns errors into HTTP responses.

Every error body has Spring Boot's shape, which UTMStack's documentation shows,
plus a stable ``code``, a ``message`` and the same message as ``detail``::

    {"timestamp": "...", "status": 401, "error": "Unauthorized", "code": "invalid_token",
     "message": "Invalid token", "detail": "Invalid token", "path": "/api/account"}

``detail`` is where UTMStack's problem JSON carries the message, and where its Angular
client looks for it (the getting-started dialog matches "Incorrect password" there).

Validation errors add JHipster's ``fieldErrors``. Nothing else reaches a client: no
stack trace, no class name, no input echoed back. UTMStack's ``X-UtmStack-error``
header carries the message too, for scripts that read only headers, and
``X-UtmStack-params`` the code (JHipster's ``HeaderUtil.createFailureAlert``).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from authgate.clock import utc_now
from authgate.exceptions import (
    AuthenticationFailed,
    AuthgateError,
    ClientBlocked,
    Conflict,
    CredentialsMissing,
    FieldError,
    NotFound,
    PermissionDenied,
    Throttled,
    Unavailable,
    ValidationFailed,
)
from authgate.services.user_fields import EMAIL_PATTERN
from authgate.storage.db import is_unavailable
from authgate.storage.errors import (
    CONCURRENT_CHANGE_ERRORS,
    describe_concurrent_change,
    is_concurrent_change,
)

log = logging.getLogger(__name__)

REALM = 'Bearer realm="authgate"'
JSON_REQUIRED = "Content-Type must be application/json"


class FieldErrorBody(BaseModel):
    objectName: str
    field: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    timestamp: str = Field(examples=["2025-04-16T16:26:35.664+00:00"])
    status: int = Field(examples=[401])
    error: str = Field(examples=["Unauthorized"])
    code: str = Field(examples=["invalid_token"], description="Stable machine-readable code.")
    message: str = Field(examples=["Invalid token"])
    detail: str = Field(
        examples=["Invalid token"], description="The message again, where problem JSON has it."
    )
    path: str = Field(examples=["/api/account"])
    fieldErrors: list[FieldErrorBody] | None = None


_DESCRIPTIONS = {
    400: "Invalid request: malformed JSON or a field breaks a rule (see fieldErrors)",
    401: "Missing, invalid, expired or revoked credentials",
    403: "Authenticated, but not allowed",
    404: "Not found",
    409: "Conflicts with the current state",
    412: "A wrong, used, expired or locked second-factor code (UTMStack v11)",
    413: "Request body too large",
    415: "The body is not sent as application/json",
    422: "A field breaks a rule (see fieldErrors)",
    423: "Locked",
    429: "Too many requests",
    503: "Service unavailable",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses, all with :class:`ErrorBody`."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses
    }


def status_of(error: AuthgateError) -> int:
    if isinstance(error, Unavailable):
        return 503
    if isinstance(error, ClientBlocked):
        return 423
    if isinstance(error, Throttled):
        return 429
    if isinstance(error, AuthenticationFailed):
        return 401
    if isinstance(error, PermissionDenied):
        return 403
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    return 400


def error_body(
    *,
    status: int,
    code: str,
    message: str,
    path: str | None,
    field_errors: tuple[FieldError, ...] = (),
) -> dict[str, Any]:
    """The JSON body of an error response (see the module docstring); without ``path``
    when there is none to tell (the HTTP protocol's own refusals)."""
    body: dict[str, Any] = {
        "timestamp": utc_now().isoformat(timespec="milliseconds"),
        "status": status,
        "error": HTTPStatus(status).phrase,
        "code": code,
        "message": message,
        "detail": message,
    }
    if path is not None:
        body["path"] = path
    if field_errors:
        body["fieldErrors"] = [
            {"objectName": e.object_name, "field": e.field, "message": e.message}
            for e in field_errors
        ]
    return body


def error_headers(message: str, code: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """The headers of every error response, and ``headers``."""
    # JHipster's HeaderUtil.createFailureAlert sends both: the message and its params
    # (there the entity name; here the stable code, which says as much).
    all_headers = {
        "X-UtmStack-error": _header_safe(message),
        "X-UtmStack-params": _header_safe(code),
        "Cache-Control": "no-store",
    }
    all_headers.update(headers or {})
    return all_headers


def error_response(
    request: Request,
    *,
    status: int,
    code: str,
    message: str,
    field_errors: tuple[FieldError, ...] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    if is_v12_path(request.url.path):
        return v12_error_response(request, status=status, message=message, headers=headers)
    body = error_body(
        status=status, code=code, message=message, path=request.url.path, field_errors=field_errors
    )
    return JSONResponse(body, status_code=status, headers=error_headers(message, code, headers))


# UTMStack v12's API: every error is just ``{"error": "<message>"}``.
V12_PREFIX = "/api/v1/"


def is_v12_path(path: str) -> bool:
    """Whether ``path`` is v12's API: under ``/api/v1/``, or ``/api/v1`` itself."""
    return path.startswith(V12_PREFIX) or path == V12_PREFIX[:-1]


class V12ErrorBody(BaseModel):
    """The body of every error response under ``/api/v1`` (UTMStack v12's shape)."""

    error: str = Field(examples=["invalid credentials"])


def documented_v12(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for ``/api/v1`` error statuses (:class:`V12ErrorBody`)."""
    return {
        status: {"model": V12ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses
    }


def v12_error_response(
    request: Request, *, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    # v12 has no 423: a blocked client is "too many attempts" like a throttled one.
    status = 429 if status == 423 else status
    all_headers = {"Cache-Control": "no-store"}
    all_headers.update(headers or {})
    return JSONResponse({"error": message}, status_code=status, headers=all_headers)


def validation_status(request: Request) -> int:
    """400 (JHipster) unless the route's class says otherwise (the API key routes: 422)."""
    return int(getattr(request.scope.get("route"), "validation_status", 400))


def authgate_error_response(request: Request, error: AuthgateError) -> JSONResponse:
    status = validation_status(request) if isinstance(error, ValidationFailed) else status_of(error)
    field_errors = error.field_errors if isinstance(error, ValidationFailed) else ()
    return error_response(
        request,
        status=status,
        code=error.code,
        message=error.message,
        field_errors=field_errors,
        headers=authentication_headers(error),
    )


def authentication_headers(error: AuthgateError) -> dict[str, str]:
    """``WWW-Authenticate`` and ``Retry-After`` for an error, where they apply."""
    headers = {}
    if isinstance(error, CredentialsMissing):
        headers["WWW-Authenticate"] = REALM
    elif isinstance(error, AuthenticationFailed):
        headers["WWW-Authenticate"] = (
            f'{REALM}, error="invalid_token", error_description="{_header_safe(error.message)}"'
        )
    elif isinstance(error, PermissionDenied):
        headers["WWW-Authenticate"] = f'{REALM}, error="insufficient_scope"'
    if isinstance(error, Throttled | Unavailable):
        headers["Retry-After"] = str(error.retry_after)
    return headers


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AuthgateError, _on_authgate_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)  # type: ignore[arg-type]
    for concurrent in CONCURRENT_CHANGE_ERRORS:
        app.add_exception_handler(concurrent, _on_concurrent_change)
    app.add_exception_handler(Exception, _on_unexpected)


async def _on_authgate_error(request: Request, error: AuthgateError) -> JSONResponse:
    return authgate_error_response(request, error)


async def _on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    if isinstance(error.body, bytes) and error.body:
        # FastAPI parses a JSON body only under a JSON Content-Type (application/json,
        # with any charset, or application/*+json) and hands the model the raw bytes
        # otherwise: the body was sent as text/plain, a form or without a type. Spring
        # answers a @RequestBody so with 415 too; "not a valid dictionary" misleads.
        return error_response(
            request, status=415, code="unsupported_media_type", message=JSON_REQUIRED
        )
    field_errors = tuple(_field_error(detail) for detail in error.errors())
    return error_response(
        request,
        status=validation_status(request),
        code="validation_failed",
        message=field_errors[0].message if field_errors else "Request is invalid",
        field_errors=field_errors,
    )


async def _on_http_exception(request: Request, error: StarletteHTTPException) -> Response:
    if error.status_code == 400:
        # FastAPI's "There was an error parsing the body" (e.g. bytes that are not UTF-8):
        # a validation failure like malformed JSON, answered the same way.
        return error_response(
            request,
            status=validation_status(request),
            code="validation_failed",
            message="Malformed body",
            field_errors=(FieldError(field="body", message="Malformed body"),),
        )
    status = error.status_code
    phrase = HTTPStatus(status).phrase
    # A body over the limit is "payload_too_large" whether Content-Length declared it
    # (RequestBodyLimit's own answer) or reading it found it (BodyTooLarge, here).
    code = (
        "payload_too_large" if status == 413 else phrase.lower().replace(" ", "_").replace("-", "_")
    )
    message = error.detail if isinstance(error.detail, str) else phrase
    headers = dict(error.headers or {})
    if status == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
        if request.url.path.startswith("/settings/"):
            # A browser (or a form posted to the wrong page) under the Settings UI gets a
            # page it can read, as for an unknown page there, not the API's JSON.
            return _settings_page(_METHOD_PAGE, 405, headers)
    return error_response(request, status=status, code=code, message=message, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method the resource at this path serves. Starlette names only the first
    route's, but several routes may share a path (GET and POST /api/authenticate).
    A literal path wins over a template it also fits: /api/api-keys/review is the
    review (GET), not a key id that is not a number (/api/api-keys/{key_id})."""
    methods_by_parameters: dict[int, set[str]] = {}
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            parameters = len(getattr(route, "param_convertors", ()))
            methods_by_parameters.setdefault(parameters, set()).update(
                getattr(route, "methods", None) or ()
            )
    if not methods_by_parameters:
        return []
    return sorted(methods_by_parameters[min(methods_by_parameters)])


# Seconds a client should wait before trying again while the database is unreachable.
UNAVAILABLE_RETRY_AFTER = 1
UNAVAILABLE_MESSAGE = "The service is temporarily unavailable; try again shortly."
# The Settings pages' answers to what happens before a page's own code runs (or around
# it): a page a browser shows (no template: nothing here may need more than the process
# itself), styled by the UI's own stylesheet. Fixed texts only, never the request's.
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · authgate</title>
<link rel="stylesheet" href="/settings/static/app.css"></head>
<body><main id="main"><section class="card narrow">
<h1>{title}</h1>
<p>{message}</p>
<p><a href="{link}">{link_text}</a></p>
</section></main></body></html>
"""
_BACK = ("/settings/api-keys", "Back to the settings")
_UNAVAILABLE_PAGE = _PAGE.format(
    title="Temporarily unavailable",
    message="authgate cannot reach its database right now. Nothing was changed.\n"
    "Try again in a few seconds.",
    link="",
    link_text="Try again",
)
_METHOD_PAGE = _PAGE.format(
    title="Not allowed here",
    message="This page does not take that kind of request. Nothing was changed.",
    link=_BACK[0],
    link_text=_BACK[1],
)
_CONFLICT_PAGE = _PAGE.format(
    title="Changed meanwhile",
    message="Another request changed or deleted this while yours was on its way. Nothing "
    "of yours\nwas saved. Reload the page and try again.",
    link=_BACK[0],
    link_text=_BACK[1],
)
_PAGE_POLICY = "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'"


def _settings_page(page: str, status: int, headers: dict[str, str]) -> HTMLResponse:
    return HTMLResponse(
        page, status_code=status, headers={**headers, "Content-Security-Policy": _PAGE_POLICY}
    )


def unavailable_response(request: Request) -> Response:
    """503 with Retry-After: JSON (the usual error body), or a page under /settings/."""
    headers = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER), "Cache-Control": "no-store"}
    if request.url.path.startswith("/settings/"):
        return _settings_page(_UNAVAILABLE_PAGE, 503, headers)
    return error_response(
        request,
        status=503,
        code="database_unavailable",
        message=UNAVAILABLE_MESSAGE,
        headers=headers,
    )


async def _on_concurrent_change(request: Request, error: Exception) -> Response:
    """A write that another request's change (on this node or another) made impossible:
    a rename to a name just taken, an update of a row just deleted. 409, not a 500 that
    closes the connection; the client reloads and retries. Any other integrity error
    is a bug: raised on, to the 500 handler (traced)."""
    if not is_concurrent_change(error):
        raise error
    log.warning(
        "a concurrent change refused a write (%s): answered 409", describe_concurrent_change(error)
    )
    if request.url.path.startswith("/settings/"):
        return _settings_page(_CONFLICT_PAGE, 409, {"Cache-Control": "no-store"})
    return error_response(
        request,
        status=409,
        code="conflict",
        message="Another request changed or deleted this meanwhile; reload and try again.",
    )


async def _on_unexpected(request: Request, error: Exception) -> Response:
    if is_unavailable(error):
        # Not a bug: the database is down or, on SQLite, busy beyond its timeout under
        # overload. A 503 tells clients and load balancers to come back shortly.
        log.warning("database unavailable (%s): answered 503", type(error).__name__)
        return unavailable_response(request)
    # Starlette logs the traceback; the client learns nothing about the cause.
    return error_response(
        request, status=500, code="internal_error", message="Internal server error"
    )


def unexpected_error(error: Exception) -> tuple[int, str, str, dict[str, str]]:
    """Status, code, message and headers for an error no one expected, for a handler
    without a Request (forward-auth's fast path): as ``_on_unexpected`` answers."""
    if is_unavailable(error):
        log.warning("database unavailable (%s): answered 503", type(error).__name__)
        headers = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER), "Cache-Control": "no-store"}
        return 503, "database_unavailable", UNAVAILABLE_MESSAGE, headers
    return 500, "internal_error", "Internal server error", {}


def _field_error(detail: Any) -> FieldError:
    """One pydantic error as a JHipster field error. The input value is never echoed."""
    parts = list(detail.get("loc", ()))
    object_name = str(parts[0]) if parts else "body"
    if detail.get("type") == "json_invalid":
        return FieldError(field="body", message="Malformed JSON", object_name="body")
    # ("body", "allowedIp", 0) -> "allowedIp[0]", the form the services use too.
    field = ""
    for part in parts[1:]:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    field = field or object_name
    if detail.get("type") == "missing":
        # UTMStack's wording: "Name is required."
        return FieldError(
            field=field,
            message=f"{field[:1].upper()}{field[1:]} is required.",
            object_name=object_name,
        )
    message = str(detail.get("msg", "invalid"))
    if detail.get("type") == "string_pattern_mismatch" and (
        (detail.get("ctx") or {}).get("pattern") == EMAIL_PATTERN
    ):
        # Not the pattern itself (a regex is no message): Spring's @Email message, as
        # UTMStack's UserDTO answers.
        message = "must be a well-formed email address"
    elif detail.get("type") == "value_error":
        # Pydantic prefixes what a validator raised: the message is the validator's.
        message = message.removeprefix("Value error, ")
    return FieldError(field=field, message=message, object_name=object_name)


def _header_safe(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii").replace("\r", " ").replace("\n", " ")
