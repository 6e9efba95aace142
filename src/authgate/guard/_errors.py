"""Why a request was refused, and the JSON answer the caller gets.

The tree (each error carries the HTTP ``status``, a stable ``code``, a ``message`` and
the response ``headers``)::

    GuardError                       (a starlette HTTPException, so an app without
    │                                 the handler still answers with the right status)
    ├── NotAuthenticated       401   no credential, or one that is not valid
    ├── AccessDenied           403   authenticated, but a scope or role is missing
    ├── Throttled              429   authgate says slow down (423: client address blocked)
    ├── InvalidRequest         400   authgate refused the request's method or URI
    └── AuthgateUnavailable    503   authgate unreachable, failing or answering nonsense:
                                     the guard fails closed

Bodies have authgate's shape (``api/errors.py`` there), so clients of the guarded
service read the same errors as authgate's own::

    {"timestamp": "...", "status": 401, "error": "Unauthorized", "code": "invalid_token",
     "message": "Invalid token", "detail": "Invalid token", "path": "/orders"}
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

__all__ = [
    "REALM",
    "AccessDenied",
    "AuthgateUnavailable",
    "GuardError",
    "InvalidRequest",
    "NotAuthenticated",
    "Throttled",
    "error_response",
]

REALM = 'Bearer realm="authgate"'


class GuardError(HTTPException):
    """A refused request: ``status``, stable ``code``, ``message`` and ``headers``."""

    status = 400
    code = "error"
    message = "Request refused"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status or type(self).status
        self.code = code or type(self).code
        self.message = message or type(self).message
        super().__init__(self.status, detail=self.message, headers=dict(headers or {}))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r})"


class NotAuthenticated(GuardError):
    status = 401
    code = "unauthorized"
    message = "Full authentication is required to access this resource"


class AccessDenied(GuardError):
    status = 403
    code = "forbidden"
    message = "Access is denied"


class Throttled(GuardError):
    status = 429
    code = "too_many_attempts"
    message = "Too many attempts; try again later"


class InvalidRequest(GuardError):
    status = 400
    code = "validation_failed"
    message = "Request is invalid"


class AuthgateUnavailable(GuardError):
    status = 503
    code = "authgate_unavailable"
    message = "The authentication service is unavailable; try again later"


def error_response(error: GuardError, *, path: str, now: float) -> JSONResponse:
    """``error`` as authgate would answer it, never cached by intermediaries."""
    body = {
        "timestamp": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
        "status": error.status,
        "error": HTTPStatus(error.status).phrase,
        "code": error.code,
        "message": error.message,
        "detail": error.message,
        "path": path,
    }
    headers = {"Cache-Control": "no-store", **(error.headers or {})}
    return JSONResponse(body, status_code=error.status, headers=headers)
