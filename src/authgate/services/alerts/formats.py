"""The wire formats of the syslog sink: RFC 5424 messages carrying ArcSight CEF lines,
for alerts and audit checkpoints, with each format's escaping and severity numbers."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

from authgate import __version__
from authgate.clock import format_utc
from authgate.services.alerts.messages import Alert, CheckpointNotice
from authgate.services.mail import CONTROL_CHARACTERS
from authgate.services.severity import Severity

# RFC 5424 facility "security/authorization messages (private)" and severity per level.
SYSLOG_FACILITY_AUTHPRIV = 10
SYSLOG_SEVERITY: dict[Severity, int] = {"critical": 2, "high": 3, "medium": 4, "low": 5}
CEF_SEVERITY: dict[Severity, int] = {"critical": 10, "high": 8, "medium": 5, "low": 3}
SYSLOG_SEVERITY_INFORMATIONAL = 6

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def syslog_message(alert: Alert, hostname: str) -> bytes:
    """The RFC 5424 message for ``alert`` (without transport framing)."""
    pri = SYSLOG_FACILITY_AUTHPRIV * 8 + SYSLOG_SEVERITY[alert.severity]
    timestamp = format_utc(alert.fired_at)
    header = f"<{pri}>1 {timestamp} {hostname} authgate - ALERT -"
    return f"{header} {cef_line(alert)}".encode()


def syslog_checkpoint_message(notice: CheckpointNotice, hostname: str) -> bytes:
    """``<PRI>1 TIMESTAMP HOSTNAME authgate - CHECKPOINT - CEF:0|...|audit_checkpoint|...``
    at severity informational; the JWS is in ``cs1`` (labelled ``checkpoint``)."""
    pri = SYSLOG_FACILITY_AUTHPRIV * 8 + SYSLOG_SEVERITY_INFORMATIONAL
    header = f"<{pri}>1 {format_utc(notice.time)} {hostname} authgate - CHECKPOINT -"
    return f"{header} {cef_checkpoint_line(notice)}".encode()


def syslog_hostname(hostname: str) -> str:
    """RFC 5424 HOSTNAME: 1-255 printable US-ASCII characters without spaces, or "-"."""
    printable = "".join(c for c in hostname if "!" <= c <= "~")[:255]
    return printable or "-"


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
