"""Monitoring: alert rules, their evaluation and delivery, the cluster's membership,
the audit checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

from authgate import __version__
from authgate.clock import Clock
from authgate.exceptions import ConfigurationError, ValidationFailed
from authgate.services.alerts.configuration import sinks_from_settings
from authgate.services.alerts.dispatch import AlertDispatcher
from authgate.services.alerts.engine import AlertEngine
from authgate.services.alerts.rules import AlertRules, RuleSpec
from authgate.services.alerts.rules import validate as validate_rule
from authgate.services.audit_checkpoints import AuditCheckpoints
from authgate.services.cluster import ClusterMembership
from authgate.settings import Settings
from authgate.wiring.credentials import Keys, Tokens
from authgate.wiring.infrastructure import Infrastructure


@dataclass(frozen=True, slots=True, kw_only=True)
class Monitoring:
    alert_dispatcher: AlertDispatcher
    alert_rules: AlertRules
    alerts: AlertEngine
    cluster: ClusterMembership
    checkpoints: AuditCheckpoints


def build_monitoring(
    settings: Settings,
    infra: Infrastructure,
    tokens: Tokens,
    keys: Keys,
    clock: Clock,
    *,
    tfa_key_fingerprint: str,
) -> Monitoring:
    db, audit = infra.db, infra.audit
    dispatcher = AlertDispatcher(
        sinks_from_settings(settings.alerts, settings.mail),
        retries=settings.alerts.delivery_retries,
    )
    cluster = ClusterMembership(
        db=db,
        clock=clock,
        pepper=keys.pepper,
        audit_key_fingerprint=infra.audit_key.fingerprint,
        tfa_key_fingerprint=tfa_key_fingerprint,
        keyring=lambda: tokens.tokens.codec.keyring,
        uses_redis=infra.redis is not None,
        version=__version__,
    )
    return Monitoring(
        alert_dispatcher=dispatcher,
        alert_rules=AlertRules(db=db, clock=clock, audit=audit),
        alerts=AlertEngine(
            db=db,
            clock=clock,
            audit=audit,
            dispatcher=dispatcher,
            poll_interval=settings.alerts.evaluation_interval_seconds,
            max_subjects_per_window=settings.alerts.max_subjects_per_window,
        ),
        cluster=cluster,
        checkpoints=AuditCheckpoints(
            db=db,
            audit=audit,
            keyring=lambda: tokens.tokens.codec.keyring,
            issuer=settings.tokens.issuer,
            dispatcher=dispatcher,
            clock=clock,
            node=lambda: cluster.node_id,
            interval=settings.audit.checkpoint_interval_seconds,
            retention=settings.audit.retention,
        ),
    )


def configured_rules(settings: Settings) -> tuple[RuleSpec, ...]:
    """Alert rules from the settings, validated now: a bad rule stops the start-up."""
    specs = tuple(
        RuleSpec(
            name=rule.name,
            kind=rule.kind,
            threshold=rule.threshold,
            window_seconds=rule.window_seconds,
            severity=rule.severity,
            enabled=rule.enabled,
        )
        for rule in settings.alerts.rules
    )
    for spec in specs:
        try:
            validate_rule(spec)
        except ValidationFailed as error:
            problems = "; ".join(f"{e.field}: {e.message}" for e in error.field_errors)
            raise ConfigurationError(f"alert rule {spec.name!r}: {problems}") from None
    return specs
