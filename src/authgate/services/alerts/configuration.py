"""The sinks the settings configure, each target checked with the setting named."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from authgate.exceptions import ConfigurationError
from authgate.services.alerts.email_sink import EmailSink
from authgate.services.alerts.log_sink import LogSink
from authgate.services.alerts.messages import AlertSink
from authgate.services.alerts.syslog_sink import SyslogSink
from authgate.services.alerts.targets import validate_syslog_target, validate_webhook_url
from authgate.services.alerts.webhook_sink import WebhookSink
from authgate.services.mail import Mailer, SmtpServer, smtp_server_from, validate_email_address
from authgate.settings import Settings

T = TypeVar("T")


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
