"""Alert sinks against real receivers on loopback (HTTP, syslog over UDP and TCP, SMTP),
their configuration checks, and the dispatcher's retries, isolation, bounds and draining."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from authgate import __version__
from authgate.exceptions import ConfigurationError
from authgate.services.alerts.configuration import sinks_from_settings
from authgate.services.alerts.dispatch import AlertDispatcher
from authgate.services.alerts.email_sink import EmailSink
from authgate.services.alerts.log_sink import LogSink
from authgate.services.alerts.messages import Alert, CheckpointNotice, DeliveryError
from authgate.services.alerts.syslog_sink import SyslogSink
from authgate.services.alerts.targets import validate_syslog_target, validate_webhook_url
from authgate.services.alerts.webhook_sink import WebhookSink
from authgate.services.mail import Mailer, SmtpServer
from authgate.settings import Settings
from tests.conftest import FakeClock
from tests.mail import MailRecorder, running_smtp_server

WAIT = 5.0  # upper bound of every wait; tests finish far sooner
FIRED_AT = datetime(2024, 5, 6, 7, 8, 9, 123_000, tzinfo=UTC)
FIRED_AT_MS = 1_714_979_289_123


def make_alert(**changes: Any) -> Alert:
    alert = Alert(
        id=42,
        rule_name="login-failures",
        kind="login_failures",
        severity="high",
        subject="alice",
        count=12,
        window_seconds=600,
        fired_at=FIRED_AT,
        summary="12 failed logins for alice in 10 minutes",
    )
    return replace(alert, **changes)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- an HTTP receiver -------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    """Records each request and answers with the next scripted status (then ``default``)."""

    statuses: list[int] = field(default_factory=list)
    default: int = 200
    requests: list[ReceivedRequest] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(ReceivedRequest(method, path, headers, body))
        status = self.statuses.pop(0) if self.statuses else self.default
        writer.write(
            f"HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    http = HttpReceiver()
    server = await asyncio.start_server(http.handle, "127.0.0.1", 0)
    http.port = server.sockets[0].getsockname()[1]
    async with server:
        yield http


# --- syslog listeners -------------------------------------------------------------------------


class _DatagramCollector(asyncio.DatagramProtocol):
    def __init__(self, received: asyncio.Queue[bytes]) -> None:
        self.received = received

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.put_nowait(data)


@dataclass
class SyslogListener:
    port: int
    received: asyncio.Queue[bytes]

    async def next_message(self) -> bytes:
        return await asyncio.wait_for(self.received.get(), WAIT)


@pytest.fixture
async def udp_syslog() -> AsyncIterator[SyslogListener]:
    received: asyncio.Queue[bytes] = asyncio.Queue()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _DatagramCollector(received), local_addr=("127.0.0.1", 0)
    )
    try:
        yield SyslogListener(transport.get_extra_info("sockname")[1], received)
    finally:
        transport.close()


@pytest.fixture
async def tcp_syslog() -> AsyncIterator[SyslogListener]:
    """Queues the whole byte stream of each connection (the sink closes after sending)."""
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.put_nowait(await reader.read())
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield SyslogListener(server.sockets[0].getsockname()[1], received)


def split_octet_counted(stream: bytes) -> list[bytes]:
    """The messages of an RFC 6587 octet-counted stream; fails on any framing error."""
    messages = []
    while stream:
        length, space, rest = stream.partition(b" ")
        assert space, stream
        assert length.isdigit(), stream
        size = int(length)
        assert len(rest) >= size, stream
        messages.append(rest[:size])
        stream = rest[size:]
    return messages


SYSLOG_LINE = re.compile(
    rb"<(?P<pri>\d+)>1 (?P<timestamp>\S+) (?P<hostname>\S+) (?P<app>\S+) (?P<procid>\S+) "
    rb"(?P<msgid>\S+) (?P<sd>\S+) (?P<msg>.*)",
    re.DOTALL,
)


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """CEF header fields (unescaped) and extension values (unescaped)."""
    header: list[str] = []
    current: list[str] = []
    position = 0
    while len(header) < 7:
        char = line[position]
        if char == "\\":
            current.append(line[position + 1])
            position += 2
        elif char == "|":
            header.append("".join(current))
            current = []
            position += 1
        else:
            current.append(char)
            position += 1
    pieces = re.split(r"(?<!\\)=", line[position:])
    extension: dict[str, str] = {}
    key = pieces[0]
    for index, piece in enumerate(pieces[1:], start=1):
        value, _, next_key = piece.rpartition(" ") if index < len(pieces) - 1 else (piece, "", "")
        extension[key] = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), value)
        key = next_key
    return header, extension


# --- an SMTP server -------------------------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[tuple[MailRecorder, int]]:
    with running_smtp_server() as server:
        yield server


class RecordingSink:
    """A sink in memory that fails its first ``failures`` deliveries."""

    def __init__(self, name: str = "recording", *, failures: int = 0) -> None:
        self.name = name
        self.failures = failures
        self.attempts = 0
        self.delivered: list[Alert] = []

    async def deliver(self, alert: Alert) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise DeliveryError(f"{self.name} refused")
        self.delivered.append(alert)


class HangingSink:
    name = "hanging"

    async def deliver(self, alert: Alert) -> None:
        await asyncio.Event().wait()


async def run_until_drained(dispatcher: AlertDispatcher) -> None:
    """Let ``dispatcher`` deliver what is queued, then return (bounded)."""
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(dispatcher.run(stop), WAIT)


# --- the alert --------------------------------------------------------------------------------


def test_alert_json_has_every_field_and_utc_time_with_z() -> None:
    """as_json carries all fields, with fired_at as ISO 8601 UTC ending in Z."""
    assert make_alert().as_json() == {
        "id": 42,
        "rule_name": "login-failures",
        "kind": "login_failures",
        "severity": "high",
        "subject": "alice",
        "count": 12,
        "window_seconds": 600,
        "fired_at": "2024-05-06T07:08:09.123Z",
        "summary": "12 failed logins for alice in 10 minutes",
    }


def test_alert_requires_an_aware_time() -> None:
    """A naive fired_at is refused, so no sink ever guesses the time zone."""
    with pytest.raises(ValueError, match="timezone-aware"):
        make_alert(fired_at=datetime(2024, 1, 1))  # noqa: DTZ001 - the point of the test


# --- webhook ----------------------------------------------------------------------------------


async def test_webhook_posts_signed_compact_json(receiver: HttpReceiver, clock: FakeClock) -> None:
    """The body is compact sorted JSON; the signature is HMAC-SHA256 over "<ts>." + body."""
    secret = b"webhook-secret-for-tests"
    sink = WebhookSink(receiver.url(), secret=secret, timeout=WAIT, clock=clock)

    await sink.deliver(make_alert())

    [request] = receiver.requests
    expected_body = json.dumps(make_alert().as_json(), separators=(",", ":"), sort_keys=True)
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.body == expected_body.encode()
    assert json.loads(request.body)["fired_at"] == "2024-05-06T07:08:09.123Z"
    timestamp = str(int(clock().timestamp()))
    assert request.headers["x-authgate-timestamp"] == timestamp
    signed = f"{timestamp}.".encode() + request.body
    expected = hmac.new(secret, signed, hashlib.sha256).hexdigest()
    assert request.headers["x-authgate-signature"] == f"sha256={expected}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "authgate-alerts"
    assert request.headers["x-authgate-event"] == "alert"


async def test_webhook_without_secret_sends_no_signature(receiver: HttpReceiver) -> None:
    """Unsigned webhooks carry neither a signature nor a timestamp header."""
    await WebhookSink(receiver.url(), secret=None, timeout=WAIT).deliver(make_alert())

    [request] = receiver.requests
    assert "x-authgate-signature" not in request.headers
    assert "x-authgate-timestamp" not in request.headers


async def test_webhook_error_status_raises_delivery_error(receiver: HttpReceiver) -> None:
    """A non-2xx answer is a failed delivery, reported with the host but not the path."""
    receiver.default = 500
    sink = WebhookSink(receiver.url("/services/T0KEN"), secret=None, timeout=WAIT)

    with pytest.raises(DeliveryError, match="HTTP 500") as raised:
        await sink.deliver(make_alert())
    assert "T0KEN" not in str(raised.value)


async def test_webhook_connection_refused_raises_delivery_error() -> None:
    """A webhook nobody listens on fails with DeliveryError."""
    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", secret=None, timeout=WAIT)

    with pytest.raises(DeliveryError, match=re.escape("webhook 127.0.0.1")):
        await sink.deliver(make_alert())


async def test_webhook_answering_500_twice_is_retried_until_delivered(
    receiver: HttpReceiver,
) -> None:
    """500, 500, then 200: the same body arrives three times and counts as one delivery."""
    receiver.statuses = [500, 500]
    sink = WebhookSink(receiver.url(), secret=b"s", timeout=WAIT)
    dispatcher = AlertDispatcher([sink], retries=3, backoff=0.01)

    dispatcher.submit(make_alert())
    await run_until_drained(dispatcher)

    assert len(receiver.requests) == 3
    assert len({request.body for request in receiver.requests}) == 1
    assert dispatcher.stats == {"webhook": {"delivered": 1, "failed": 0, "retries": 2}}


async def test_failures_never_log_the_webhook_secret_or_path(
    receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A webhook that keeps failing is logged by host only, never with its secret or path."""
    receiver.default = 503
    sink = WebhookSink(receiver.url("/hooks/PATH-CREDENTIAL"), secret=b"TOP-SECRET", timeout=WAIT)
    dispatcher = AlertDispatcher([sink], retries=1, backoff=0.01)

    with caplog.at_level(logging.DEBUG, logger="authgate"):
        dispatcher.submit(make_alert())
        await run_until_drained(dispatcher)

    # Only authgate's own records: httpx2 itself logs every full URL at INFO level.
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("authgate"))
    assert dispatcher.stats["webhook"] == {"delivered": 0, "failed": 1, "retries": 1}
    assert "could not be delivered to sink webhook after 2 attempts" in logged
    assert "HTTP 503" in logged
    assert "TOP-SECRET" not in logged
    assert "PATH-CREDENTIAL" not in logged


# --- syslog -----------------------------------------------------------------------------------


def expected_syslog_message(alert: Alert, *, pri: int, extension: str) -> bytes:
    header = f"CEF:0|authgate|authgate|{__version__}|{alert.kind}|{alert.rule_name}"
    cef = f"{header}|8|{extension}"
    return f"<{pri}>1 2024-05-06T07:08:09.123Z testhost authgate - ALERT - {cef}".encode()


async def test_udp_syslog_sends_one_rfc5424_datagram_with_cef(
    udp_syslog: SyslogListener,
) -> None:
    """One datagram: authpriv PRI, RFC 5424 header fields, and the CEF line exactly."""
    sink = SyslogSink(f"udp://127.0.0.1:{udp_syslog.port}", hostname="testhost", timeout=WAIT)

    await sink.deliver(make_alert())

    message = await udp_syslog.next_message()
    assert message == expected_syslog_message(
        make_alert(),
        pri=83,  # authpriv (10) * 8 + error (3) for "high"
        extension=(
            f"rt={FIRED_AT_MS} suser=alice cnt=12 externalId=42 cn1=600 cn1Label=windowSeconds "
            "cs1=alice cs1Label=subject msg=12 failed logins for alice in 10 minutes"
        ),
    )
    parsed = SYSLOG_LINE.fullmatch(message)
    assert parsed is not None
    assert parsed["app"] == b"authgate"
    assert parsed["msgid"] == b"ALERT"
    assert (parsed["procid"], parsed["sd"]) == (b"-", b"-")


@pytest.mark.parametrize(
    ("severity", "pri", "cef_severity"),
    [("critical", 82, "10"), ("high", 83, "8"), ("medium", 84, "5"), ("low", 85, "3")],
)
async def test_syslog_severity_maps_to_pri_and_cef_severity(
    udp_syslog: SyslogListener, severity: str, pri: int, cef_severity: str
) -> None:
    """Alert severity sets both the syslog PRI (facility authpriv) and the CEF severity."""
    sink = SyslogSink(f"udp://127.0.0.1:{udp_syslog.port}", hostname="testhost")

    await sink.deliver(make_alert(severity=severity))

    parsed = SYSLOG_LINE.fullmatch(await udp_syslog.next_message())
    assert parsed is not None
    assert int(parsed["pri"]) == pri
    header, _ = parse_cef(parsed["msg"].decode())
    assert header[6] == cef_severity


async def test_tcp_syslog_uses_octet_counting_and_escapes_cef(
    tcp_syslog: SyslogListener,
) -> None:
    """Over TCP the message is framed "<length> <message>"; |, =, \\ and newlines are escaped."""
    alert = make_alert(
        kind="login|failures",
        rule_name="brute\\force|rule",
        subject="eve=admin|x\\y",
        summary="5 failures\nfrom a=b | c\\d",
    )
    sink = SyslogSink(f"tcp://127.0.0.1:{tcp_syslog.port}", hostname="testhost", timeout=WAIT)

    await sink.deliver(alert)

    [message] = split_octet_counted(await tcp_syslog.next_message())
    parsed = SYSLOG_LINE.fullmatch(message)
    assert parsed is not None
    cef = parsed["msg"].decode()
    assert cef.startswith(
        f"CEF:0|authgate|authgate|{__version__}|login\\|failures|brute\\\\force\\|rule|8|"
    )
    assert "suser=eve\\=admin|x\\\\y " in cef  # a pipe needs no escape in the extension
    assert cef.endswith("msg=5 failures\\nfrom a\\=b | c\\\\d")
    assert "\n" not in cef
    header, extension = parse_cef(cef)
    assert header[4:6] == ["login|failures", "brute\\force|rule"]
    assert extension["suser"] == extension["cs1"] == "eve=admin|x\\y"
    assert extension["cs1Label"] == "subject"
    assert extension["msg"] == "5 failures\nfrom a=b | c\\d"
    assert extension["rt"] == str(FIRED_AT_MS)
    assert extension["cnt"] == "12"


async def test_tcp_frame_length_counts_octets_not_characters(
    tcp_syslog: SyslogListener,
) -> None:
    """The RFC 6587 length is the UTF-8 byte count, so non-ASCII summaries frame correctly."""
    sink = SyslogSink(f"tcp://127.0.0.1:{tcp_syslog.port}", hostname="testhost", timeout=WAIT)

    await sink.deliver(make_alert(summary="échec ✓"))

    stream = await tcp_syslog.next_message()
    length, _, message = stream.partition(b" ")
    assert int(length) == len(message) > len(message.decode())
    assert message.endswith("msg=échec ✓".encode())


async def test_ip_address_subject_is_sent_as_cef_source() -> None:
    """A subject that is an IP address goes in src (not suser), and still in cs1."""
    sink = SyslogSink("udp://127.0.0.1:514", hostname="testhost")

    message = sink.format(make_alert(subject="2001:db8::1")).decode()

    _, extension = parse_cef(message.split(" - ALERT - ", 1)[1])
    assert extension["src"] == extension["cs1"] == "2001:db8::1"
    assert "suser" not in extension


async def test_tcp_syslog_nobody_listening_raises_delivery_error() -> None:
    """A TCP syslog target that refuses connections fails with DeliveryError."""
    sink = SyslogSink(f"tcp://127.0.0.1:{free_port()}", timeout=WAIT)

    with pytest.raises(DeliveryError, match=re.escape("syslog tcp://127.0.0.1")):
        await sink.deliver(make_alert())


# --- e-mail -----------------------------------------------------------------------------------


async def test_email_reaches_the_smtp_server(smtp_server: tuple[MailRecorder, int]) -> None:
    """The mail goes to every recipient, with the alert in subject and body."""
    recorder, port = smtp_server
    sink = EmailSink(
        Mailer(SmtpServer("127.0.0.1", port, sender="authgate@example.com", timeout=WAIT)),
        ["soc@example.com", "admin@example.org"],
    )

    await sink.deliver(make_alert(severity="critical"))

    [envelope] = recorder.envelopes
    assert envelope.mail_from == "authgate@example.com"
    assert envelope.rcpt_tos == ["soc@example.com", "admin@example.org"]
    assert isinstance(envelope.content, bytes)
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "[authgate] critical: login-failures (alice)"
    assert message["To"] == "soc@example.com, admin@example.org"
    body = message.get_content()
    assert "login-failures" in body
    assert "Subject:      alice" in body
    assert "Count:        12 within 600 seconds" in body
    assert "2024-05-06T07:08:09.123Z" in body
    assert "12 failed logins for alice in 10 minutes" in body


def test_email_subject_cannot_inject_headers() -> None:
    """A subject with line breaks (an attacker-chosen username) stays on the Subject line."""
    server = SmtpServer(
        "127.0.0.1",
        25,
        sender="authgate@example.com",
        starttls=True,
        username="mailer",
        password="SMTP-PASSWORD",
    )
    sink = EmailSink(Mailer(server), ["soc@example.com"])

    message = sink.compose(make_alert(subject="bob\r\nBcc: victim@example.com"))

    assert message["Bcc"] is None
    assert "SMTP-PASSWORD" not in message.as_string()


async def test_email_server_unreachable_raises_delivery_error() -> None:
    """An SMTP server nobody listens on fails with DeliveryError."""
    server = SmtpServer("127.0.0.1", free_port(), sender="authgate@example.com", timeout=WAIT)
    sink = EmailSink(Mailer(server), ["soc@example.com"])

    with pytest.raises(DeliveryError, match=re.escape("email via 127.0.0.1")):
        await sink.deliver(make_alert())


# --- log ------------------------------------------------------------------------------------


async def test_log_sink_writes_one_warning_with_the_alert_json(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The log sink writes one WARNING line whose JSON equals the alert's."""
    logger = logging.getLogger("tests.alerts")

    with caplog.at_level(logging.WARNING, logger="tests.alerts"):
        await LogSink(logger).deliver(make_alert())

    [record] = caplog.records
    assert record.levelno == logging.WARNING
    payload = record.getMessage().removeprefix("alert ")
    assert json.loads(payload) == make_alert().as_json()


# --- configuration ----------------------------------------------------------------------------


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path, **values)


def test_all_configured_sinks_are_built(tmp_path: Path) -> None:
    """Log is always on; webhook, syslog and e-mail are added when configured."""
    configured = settings(
        tmp_path,
        alert_webhook_url="https://alerts.example.com/hook",
        alert_webhook_secret="s3cret",
        alert_syslog_target="tcp://siem.example.com:601",
        alert_smtp_host="smtp.example.com",
        alert_email_from="authgate@example.com",
        alert_email_to="soc@example.com,admin@example.com",
    )

    sinks = sinks_from_settings(configured.alerts, configured.mail)

    assert [sink.name for sink in sinks] == ["log", "webhook", "syslog", "email"]
    assert "s3cret" not in repr(sinks)


def test_only_the_log_sink_by_default(tmp_path: Path) -> None:
    """Without alert settings, alerts go to the log only."""
    defaults = settings(tmp_path)
    assert [sink.name for sink in sinks_from_settings(defaults.alerts, defaults.mail)] == ["log"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"alert_webhook_url": "ftp://example.com/hook"}, "alert_webhook_url: .*http"),
        ({"alert_webhook_url": "https:///no-host"}, "alert_webhook_url: .*host"),
        ({"alert_webhook_url": "https://example.com:99999/"}, "alert_webhook_url: .*port"),
        ({"alert_webhook_url": "https://exa mple.com/"}, "alert_webhook_url: .*spaces"),
        (
            {"alert_webhook_url": "https://example.com/", "alert_webhook_secret": ""},
            "alert_webhook_secret is empty",
        ),
        ({"alert_syslog_target": "syslog.example.com:514"}, "alert_syslog_target: .*udp://"),
        ({"alert_syslog_target": "http://siem:514"}, "alert_syslog_target: .*udp://"),
        ({"alert_syslog_target": "udp://siem.example.com"}, "alert_syslog_target: .*port"),
        ({"alert_syslog_target": "udp://siem:0"}, "alert_syslog_target: .*1-65535"),
        ({"alert_syslog_target": "tcp://siem:70000"}, "alert_syslog_target: .*1-65535"),
        ({"alert_syslog_target": "tcp://:601"}, "alert_syslog_target: .*host"),
        ({"alert_syslog_target": "tcp://siem:601/path"}, "alert_syslog_target: .*only"),
        (
            {"alert_smtp_host": "smtp.example.com", "alert_email_to": "soc@example.com"},
            "alert_email_from is required",
        ),
        (
            {"alert_smtp_host": "smtp.example.com", "alert_email_from": "a@example.com"},
            "alert_email_to is required",
        ),
        (
            {
                "alert_smtp_host": "smtp.example.com",
                "alert_email_from": "authgate.example.com",
                "alert_email_to": "soc@example.com",
            },
            "alert_email_from: .*name@domain",
        ),
        (
            {
                "alert_smtp_host": "smtp.example.com",
                "alert_email_from": "a@example.com",
                "alert_email_to": "soc@example.com,nobody",
            },
            "alert_email_to: .*'nobody'",
        ),
        (
            {
                "alert_smtp_host": "smtp.example.com",
                "alert_email_from": "a@example.com",
                "alert_email_to": "soc@example.com",
                "alert_smtp_username": "mailer",
            },
            "both alert_smtp_username and alert_smtp_password",
        ),
        (
            {
                "alert_smtp_host": "smtp.example.com",
                "alert_email_from": "a@example.com",
                "alert_email_to": "soc@example.com",
                "alert_smtp_username": "mailer",
                "alert_smtp_password": "SMTP-PASSWORD",
            },
            "alert_smtp_starttls",
        ),
    ],
)
def test_bad_alert_targets_are_configuration_errors(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    """Each invalid alert setting is refused at start-up with a message naming it."""
    configured = settings(tmp_path, **values)
    with pytest.raises(ConfigurationError, match=message) as raised:
        sinks_from_settings(configured.alerts, configured.mail)
    assert "SMTP-PASSWORD" not in str(raised.value)


def test_validators_return_the_parsed_target() -> None:
    """The validators the admin API reuses return the URL and (protocol, host, port)."""
    assert validate_webhook_url("https://example.com/h?x=1") == "https://example.com/h?x=1"
    assert validate_syslog_target("UDP://[2001:db8::5]:514") == ("udp", "2001:db8::5", 514)
    assert validate_syslog_target("tcp://siem.example.com:601") == (
        "tcp",
        "siem.example.com",
        601,
    )


@pytest.mark.parametrize("url", ["", "example.com", "http://[::1", "javascript:alert(1)"])
def test_webhook_url_validator_raises_value_error(url: str) -> None:
    """Malformed webhook URLs raise ValueError with a message meant for users."""
    with pytest.raises(ValueError, match="The webhook URL"):
        validate_webhook_url(url)


# --- dispatcher -------------------------------------------------------------------------------


async def test_failing_webhook_does_not_hold_back_syslog(
    receiver: HttpReceiver, udp_syslog: SyslogListener
) -> None:
    """While the webhook fails and waits to retry, syslog gets every alert at once."""
    receiver.default = 500
    webhook = WebhookSink(receiver.url(), secret=None, timeout=WAIT)
    syslog = SyslogSink(f"udp://127.0.0.1:{udp_syslog.port}", hostname="testhost")
    dispatcher = AlertDispatcher([webhook, syslog], retries=3, backoff=60, drain_timeout=0.2)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))

    for alert_id in (1, 2, 3):
        dispatcher.submit(make_alert(id=alert_id))
    messages = [await udp_syslog.next_message() for _ in range(3)]
    stop.set()
    await asyncio.wait_for(running, WAIT)

    assert [parse_cef(m.decode().split(" - ALERT - ")[1])[1]["externalId"] for m in messages] == [
        "1",
        "2",
        "3",
    ]
    assert len(receiver.requests) == 1  # the first attempt; the retry was 60 s away
    assert dispatcher.stats == {
        "webhook": {"delivered": 0, "failed": 3, "retries": 0},  # abandoned at shutdown
        "syslog": {"delivered": 3, "failed": 0, "retries": 0},
    }


async def test_a_sink_that_always_raises_never_escapes_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unexpected exception is counted and logged by type only; run returns normally."""

    class BrokenSink:
        name = "broken"

        async def deliver(self, alert: Alert) -> None:
            raise RuntimeError("password=hunter2")

    working = RecordingSink()
    dispatcher = AlertDispatcher([BrokenSink(), working], retries=2, backoff=0)

    dispatcher.submit(make_alert())
    await run_until_drained(dispatcher)

    assert dispatcher.stats["broken"] == {"delivered": 0, "failed": 1, "retries": 2}
    assert working.delivered == [make_alert()]
    assert "RuntimeError" in caplog.text
    assert "hunter2" not in caplog.text


async def test_full_queue_drops_and_counts_without_raising() -> None:
    """Past max_queue, submit drops (counted) instead of blocking; the queued ones arrive."""
    sink = RecordingSink()
    dispatcher = AlertDispatcher([sink], retries=0, max_queue=2)

    for alert_id in range(5):
        dispatcher.submit(make_alert(id=alert_id))

    assert dispatcher.dropped == 3
    await run_until_drained(dispatcher)
    assert [alert.id for alert in sink.delivered] == [0, 1]
    assert dispatcher.stats["recording"] == {"delivered": 2, "failed": 0, "retries": 0}


async def test_stop_drains_everything_queued() -> None:
    """Alerts queued before stop are all delivered, in order, before run returns."""
    first, second = RecordingSink("first"), RecordingSink("second", failures=1)
    dispatcher = AlertDispatcher([first, second], retries=1, backoff=0)
    alerts = [make_alert(id=alert_id) for alert_id in range(4)]
    for alert in alerts:
        dispatcher.submit(alert)

    await run_until_drained(dispatcher)

    assert first.delivered == alerts
    assert second.delivered == alerts
    assert dispatcher.stats["second"] == {"delivered": 4, "failed": 0, "retries": 1}


async def test_drain_is_bounded_by_the_grace_period() -> None:
    """A sink that hangs does not keep run from returning; its alerts count as failed."""
    dispatcher = AlertDispatcher([HangingSink(), RecordingSink()], retries=0, drain_timeout=0.05)
    dispatcher.submit(make_alert(id=1))
    dispatcher.submit(make_alert(id=2))

    await run_until_drained(dispatcher)

    assert dispatcher.stats["hanging"] == {"delivered": 0, "failed": 2, "retries": 0}
    assert dispatcher.stats["recording"]["delivered"] == 2


async def test_alerts_submitted_while_running_are_delivered() -> None:
    """A running dispatcher delivers new alerts without waiting for stop."""
    sink = RecordingSink()
    dispatcher = AlertDispatcher([sink], retries=0)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))

    dispatcher.submit(make_alert())
    for _ in range(int(WAIT / 0.01)):
        if sink.delivered:
            break
        await asyncio.sleep(0.01)

    assert sink.delivered == [make_alert()]
    assert not running.done()
    stop.set()
    await asyncio.wait_for(running, WAIT)


class HangingSiem(HangingSink):
    """A sink whose alert deliveries hang and whose checkpoint deliveries arrive."""

    name = "siem"

    def __init__(self) -> None:
        self.notices: list[CheckpointNotice] = []
        self.arrived = asyncio.Event()

    async def deliver_checkpoint(self, notice: CheckpointNotice) -> None:
        self.notices.append(notice)
        self.arrived.set()


async def test_alerts_filling_a_queue_never_drop_or_delay_a_checkpoint() -> None:
    """A sink's alert queue full (and its delivery stuck) while alerts keep coming: the
    signed audit checkpoint still arrives, at once; only alerts are dropped. Before,
    checkpoints shared the alerts' queue: a flood of alerts dropped them."""
    sink = HangingSiem()
    dispatcher = AlertDispatcher([sink], retries=0, max_queue=2, drain_timeout=0.05)
    notice = CheckpointNotice(
        checkpoint="header.claims.signature",
        position=7,
        hash="ab" * 32,
        time=FIRED_AT,
        node="node-1",
        reason="interval",
    )
    for alert_id in range(5):
        dispatcher.submit(make_alert(id=alert_id))
    dispatcher.submit_checkpoint(notice)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))

    try:
        await asyncio.wait_for(sink.arrived.wait(), WAIT)
    finally:
        stop.set()
        await asyncio.wait_for(running, WAIT)

    assert sink.notices == [notice]
    assert dispatcher.dropped == 3  # alerts 2, 3 and 4
    assert dispatcher.stats["siem"]["delivered"] == 1


def test_sink_names_must_be_unique() -> None:
    """Two sinks with one name would share stats, so the dispatcher refuses them."""
    with pytest.raises(ValueError, match="unique"):
        AlertDispatcher([RecordingSink("a"), RecordingSink("a")], retries=0)


def test_fired_at_in_another_zone_is_reported_in_utc() -> None:
    """A fired_at with another offset is converted to UTC in every payload."""
    alert = make_alert(fired_at=FIRED_AT.astimezone(timezone(timedelta(hours=2))))
    assert alert.as_json()["fired_at"] == "2024-05-06T07:08:09.123Z"
    message = SyslogSink("udp://127.0.0.1:514", hostname="h").format(alert).decode()
    assert " 2024-05-06T07:08:09.123Z h " in message
    assert f"rt={FIRED_AT_MS} " in message
