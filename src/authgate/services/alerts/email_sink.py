"""The e-mail sink: one plain-text message per alert (not checkpoints: one every few
minutes would bury the alerts). The SMTP password never appears in a ``DeliveryError``."""

from __future__ import annotations

from email.message import EmailMessage

from authgate.clock import format_utc
from authgate.services.alerts.messages import Alert, DeliveryError
from authgate.services.mail import Mailer, MailNotSent, validate_email_address


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
