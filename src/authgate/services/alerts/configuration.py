"""The alert settings, and the sinks they configure, each target checked with the
setting named."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from authgate.exceptions import ConfigurationError
from authgate.services.alerts.email_sink import EmailSink
from authgate.services.alerts.log_sink import LogSink
from authgate.services.alerts.messages import AlertSink
from authgate.services.alerts.syslog_sink import SyslogSink
from authgate.services.alerts.targets import validate_syslog_target, validate_webhook_url
from authgate.services.alerts.webhook_sink import WebhookSink
from authgate.services.mail import (
    MailConfig,
    Mailer,
    SmtpServer,
    smtp_server_from,
    validate_email_address,
)
from authgate.settings_lists import comma_separated

T = TypeVar("T")


class AlertRuleSetting(BaseModel):
    """An alert rule given in the configuration (validated again like API input)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: str
    threshold: int = 1
    window_seconds: int = 300
    severity: str = "medium"
    enabled: bool = True


class AlertsConfig(BaseModel):
    """``Settings.alerts``, set by the ``AUTHGATE_ALERT_*`` names
    (``authgate.settings_names``) or an ``[alerts]`` table; the webhook secret also
    from ``AUTHGATE_ALERT_WEBHOOK_SECRET_FILE``. E-mail goes through ``Settings.mail``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_url: str | None = None
    webhook_secret: SecretStr | None = Field(
        default=None, description="Signs webhook bodies: X-Authgate-Signature: sha256=<hmac>."
    )
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    syslog_target: str | None = Field(
        default=None, description="udp://host:514 or tcp://host:601 (RFC 5424, CEF message)."
    )
    email_to: Annotated[list[str], NoDecode] = Field(default_factory=list)
    delivery_retries: int = Field(default=3, ge=0, le=20)
    evaluation_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often new audit events are checked against the rules.",
    )
    max_subjects_per_window: int = Field(
        default=10,
        ge=1,
        le=10_000,
        description="Alerts one rule sends per window, one per subject; the subjects "
        "beyond are rolled up into one summary alert (sent once, and updated at most once).",
    )
    rules: list[AlertRuleSetting] = Field(
        default_factory=list,
        description="Rules installed at start-up (upserted by name), e.g. [[alert_rules]] in TOML.",
    )

    @field_validator("email_to", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)


def sinks_from_settings(settings: AlertsConfig, mail: MailConfig) -> list[AlertSink]:
    """The configured sinks: always the log, plus webhook, syslog and e-mail when set.

    Raises ``ConfigurationError`` naming the setting for any invalid target.
    """
    sinks: list[AlertSink] = [LogSink(logging.getLogger("authgate.alerts"))]
    if settings.webhook_url:
        url = _checked("alert_webhook_url", validate_webhook_url, settings.webhook_url)
        secret = None
        if settings.webhook_secret is not None:
            secret = settings.webhook_secret.get_secret_value().encode()
            if not secret:
                raise ConfigurationError("alert_webhook_secret is empty; unset it or set a value")
        timeout = settings.webhook_timeout_seconds
        sinks.append(WebhookSink(url, secret=secret, timeout=timeout))
    if settings.syslog_target:
        target = settings.syslog_target
        _checked("alert_syslog_target", validate_syslog_target, target)
        sinks.append(SyslogSink(target))
    server = smtp_server_from(mail)
    if server is not None:
        sinks.append(_email_sink(settings, server))
    return sinks


def _email_sink(settings: AlertsConfig, server: SmtpServer) -> EmailSink:
    if not settings.email_to:
        raise ConfigurationError("alert_email_to is required when alert_smtp_host is set")
    recipients = [
        _checked("alert_email_to", validate_email_address, address) for address in settings.email_to
    ]
    return EmailSink(Mailer(server), recipients)


def _checked(setting: str, validate: Callable[[str], T], value: str) -> T:
    try:
        return validate(value)
    except ValueError as error:
        raise ConfigurationError(f"{setting}: {error}") from None
