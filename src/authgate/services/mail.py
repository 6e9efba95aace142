"""E-mail through the deployment's one SMTP server: alerts, password-reset links,
second-factor codes.

The server is configured once (``AUTHGATE_ALERT_SMTP_HOST``/``_PORT``/``_STARTTLS``/
``_USERNAME``/``_PASSWORD``, sender ``AUTHGATE_ALERT_EMAIL_FROM``); without it
:attr:`Mailer.configured` is false and callers fall back (an admin is shown a reset link
once instead of it being mailed). Sending never happens on a request's critical path
for anything an attacker could trigger without limit: callers rate-limit first.

Secrets (the SMTP password) never appear in a message, a log line or an exception.
Header values come from authgate or from validated addresses; a subject is flattened to
one line, so a user-chosen name cannot inject headers.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from authgate.exceptions import ConfigurationError

log = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 30.0

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class MailNotSent(Exception):
    """The SMTP server refused or could not be reached. The message names the server,
    never a secret or a recipient."""


def validate_email_address(address: str) -> str:
    """``address`` if it looks like ``local@domain``; ``ValueError`` otherwise."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"Not an e-mail address (expected name@domain): {address!r}.")
    if CONTROL_CHARACTERS.search(address) or any(c in address for c in " ,;<>"):
        raise ValueError(f"An e-mail address must not contain spaces or ,;<>: {address!r}.")
    return address


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where mail goes and as whom (validated by :func:`smtp_server_from`)."""

    host: str
    port: int
    sender: str
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = SMTP_TIMEOUT_SECONDS


class Mailer:
    """Composes and sends plain-text mail; ``Mailer(None)`` is a mailer with no server."""

    def __init__(self, server: SmtpServer | None) -> None:
        self._server = server

    def __repr__(self) -> str:
        if self._server is None:
            return "Mailer(not configured)"
        return f"Mailer(host={self._server.host!r}, port={self._server.port})"

    @property
    def configured(self) -> bool:
        return self._server is not None

    @property
    def description(self) -> str:
        """``host:port`` for messages and logs (no credential)."""
        server = self._require()
        return f"{server.host}:{server.port}"

    def compose(self, *, to: list[str], subject: str, body: str, sent_at: datetime) -> EmailMessage:
        """A message from the configured sender (no secret is ever part of it)."""
        server = self._require()
        message = EmailMessage()
        message["Subject"] = CONTROL_CHARACTERS.sub(" ", subject)
        message["From"] = server.sender
        message["To"] = ", ".join(validate_email_address(address) for address in to)
        message["Date"] = format_datetime(sent_at.astimezone(UTC))
        message["Message-ID"] = make_msgid(domain=server.sender.rpartition("@")[2])
        message.set_content(body)
        return message

    async def send(self, message: EmailMessage, *, to: list[str]) -> None:
        """Deliver ``message`` to ``to``; :class:`MailNotSent` when the server fails."""
        server = self._require()
        where = f"SMTP {server.host}:{server.port}"
        try:
            await aiosmtplib.send(
                message,
                sender=server.sender,
                recipients=to,
                hostname=server.host,
                port=server.port,
                start_tls=server.starttls,
                username=server.username,
                password=server.password,
                timeout=server.timeout,
            )
        except aiosmtplib.SMTPResponseException as error:
            raise MailNotSent(f"{where}: {error.code} ({type(error).__name__})") from None
        except (aiosmtplib.SMTPException, OSError) as error:
            raise MailNotSent(f"{where}: {type(error).__name__}") from None

    async def send_text(self, *, to: str, subject: str, body: str, sent_at: datetime) -> None:
        """Compose and send one plain-text message to one recipient; :class:`MailNotSent`
        also for an address that cannot be mailed (an account's address stored before
        the address rules refused it, or imported: the Unicode review's 500s)."""
        try:
            message = self.compose(to=[to], subject=subject, body=body, sent_at=sent_at)
        except ValueError:
            raise MailNotSent("the recipient's address cannot be mailed") from None
        await self.send(message, to=[to])

    def _require(self) -> SmtpServer:
        if self._server is None:
            raise MailNotSent("no SMTP server is configured (AUTHGATE_ALERT_SMTP_HOST)")
        return self._server


class MailConfig(BaseModel):
    """``Settings.mail``: the one SMTP server, set by the ``AUTHGATE_ALERT_SMTP_*`` and
    ``AUTHGATE_ALERT_EMAIL_FROM`` names (``authgate.settings_names``) or a ``[mail]``
    table; the password also from ``AUTHGATE_ALERT_SMTP_PASSWORD_FILE``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    email_from: str | None = None


def smtp_server_from(config: MailConfig) -> SmtpServer | None:
    """The configured SMTP server, validated at start-up (None when there is none)."""
    if not config.smtp_host:
        return None
    host = config.smtp_host
    if CONTROL_CHARACTERS.search(host) or " " in host:
        raise ConfigurationError("alert_smtp_host must be a host name")
    if not config.email_from:
        raise ConfigurationError("alert_email_from is required when alert_smtp_host is set")
    try:
        sender = validate_email_address(config.email_from)
    except ValueError as error:
        raise ConfigurationError(f"alert_email_from: {error}") from None
    password = config.smtp_password
    username = config.smtp_username
    if (username is None) != (password is None):
        raise ConfigurationError("set both alert_smtp_username and alert_smtp_password, or neither")
    if username is not None and not config.smtp_starttls:
        # Never send the SMTP password over an unencrypted connection.
        raise ConfigurationError("alert_smtp_username needs alert_smtp_starttls = true")
    return SmtpServer(
        host=host,
        port=config.smtp_port,
        sender=sender,
        starttls=config.smtp_starttls,
        username=username,
        password=None if password is None else password.get_secret_value(),
    )
