"""Where the webhook and syslog sinks send, checked when configured (by the settings and
the sinks themselves) with messages fit for the person who typed the value."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from authgate.services.mail import CONTROL_CHARACTERS


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
