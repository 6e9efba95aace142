"""What the SDK raises, and how an HTTP answer becomes one of these exceptions.

Runtime failures descend from :class:`AuthgateClientError`, so one ``except`` catches
everything a server or the network can do::

    AuthgateClientError
    ├── TransportError             no answer: connection refused, timeout, TLS failure
    ├── SecondFactorRequired       the server wants a second factor and no hook was given
    ├── UnexpectedResponseError    a success answer that is not what the API promises
    └── APIError                   the server answered with anything but a 2xx status
        ├── RedirectError              3xx: a redirect, never followed (location)
        ├── AuthenticationError        401: missing, bad, expired or revoked credentials
        │   └── SecondFactorRejected   412 from /api/tfa/verify-code: wrong code
        ├── PermissionDeniedError      403: authenticated, not allowed (role, scope, IP)
        ├── NotFoundError              404
        ├── ConflictError              409: duplicate name or login, last admin, ...
        ├── ValidationError            400 and 422: a field breaks a rule (field_errors)
        ├── LockedError                423: this client address is blocked (retry_after)
        ├── RateLimitedError           429: too many requests (retry_after)
        └── ServerError                5xx

Misuse is kept outside the tree, as in httpx: :class:`ClientConfigError` (a
``ValueError``) means the client was set up wrong — no URL, no credentials, both an API
key and a password — and :class:`ClientClosedError` (a ``RuntimeError``) that it was
used after ``close()``, so catching :class:`AuthgateClientError` never hides a bug.

A redirect is an error: the client never follows one (its credentials go to its own
server only), so the request was not carried out, and a revocation or a logout that
"succeeded" with a 302 would leave the credential working.

The message of an :class:`APIError` is the server's: the JSON ``message`` (authgate,
Spring), else UTMStack's ``X-UtmStack-error`` header (UTMStack answers some errors with
an empty body), else the status phrase. It never contains a credential: the server
never echoes one, and the request's headers are not part of it. Nor does the response
an exception carries: its request is replaced by one without a body (a login's
password, a refresh token, a second-factor code) and with credential headers masked
(see :func:`without_secrets`), since exceptions end up in logs and error reports.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

import httpx2

__all__ = [
    "APIError",
    "AuthenticationError",
    "AuthgateClientError",
    "ClientClosedError",
    "ClientConfigError",
    "ConflictError",
    "FieldError",
    "LockedError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RedirectError",
    "SecondFactorRejected",
    "SecondFactorRequired",
    "ServerError",
    "SessionEndedError",
    "TransportError",
    "UnexpectedResponseError",
    "ValidationError",
    "without_secrets",
]


class ClientConfigError(ValueError):
    """The client is set up wrong (a bug or a missing setting, not a server failure)."""


class ClientClosedError(RuntimeError):
    """The client was used after ``close()``/``aclose()`` (or its ``with`` block)."""


class AuthgateClientError(Exception):
    """Root of every failure the server or the network can cause."""


class TransportError(AuthgateClientError):
    """No HTTP answer: the connection failed, timed out or TLS verification failed.

    The original ``httpx2`` exception is the ``__cause__``.
    """


class SecondFactorRequired(AuthgateClientError):
    """The server answered ``authenticated: false``: a second factor is required.

    Give the client a ``second_factor`` hook (a callable returning the code) to complete
    the login with ``POST /api/tfa/verify-code``.
    """


class SessionEndedError(AuthgateClientError):
    """A v12 session resumed from a refresh token has no tokens left (logged out, or its
    refresh was refused) and no password to log in again."""


class UnexpectedResponseError(AuthgateClientError):
    """A success status with a body the API does not promise (not JSON, no token...)."""

    def __init__(self, message: str, *, response: httpx2.Response) -> None:
        super().__init__(message)
        self.response = without_secrets(response)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One field that broke a rule (JHipster's ``fieldErrors`` entry)."""

    field: str
    message: str
    object_name: str | None = None


class APIError(AuthgateClientError):
    """The server answered with an error status, or a redirect (not followed).

    Attributes:
        status_code: the HTTP status.
        message: the server's message (JSON ``message``, ``X-UtmStack-error`` or phrase).
        code: authgate's stable machine-readable code (``invalid_api_key``...), if any.
        retry_after: seconds the server asked to wait (``Retry-After``), if any.
        response: the response, for anything else (its body is already read).
    """

    def __init__(
        self,
        message: str,
        *,
        response: httpx2.Response,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.response = without_secrets(response)
        self.status_code = response.status_code
        self.code = code
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}"


class RedirectError(APIError):
    """3xx: the server redirected and the client did not follow, so nothing was done.

    Attributes:
        location: where it pointed, without user info, query or fragment (they may
            hold a secret), or None when the answer named no place.
    """

    def __init__(self, message: str, *, response: httpx2.Response, location: str | None) -> None:
        super().__init__(message, response=response)
        self.location = location


class AuthenticationError(APIError):
    """401: credentials missing, wrong, expired or revoked."""


class SecondFactorRejected(AuthenticationError):
    """The second-factor code was refused (UTMStack answers 412)."""


class PermissionDeniedError(APIError):
    """403: authenticated, but not allowed (role, key scope, client address)."""


class NotFoundError(APIError):
    """404: no such resource (or not yours)."""


class ConflictError(APIError):
    """409: conflicts with the current state (duplicate name or login, last admin)."""


class ValidationError(APIError):
    """400 or 422: the request breaks a rule; ``field_errors`` lists each field."""

    def __init__(
        self,
        message: str,
        *,
        response: httpx2.Response,
        code: str | None = None,
        retry_after: float | None = None,
        field_errors: tuple[FieldError, ...] = (),
    ) -> None:
        super().__init__(message, response=response, code=code, retry_after=retry_after)
        self.field_errors = field_errors


class LockedError(APIError):
    """423: this client address is blocked (too many failed logins); see ``retry_after``."""


class RateLimitedError(APIError):
    """429: too many requests or login attempts; see ``retry_after``."""


class ServerError(APIError):
    """5xx: the server failed (503: temporarily unavailable)."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    423: LockedError,
    429: RateLimitedError,
}


def error_for(response: httpx2.Response) -> APIError:
    """The exception for a response that is not a success (its body must have been read)."""
    status = response.status_code
    if 300 <= status < 400:
        return _redirect_error(response)
    body = json_object(response)
    message = _message(response, body)
    code = body.get("code") if isinstance(body.get("code"), str) else None
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    if kind is ValidationError:
        return ValidationError(
            message,
            response=response,
            code=code,
            retry_after=retry_after,
            field_errors=_field_errors(body),
        )
    return kind(message, response=response, code=code, retry_after=retry_after)


def _redirect_error(response: httpx2.Response) -> RedirectError:
    # Imported here: _config imports this module.
    from authgate.client._config import shown_request_url, shown_url

    status = f"{response.status_code} {_phrase(response.status_code)}"
    target = response.headers.get("Location", "").strip()
    location = None
    if target:
        try:
            location = shown_request_url(response.request.url.join(target))
        except (httpx2.InvalidURL, RuntimeError):  # unreadable, or a response without request
            location = shown_url(target)
    where = f"to {location}" if location else "without a Location"
    return RedirectError(
        f"the server redirected {where} ({status}); the client does not follow"
        " redirects, so nothing was done: check the server URL (http:// for https://?)",
        response=response,
        location=location,
    )


def second_factor_rejected(response: httpx2.Response) -> SecondFactorRejected:
    """The exception for a refused second-factor code."""
    body = json_object(response)
    code = body.get("code") if isinstance(body.get("code"), str) else None
    return SecondFactorRejected(_message(response, body), response=response, code=code)


_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "utm-api-key", "x-internal-key"}
)


def without_secrets(response: httpx2.Response) -> httpx2.Response:
    """``response``, its request replaced by a copy without a body and with credential
    headers masked (method, URL and other headers kept): what an exception may carry."""
    try:
        request = response.request
    except RuntimeError:  # a response built without its request (tests, fakes)
        return response
    headers = [
        (name, "[redacted]" if name.lower() in _CREDENTIAL_HEADERS else value)
        for name, value in request.headers.multi_items()
        if name.lower() != "content-length"
    ]
    response.request = httpx2.Request(
        request.method, request.url, headers=headers, extensions=request.extensions
    )
    return response


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def json_object(response: httpx2.Response) -> dict[str, Any]:
    """The answer's JSON object; ``{}`` for an empty body, one that is not JSON or not an
    object (the callers read fields that may be missing anyway)."""
    if not response.content:
        return {}
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(response: httpx2.Response, body: dict[str, Any]) -> str:
    for name in ("message", "error"):  # "error": v12's only field (/api/v1)
        message = body.get(name)
        if isinstance(message, str) and message.strip():
            return message
    header = response.headers.get("X-UtmStack-error")
    if header and header.strip():
        return header.strip()
    return _phrase(response.status_code)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _field_errors(body: dict[str, Any]) -> tuple[FieldError, ...]:
    entries = body.get("fieldErrors")
    if not isinstance(entries, list):
        return ()
    return tuple(
        FieldError(
            field=str(entry.get("field", "")),
            message=str(entry.get("message", "")),
            object_name=entry.get("objectName")
            if isinstance(entry.get("objectName"), str)
            else None,
        )
        for entry in entries
        if isinstance(entry, dict)
    )
