"""The sinks fired alerts go to: webhook, syslog (CEF), e-mail and the log; the messages
they carry (``Alert``, ``CheckpointNotice``), and the sinks the settings configure.

The log, webhook and syslog sinks also carry a second kind of message, the audit chain's
signed checkpoints (``CheckpointNotice``): copies kept outside the database are what
``authgate audit verify --checkpoint`` checks a trail against. E-mail does not (one
message every few minutes would bury the alerts).

A sink only delivers one message, raising ``DeliveryError`` when it cannot. Queueing,
retries with backoff and the bounds that keep a sink that is down from delaying the
others are ``alert_dispatch.AlertDispatcher``'s.

Secrets (the webhook secret, the SMTP password, a webhook URL's path, which some services
use as a credential) never appear in logs or ``DeliveryError`` messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Protocol, TypeVar
from urllib.parse import SplitResult, urlsplit

import httpx2

from authgate import __version__
from authgate.clock import Clock, format_utc, utc_now
from authgate.exceptions import ConfigurationError
from authgate.services.mail import (
    CONTROL_CHARACTERS,
    Mailer,
    MailNotSent,
    SmtpServer,
    smtp_server_from,
    validate_email_address,
)
from authgate.services.severity import Severity
from authgate.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# RFC 5424 facility "security/authorization messages (private)" and severity per level.
SYSLOG_FACILITY_AUTHPRIV = 10
SYSLOG_SEVERITY: dict[Severity, int] = {"critical": 2, "high": 3, "medium": 4, "low": 5}
CEF_SEVERITY: dict[Severity, int] = {"critical": 10, "high": 8, "medium": 5, "low": 3}
SYSLOG_SEVERITY_INFORMATIONAL = 6

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DeliveryError(Exception):
    """A sink could not deliver an alert. The message names the sink, never a secret."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One fired alert rule: ``count`` events about ``subject`` within ``window_seconds``."""

    id: int
    rule_name: str
    kind: str
    severity: Severity
    subject: str
    count: int
    window_seconds: int
    fired_at: datetime
    summary: str

    def __post_init__(self) -> None:
        if self.fired_at.utcoffset() is None:
            raise ValueError("fired_at must be timezone-aware")

    def as_json(self) -> dict[str, str | int]:
        """The alert as a JSON object; ``fired_at`` is ISO 8601 UTC with a ``Z``."""
        return {
            "id": self.id,
            "rule_name": self.rule_name,
            "kind": self.kind,
            "severity": self.severity,
            "subject": self.subject,
            "count": self.count,
            "window_seconds": self.window_seconds,
            "fired_at": format_utc(self.fired_at),
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class CheckpointNotice:
    """A signed checkpoint of the audit chain, as published: ``checkpoint`` is the JWS
    (the only part a verifier trusts); the rest repeats its claims for people."""

    checkpoint: str
    position: int
    hash: str
    time: datetime
    node: str
    reason: str

    def __post_init__(self) -> None:
        if self.time.utcoffset() is None:
            raise ValueError("time must be timezone-aware")

    def as_json(self) -> dict[str, str | int]:
        return {
            "kind": "audit_checkpoint",
            "checkpoint": self.checkpoint,
            "position": self.position,
            "hash": self.hash,
            "time": format_utc(self.time),
            "node": self.node,
            "reason": self.reason,
        }


class AlertSink(Protocol):
    """Somewhere alerts go. ``deliver`` raises (preferably ``DeliveryError``) on failure."""

    name: str

    async def deliver(self, alert: Alert) -> None: ...


class CheckpointSink(AlertSink, Protocol):
    """A sink that also keeps audit checkpoints (``deliver_checkpoint``)."""

    async def deliver_checkpoint(self, notice: CheckpointNotice) -> None: ...


def keeps_checkpoints(sink: AlertSink) -> bool:
    return callable(getattr(sink, "deliver_checkpoint", None))


# --- target validation (also used by the admin API) -----------------------------------------


def validate_webhook_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host; ``ValueError`` with a user-facing message."""
    parts = _split_url(url, "The webhook URL")
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("The webhook URL must start with http:// or https://.")
    if not parts.hostname:
        raise ValueError("The webhook URL must include a host name.")
    _port_of(parts, "The webhook URL")
    return url


def validate_syslog_target(target: str) -> tuple[str, str, int]:
    """``(protocol, host, port)`` of ``udp://host:port`` or ``tcp://host:port``.

    Raises ``ValueError`` with a user-facing message for anything else.
    """
    what = "The syslog target (udp://host:514 or tcp://host:601)"
    parts = _split_url(target, what)
    protocol = parts.scheme.lower()
    if protocol not in ("udp", "tcp"):
        raise ValueError(f"{what} must start with udp:// or tcp://.")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{what} must be only a protocol, a host and a port.")
    if not parts.hostname:
        raise ValueError(f"{what} must include a host name.")
    port = _port_of(parts, what)
    if port is None:
        raise ValueError(f"{what} must include a port.")
    return protocol, parts.hostname, port


def _split_url(value: str, what: str) -> SplitResult:
    if CONTROL_CHARACTERS.search(value) or " " in value:
        raise ValueError(f"{what} must not contain spaces or control characters.")
    try:
        return urlsplit(value)
    except ValueError:  # e.g. an unclosed "[" of an IPv6 address
        raise ValueError(f"{what} is not a valid URL.") from None


def _port_of(parts: SplitResult, what: str) -> int | None:
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port == 0:
        raise ValueError(f"{what} has an invalid port (expected 1-65535).")
    return port


# --- sinks ----------------------------------------------------------------------------------


class LogSink:
    """Logs each alert as one WARNING line with the alert's JSON (always configured)."""

    name = "log"

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    async def deliver(self, alert: Alert) -> None:
        self._logger.warning("alert %s", _compact_json(alert))

    async def deliver_checkpoint(self, notice: CheckpointNotice) -> None:
        self._logger.info("audit checkpoint %s", _compact(notice.as_json()))


class WebhookSink:
    """POSTs the alert's JSON (compact, sorted keys) to ``url``; a non-2xx answer fails.

    With a ``secret``, receivers can check authenticity and freshness::

        X-Authgate-Timestamp: <unix seconds>
        X-Authgate-Signature: sha256=<hex HMAC-SHA256(secret, b"<timestamp>." + raw body)>

    Recompute the HMAC over the timestamp header, a ``.`` and the exact body bytes,
    compare in constant time, and reject timestamps too far from your clock (replays).
    Without an injected ``client``, each delivery uses a short-lived client (alerts are rare).
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: bytes | None,
        timeout: float,
        client: httpx2.AsyncClient | None = None,
        clock: Clock = utc_now,
    ) -> None:
        if secret is not None and not secret:
            raise ValueError("the webhook secret must not be empty")
        self._url = validate_webhook_url(url)
        # Only the host is ever shown: some services put a credential in the path.
        self._host = urlsplit(url).hostname or "?"
        self._secret = secret
        self._timeout = timeout
        self._client = client
        self._clock = clock

    def __repr__(self) -> str:
        return f"WebhookSink(host={self._host!r}, signed={self._secret is not None})"

    def request_headers(self, body: bytes, *, event: str = "alert") -> dict[str, str]:
        """The headers sent with ``body``, including the signature when a secret is set."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "authgate-alerts",
            "X-Authgate-Event": event,
        }
        if self._secret is not None:
            timestamp = str(int(self._clock().timestamp()))
            signed = f"{timestamp}.".encode() + body
            digest = hmac.new(self._secret, signed, hashlib.sha256).hexdigest()
            headers["X-Authgate-Timestamp"] = timestamp
            headers["X-Authgate-Signature"] = f"sha256={digest}"
        return headers

    async def deliver(self, alert: Alert) -> None:
        await self._post(_compact_json(alert).encode(), event="alert")

    async def deliver_checkpoint(self, notice: CheckpointNotice) -> None:
        """POSTs ``{"kind": "audit_checkpoint", "checkpoint": "<JWS>", ...}`` with
        ``X-Authgate-Event: audit-checkpoint``, signed like alerts."""
        await self._post(_compact(notice.as_json()).encode(), event="audit-checkpoint")

    async def _post(self, body: bytes, *, event: str) -> None:
        headers = self.request_headers(body, event=event)
        try:
            if self._client is not None:
                response = await self._client.post(
                    self._url, content=body, headers=headers, timeout=self._timeout
                )
            else:
                async with httpx2.AsyncClient(timeout=self._timeout) as client:
                    response = await client.post(self._url, content=body, headers=headers)
        except httpx2.HTTPError as error:
            raise DeliveryError(f"webhook {self._host}: {type(error).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"webhook {self._host} answered HTTP {response.status_code}")


class SyslogSink:
    """Sends an RFC 5424 message carrying a CEF line over UDP or TCP (RFC 6587 framing).

    ``<PRI>1 TIMESTAMP HOSTNAME authgate - ALERT - CEF:0|authgate|authgate|...``; the
    facility is authpriv. Each delivery opens its own connection (alerts are rare).
    """

    name = "syslog"

    def __init__(self, target: str, *, timeout: float = 5.0, hostname: str | None = None) -> None:
        self._protocol, self._host, self._port = validate_syslog_target(target)
        self._timeout = timeout
        self._hostname = _syslog_hostname(socket.gethostname() if hostname is None else hostname)

    def __repr__(self) -> str:
        return f"SyslogSink('{self._protocol}://{self._host}:{self._port}')"

    def format(self, alert: Alert) -> bytes:
        """The RFC 5424 message for ``alert`` (without transport framing)."""
        pri = SYSLOG_FACILITY_AUTHPRIV * 8 + SYSLOG_SEVERITY[alert.severity]
        timestamp = format_utc(alert.fired_at)
        header = f"<{pri}>1 {timestamp} {self._hostname} authgate - ALERT -"
        return f"{header} {cef_line(alert)}".encode()

    def format_checkpoint(self, notice: CheckpointNotice) -> bytes:
        """``<PRI>1 TIMESTAMP HOSTNAME authgate - CHECKPOINT - CEF:0|...|audit_checkpoint|...``
        at severity informational; the JWS is in ``cs1`` (labelled ``checkpoint``)."""
        pri = SYSLOG_FACILITY_AUTHPRIV * 8 + SYSLOG_SEVERITY_INFORMATIONAL
        header = f"<{pri}>1 {format_utc(notice.time)} {self._hostname} authgate - CHECKPOINT -"
        return f"{header} {cef_checkpoint_line(notice)}".encode()

    async def deliver(self, alert: Alert) -> None:
        await self._send(self.format(alert))

    async def deliver_checkpoint(self, notice: CheckpointNotice) -> None:
        await self._send(self.format_checkpoint(notice))

    async def _send(self, message: bytes) -> None:
        where = f"syslog {self._protocol}://{self._host}:{self._port}"
        try:
            async with asyncio.timeout(self._timeout):
                if self._protocol == "tcp":
                    await self._send_tcp(f"{len(message)} ".encode() + message)
                else:
                    await self._send_udp(message)
        except TimeoutError:
            raise DeliveryError(f"{where}: timed out") from None
        except OSError as error:
            raise DeliveryError(f"{where}: {error.strerror or type(error).__name__}") from None

    async def _send_tcp(self, frame: bytes) -> None:
        _, writer = await asyncio.open_connection(self._host, self._port)
        try:
            writer.write(frame)
            await writer.drain()
        finally:
            writer.close()
            # The frame was handed over; a reset while closing loses nothing.
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _send_udp(self, datagram: bytes) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=(self._host, self._port)
        )
        try:
            transport.sendto(datagram)
        finally:
            transport.close()


class EmailSink:
    """Sends a plain-text e-mail per alert to ``recipients`` through the SMTP server."""

    name = "email"

    def __init__(self, mailer: Mailer, recipients: list[str]) -> None:
        if not recipients:
            raise ValueError("at least one recipient is required")
        self._mailer = mailer
        self._recipients = [validate_email_address(r) for r in recipients]

    def __repr__(self) -> str:
        return f"EmailSink({self._mailer!r}, to={self._recipients!r})"

    def compose(self, alert: Alert) -> EmailMessage:
        """The message sent for ``alert`` (no secret is ever part of it)."""
        # The subject may be a username an attacker chose: compose() keeps it one line.
        return self._mailer.compose(
            to=self._recipients,
            subject=f"[authgate] {alert.severity}: {alert.rule_name} ({alert.subject})",
            sent_at=alert.fired_at,
            body=(
                "authgate raised an alert.\n\n"
                f"Rule:         {alert.rule_name}\n"
                f"Kind:         {alert.kind}\n"
                f"Severity:     {alert.severity}\n"
                f"Subject:      {alert.subject}\n"
                f"Count:        {alert.count} within {alert.window_seconds} seconds\n"
                f"Fired at:     {format_utc(alert.fired_at)}\n"
                f"Alert id:     {alert.id}\n\n"
                f"{alert.summary}\n"
            ),
        )

    async def deliver(self, alert: Alert) -> None:
        try:
            await self._mailer.send(self.compose(alert), to=self._recipients)
        except MailNotSent as error:
            raise DeliveryError(f"email via {self._mailer.description}: {error}") from None


# --- CEF -----------------------------------------------------------------------------------


def cef_line(alert: Alert) -> str:
    """``alert`` as an ArcSight CEF line, with CEF's escaping of headers and extension values.

    The subject goes in ``cs1`` (labelled ``subject``), and also in ``src`` when it is an
    IP address, else in ``suser``.
    """
    header = "|".join(
        [
            "CEF:0",
            "authgate",
            "authgate",
            _cef_header(__version__),
            _cef_header(alert.kind),
            _cef_header(alert.rule_name),
            str(CEF_SEVERITY[alert.severity]),
        ]
    )
    fired_ms = (alert.fired_at - _EPOCH) // timedelta(milliseconds=1)
    subject_field = "src" if _is_ip_address(alert.subject) else "suser"
    extension = [
        ("rt", str(fired_ms)),
        (subject_field, alert.subject),
        ("cnt", str(alert.count)),
        ("externalId", str(alert.id)),
        ("cn1", str(alert.window_seconds)),
        ("cn1Label", "windowSeconds"),
        ("cs1", alert.subject),
        ("cs1Label", "subject"),
        ("msg", alert.summary),
    ]
    return header + "|" + " ".join(f"{key}={_cef_value(value)}" for key, value in extension)


def cef_checkpoint_line(notice: CheckpointNotice) -> str:
    """An audit checkpoint as a CEF line (event class ``audit_checkpoint``, severity 1)."""
    header = "|".join(
        [
            "CEF:0",
            "authgate",
            "authgate",
            _cef_header(__version__),
            "audit_checkpoint",
            "Audit chain checkpoint",
            "1",
        ]
    )
    extension = [
        ("rt", str((notice.time - _EPOCH) // timedelta(milliseconds=1))),
        ("cn1", str(notice.position)),
        ("cn1Label", "position"),
        ("cs1", notice.checkpoint),
        ("cs1Label", "checkpoint"),
        ("cs2", notice.hash),
        ("cs2Label", "hash"),
        ("cs3", notice.node),
        ("cs3Label", "node"),
        ("cs4", notice.reason),
        ("cs4Label", "reason"),
    ]
    return header + "|" + " ".join(f"{key}={_cef_value(value)}" for key, value in extension)


def _cef_header(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("|", "\\|")
    return CONTROL_CHARACTERS.sub(" ", escaped)  # header fields cannot span lines


def _cef_value(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("=", "\\=")
    escaped = escaped.replace("\r", "\\r").replace("\n", "\\n")
    return CONTROL_CHARACTERS.sub(" ", escaped)


def _is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _syslog_hostname(hostname: str) -> str:
    # RFC 5424 HOSTNAME: 1-255 printable US-ASCII characters without spaces, or "-".
    printable = "".join(c for c in hostname if "!" <= c <= "~")[:255]
    return printable or "-"


def _compact_json(alert: Alert) -> str:
    return _compact(alert.as_json())


def _compact(document: dict[str, str | int]) -> str:
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


# --- configuration -------------------------------------------------------------------------


def sinks_from_settings(settings: Settings) -> list[AlertSink]:
    """The configured sinks: always the log, plus webhook, syslog and e-mail when set.

    Raises ``ConfigurationError`` naming the setting for any invalid target.
    """
    sinks: list[AlertSink] = [LogSink(logging.getLogger("authgate.alerts"))]
    if settings.alert_webhook_url:
        url = _checked("alert_webhook_url", validate_webhook_url, settings.alert_webhook_url)
        secret = None
        if settings.alert_webhook_secret is not None:
            secret = settings.alert_webhook_secret.get_secret_value().encode()
            if not secret:
                raise ConfigurationError("alert_webhook_secret is empty; unset it or set a value")
        timeout = settings.alert_webhook_timeout_seconds
        sinks.append(WebhookSink(url, secret=secret, timeout=timeout))
    if settings.alert_syslog_target:
        target = settings.alert_syslog_target
        _checked("alert_syslog_target", validate_syslog_target, target)
        sinks.append(SyslogSink(target))
    server = smtp_server_from(settings)
    if server is not None:
        sinks.append(_email_sink(settings, server))
    return sinks


def _email_sink(settings: Settings, server: SmtpServer) -> EmailSink:
    if not settings.alert_email_to:
        raise ConfigurationError("alert_email_to is required when alert_smtp_host is set")
    recipients = [
        _checked("alert_email_to", validate_email_address, address)
        for address in settings.alert_email_to
    ]
    return EmailSink(Mailer(server), recipients)


def _checked(setting: str, validate: Callable[[str], T], value: str) -> T:
    try:
        return validate(value)
    except ValueError as error:
        raise ConfigurationError(f"{setting}: {error}") from None


# --- dispatcher ----------------------------------------------------------------------------
