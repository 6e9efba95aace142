"""A real SMTP server for tests (aiosmtpd on a loopback port) that keeps what it receives."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.processes import free_port


class MailRecorder:
    """An aiosmtpd handler that accepts and keeps every message."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def messages(self) -> list[EmailMessage]:
        """The received messages, parsed."""
        parsed = []
        for envelope in self.envelopes:
            assert isinstance(envelope.content, bytes)
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed


@contextmanager
def running_smtp_server() -> Iterator[tuple[MailRecorder, int]]:
    """An SMTP server on 127.0.0.1 and a free port, stopped on exit."""
    recorder = MailRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


def smtp_settings(port: int) -> dict[str, object]:
    """The settings that send authgate's mail (reset links, codes, notices, alerts) to
    the test server on ``port``: ``test_settings(..., **smtp_settings(port))``."""
    return {
        "alert_smtp_host": "127.0.0.1",
        "alert_smtp_port": port,
        "alert_email_from": "authgate@example.com",
        "alert_email_to": ["ops@example.com"],
    }
