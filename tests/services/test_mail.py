"""The mailer: one SMTP server for alerts and mail to users."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from authgate.exceptions import ConfigurationError
from authgate.services.mail import Mailer, MailNotSent, SmtpServer, smtp_server_from
from tests.conftest import test_settings
from tests.mail import running_smtp_server
from tests.processes import free_port

SENT_AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


async def test_text_mail_reaches_the_server_from_the_configured_sender() -> None:
    """send_text delivers one message to one recipient, with the configured sender."""
    with running_smtp_server() as (recorder, port):
        mailer = Mailer(SmtpServer("127.0.0.1", port, sender="authgate@example.com"))
        await mailer.send_text(
            to="bob@example.org", subject="Reset your password", body="Follow the link.",
            sent_at=SENT_AT,
        )  # fmt: skip

    [envelope] = recorder.envelopes
    assert envelope.mail_from == "authgate@example.com"
    assert envelope.rcpt_tos == ["bob@example.org"]
    [message] = recorder.messages()
    assert message["Subject"] == "Reset your password"
    assert message["To"] == "bob@example.org"
    assert message.get_content().strip() == "Follow the link."


def test_a_subject_with_line_breaks_stays_one_header() -> None:
    """A user-chosen name in a subject cannot add headers (no Bcc injection)."""
    mailer = Mailer(SmtpServer("127.0.0.1", 25, sender="authgate@example.com"))
    message = mailer.compose(
        to=["bob@example.org"], subject="Hi bob\r\nBcc: victim@example.com", body="x",
        sent_at=SENT_AT,
    )  # fmt: skip
    assert message["Bcc"] is None
    assert "\n" not in message["Subject"]


def test_a_recipient_with_separators_is_refused() -> None:
    """A recipient cannot smuggle a second address into To."""
    mailer = Mailer(SmtpServer("127.0.0.1", 25, sender="authgate@example.com"))
    with pytest.raises(ValueError, match="must not contain"):
        mailer.compose(
            to=["bob@example.org, victim@example.com"], subject="s", body="b", sent_at=SENT_AT
        )


async def test_an_unreachable_server_raises_mail_not_sent_without_secrets() -> None:
    """A failure names the server, never the password or the recipient."""
    server = SmtpServer(
        "127.0.0.1", free_port(), sender="authgate@example.com", starttls=True,
        username="mailer", password="SMTP-PASSWORD", timeout=2,
    )  # fmt: skip
    with pytest.raises(MailNotSent) as raised:
        await Mailer(server).send_text(to="bob@example.org", subject="s", body="b", sent_at=SENT_AT)
    assert "127.0.0.1" in str(raised.value)
    assert "SMTP-PASSWORD" not in str(raised.value)
    assert "bob@example.org" not in str(raised.value)
    assert "SMTP-PASSWORD" not in repr(Mailer(server))


async def test_a_mailer_without_server_is_not_configured_and_refuses_to_send() -> None:
    """Mailer(None) says so; callers check ``configured`` and fall back."""
    mailer = Mailer(None)
    assert not mailer.configured
    with pytest.raises(MailNotSent, match="no SMTP server"):
        await mailer.send_text(to="bob@example.org", subject="s", body="b", sent_at=SENT_AT)


def test_settings_give_the_server_or_none(tmp_path: Path) -> None:
    """No host: no server; a host with a sender: the server, validated."""
    assert smtp_server_from(test_settings(tmp_path).mail) is None
    server = smtp_server_from(
        test_settings(
            tmp_path,
            alert_smtp_host="mail.example.com",
            alert_smtp_port=587,
            alert_smtp_starttls=True,
            alert_email_from="authgate@example.com",
        ).mail
    )
    assert server == SmtpServer(
        "mail.example.com", 587, sender="authgate@example.com", starttls=True
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"alert_smtp_host": "mail.example.com"}, "alert_email_from is required"),
        (
            {"alert_smtp_host": "mail.example.com", "alert_email_from": "not-an-address"},
            "alert_email_from",
        ),
        (
            {
                "alert_smtp_host": "mail.example.com",
                "alert_email_from": "a@example.com",
                "alert_smtp_username": "u",
                "alert_smtp_password": "p",
            },
            "needs alert_smtp_starttls",
        ),
    ],
)
def test_invalid_smtp_settings_stop_the_start_up(
    tmp_path: Path, values: dict[str, str], message: str
) -> None:
    """A broken SMTP configuration is a configuration error naming the setting."""
    with pytest.raises(ConfigurationError, match=message):
        smtp_server_from(test_settings(tmp_path, **values).mail)
