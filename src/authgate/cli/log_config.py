"""The server's logging: ``AUTHGATE_LOG_FORMAT=text`` (one escaped line per record, see
``authgate.security.log_lines``) or ``json`` (one JSON object per line, for a log
shipper), to standard error, for authgate's and uvicorn's loggers alike.

JSON lines carry ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``; the
access log adds ``request_id``, ``client``, ``method``, ``path``, ``status``,
``duration_ms`` and ``principal_id``; any record logged while a request runs carries
that request's ``request_id``. JSON escapes every control character and, ASCII-only,
every line separator: a record is always one line.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

from authgate.security.log_lines import SingleLineFormatter
from authgate.services.audit.events import current_request

LogFormat = Literal["text", "json"]

# Attributes the access log sets on its records (``extra=``), in the order shown.
REQUEST_FIELDS = (
    "request_id",
    "client",
    "method",
    "path",
    "status",
    "duration_ms",
    "principal_id",
)


class RequestIdFilter(logging.Filter):
    """Gives every record logged while a request runs that request's id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request = current_request.get()
            if request is not None:
                record.request_id = request.correlation_id
        return True


class RepeatsSummarized(logging.Filter):
    """At most one warning per message and ``interval`` seconds from a logger that warns
    once per refused connection or request anyone can send (malformed heads, heads too
    large or too slow): the next one says how many were left out. A flood of garbage
    costs a line every ``interval`` seconds, not one a request (the log review: 2,000
    malformed requests were 2,000 warnings). Errors pass untouched."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self._interval = interval
        # message template -> (when one was last let through, how many left out since);
        # bounded: the templates are the code's own.
        self._last: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        template = str(record.msg)
        logged_at, left_out = self._last.get(template, (float("-inf"), 0))
        if record.created - logged_at < self._interval:
            self._last[template] = (logged_at, left_out + 1)
            return False
        if left_out:
            seconds = record.created - logged_at
            record.msg = f"{template} ({left_out} more like it in the last {seconds:.0f} s)"
        self._last[template] = (record.created, 0)
        return True


class CancelledByStop(logging.Filter):
    """uvicorn logs a request it cancels when a stop's timeout passes
    (``AUTHGATE_SHUTDOWN_TIMEOUT_SECONDS``) as an error with the whole traceback of the
    cancellation; it is the documented end of a request that outlived the stop: one
    warning line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, asyncio.CancelledError):
            record.msg = (
                "a request still running when the stop's timeout passed was cancelled "
                "(AUTHGATE_SHUTDOWN_TIMEOUT_SECONDS)"
            )
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class JsonLineFormatter(JsonFormatter):
    """Exactly the documented fields, in a fixed order (no ``extra`` leaks through)."""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = (
            datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        for name in REQUEST_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                log_data[name] = value
        log_data.update(message_dict)  # exc_info, stack_info


def log_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document (uvicorn applies it in every worker)."""
    formatter: dict[str, Any] = (
        {"()": JsonLineFormatter}
        if log_format == "json"
        else {
            # One record, one line: control characters in messages are escaped.
            "()": SingleLineFormatter,
            "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        }
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {
            "request_id": {"()": RequestIdFilter},
            "repeats": {"()": RepeatsSummarized},
            "cancelled": {"()": CancelledByStop},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "authgate": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level, "filters": ["cancelled", "repeats"]},
            # Refusals of oversized or slow requests (cli/http_protocol.py).
            "authgate.http.refused": {"filters": ["repeats"]},
            # httpx2 logs full request URLs at INFO; a webhook URL may carry a credential.
            "httpx2": {"level": "WARNING"},
        },
    }
