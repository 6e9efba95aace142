"""Keeps credentials out of what httpx2 and httpcore2 log for the client.

With logging at DEBUG, httpcore2 logs every response's headers, and the answer to
``POST /api/authenticate`` carries ``Authorization: Bearer <token>``: the access token
would land in the application's logs. The client installs :class:`RedactingFilter` on
the loggers of those two libraries (once, when a client is created): in their records,
the values of credential headers, ``Bearer`` tokens, anything shaped like a JWT and
the values of query parameters named like a secret (``code``, ``token``, ``key``...)
become ``[redacted]``. Nothing else changes: the filter never drops a record.

A logger's filter sees only the records of that logger, not of its children, so each
logger httpcore2 logs with is named.
"""

from __future__ import annotations

import logging
import re

__all__ = ["LOGGERS", "RedactingFilter", "install_log_redaction", "redacted"]

LOGGERS = (
    "httpx2",
    "httpcore2",
    "httpcore2.connection",
    "httpcore2.http11",
    "httpcore2.http2",
    "httpcore2.proxy",
    "httpcore2.socks",
)

_MASK = "[redacted]"
_CREDENTIAL_HEADERS = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "utm-api-key",
    "x-internal-key",
)
# httpcore2 writes headers as a list of (name, value) byte-string pairs.
_NAMES = "|".join(_CREDENTIAL_HEADERS)
_HEADER_PAIR = re.compile(
    rf"""(\(b?(['"])(?:{_NAMES})\2,\s*b?)(['"])(?:\\.|(?!\3).)*\3""", re.IGNORECASE
)
_BEARER = re.compile(r"""\b(bearer)\s+[^\s'",)\]}]+""", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]*")
# httpx2 logs each request's URL at INFO, and UTMStack v10's second step sends the
# one-time code in the query (``/api/tfa/verifyCode?code=654321``). Only parameters
# whose names say secret are masked: the filter serves every httpx2 user of the
# process, whose other parameters (``page=2``) stay readable.
_SECRET_PARAMETER = re.compile(
    r"""([?&][\w.-]*(?:code|token|key|secret|passw|pwd|otp|sig|auth)[\w.-]*=)[^&#\s'"]*""",
    re.IGNORECASE,
)


def redacted(message: str) -> str:
    """``message`` with credential header values, bearer tokens, JWTs and the values of
    secret-sounding query parameters masked."""
    message = _HEADER_PAIR.sub(rf"\1'{_MASK}'", message)
    message = _BEARER.sub(rf"\1 {_MASK}", message)
    message = _SECRET_PARAMETER.sub(rf"\1{_MASK}", message)
    return _JWT.sub(_MASK, message)


class RedactingFilter(logging.Filter):
    """Rewrites a record whose message holds a credential; keeps every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: the handler reports it
            return True
        safe = redacted(message)
        if safe != message:
            record.msg = safe
            record.args = None
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Add the filter to httpx2's and httpcore2's loggers, once per process."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
