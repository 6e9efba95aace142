"""Alert rules: what to watch for, validated when they are set, never at alert time.

A rule is a kind (what it counts, and per what: ``kinds.KINDS``), a threshold, a
sliding window and a severity.

Each fires at most once per rule, subject and window (deduplicated in the database,
so several nodes never send the same alert twice) and is written to the audit trail.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from authgate.clock import Clock
from authgate.exceptions import Conflict, FieldError, NotFound, ValidationFailed
from authgate.reasons import Reason
from authgate.services.alerts.kinds import KINDS
from authgate.services.audit.events import EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.ports import Database
from authgate.services.severity import SEVERITIES, Severity, is_severity
from authgate.services.text_rules import control_character_errors
from authgate.storage.errors import Conflict as StorageConflict
from authgate.storage.models import AlertRule

MAX_WINDOW_SECONDS: Final = 366 * 86_400
NAME_MAX_LENGTH: Final = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSpec:
    name: str
    kind: str
    threshold: int
    window_seconds: int
    severity: str = "medium"
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class RuleView:
    id: int
    name: str
    kind: str
    threshold: int
    window_seconds: int
    severity: Severity
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, rule: AlertRule) -> RuleView:
        severity: Severity = rule.severity if is_severity(rule.severity) else "medium"
        return cls(
            id=rule.id,
            name=rule.name,
            kind=rule.kind,
            threshold=rule.threshold,
            window_seconds=rule.window_seconds,
            severity=severity,
            enabled=rule.enabled,
            created_at=rule.created_at,
            updated_at=rule.updated_at,
        )


DEFAULT_RULES: Final = (
    RuleSpec(name="Failed logins for one account", kind="failed_logins_per_account",
             threshold=5, window_seconds=300, severity="high"),
    RuleSpec(name="Failed logins from one address", kind="failed_logins_per_ip",
             threshold=10, window_seconds=600, severity="high"),
    RuleSpec(name="Password spraying", kind="failed_logins_global",
             threshold=50, window_seconds=300, severity="critical"),
    RuleSpec(name="Invalid API keys from one address", kind="failed_key_uses_per_ip",
             threshold=20, window_seconds=60, severity="high"),
    RuleSpec(name="Refused uses of one API key", kind="failed_key_uses_per_key",
             threshold=10, window_seconds=300, severity="medium"),
    RuleSpec(name="API key used from a new address", kind="key_new_ip",
             threshold=1, window_seconds=86_400, severity="medium"),
    RuleSpec(name="API key used after 30 idle days", kind="key_after_inactivity",
             threshold=1, window_seconds=30 * 86_400, severity="low"),
    RuleSpec(name="Lockouts", kind="lockouts", threshold=1, window_seconds=300, severity="high"),
    RuleSpec(name="Failed second factors for one account", kind="failed_second_factors",
             threshold=3, window_seconds=600, severity="high"),
    RuleSpec(name="Administrative actions", kind="admin_actions",
             threshold=1, window_seconds=60, severity="low"),
)  # fmt: skip


def validate(spec: RuleSpec) -> None:
    """Raise ``ValidationFailed`` listing every problem of ``spec``."""
    errors: list[FieldError] = []
    if not spec.name.strip():
        errors.append(FieldError("name", "Name is required."))
    elif len(spec.name) > NAME_MAX_LENGTH:
        errors.append(FieldError("name", f"Name must be at most {NAME_MAX_LENGTH} characters."))
    errors.extend(control_character_errors("name", spec.name))
    if spec.kind not in KINDS:
        errors.append(FieldError("kind", "Unknown kind; use one of " + ", ".join(KINDS) + "."))
    if spec.threshold < 1:
        errors.append(FieldError("threshold", "The threshold must be at least 1."))
    if not 1 <= spec.window_seconds <= MAX_WINDOW_SECONDS:
        errors.append(
            FieldError("windowSeconds", "The window must be between 1 second and 366 days.")
        )
    if spec.severity not in SEVERITIES:
        errors.append(FieldError("severity", "Severity is low, medium, high or critical."))
    if errors:
        raise ValidationFailed(errors[0].message, field_errors=errors)


class AlertRules:
    def __init__(self, *, db: Database, clock: Clock, audit: AuditLog) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit

    async def list(self) -> list[RuleView]:
        async with self._db.session() as session:
            return [RuleView.of(rule) for rule in await self._db.alerts(session).rules()]

    async def get(self, rule_id: int) -> RuleView:
        async with self._db.session() as session:
            rule = await self._db.alerts(session).rule(rule_id)
        if rule is None:
            raise NotFound("Alert rule not found", reason=Reason.ALERT_RULE_NOT_FOUND)
        return RuleView.of(rule)

    def _new_rule(self, spec: RuleSpec) -> AlertRule:
        validate(spec)
        now = self._clock()
        return AlertRule(
            name=spec.name.strip(),
            kind=spec.kind,
            threshold=_threshold(spec),
            window_seconds=spec.window_seconds,
            severity=spec.severity,
            enabled=spec.enabled,
            created_at=now,
            updated_at=now,
        )

    async def create(self, spec: RuleSpec, *, audited: bool = True) -> RuleView:
        rule = self._new_rule(spec)
        try:
            async with self._db.transaction() as session:
                repository = self._db.alerts(session)
                if await repository.rule_named(rule.name) is not None:
                    raise _name_taken()
                repository.add_rule(rule)
                await repository.flush()
        except StorageConflict:
            raise _name_taken() from None
        if audited:
            self._changed("created", rule)
        return RuleView.of(rule)

    async def update(self, rule_id: int, spec: RuleSpec) -> RuleView:
        validate(spec)
        try:
            async with self._db.transaction() as session:
                repository = self._db.alerts(session)
                rule = await repository.rule(rule_id)
                if rule is None:
                    raise NotFound("Alert rule not found", reason=Reason.ALERT_RULE_NOT_FOUND)
                other = await repository.rule_named(spec.name.strip())
                if other is not None and other.id != rule_id:
                    raise _name_taken()
                rule.name = spec.name.strip()
                rule.kind = spec.kind
                rule.threshold = _threshold(spec)
                rule.window_seconds = spec.window_seconds
                rule.severity = spec.severity
                rule.enabled = spec.enabled
                rule.updated_at = self._clock()
        except StorageConflict:
            raise _name_taken() from None
        self._changed("updated", rule)
        return RuleView.of(rule)

    async def delete(self, rule_id: int) -> None:
        async with self._db.transaction() as session:
            repository = self._db.alerts(session)
            rule = await repository.rule(rule_id)
            if rule is None:
                raise NotFound("Alert rule not found", reason=Reason.ALERT_RULE_NOT_FOUND)
            await repository.delete_rule(rule)
        self._changed("deleted", rule)

    async def install_defaults(self, configured: tuple[RuleSpec, ...] = ()) -> None:
        """On an empty rule table, the defaults; rules from the settings are upserted
        by name at every start (written and audited only when they differ)."""
        async with self._db.session() as session:
            existing = {
                rule.name: RuleView.of(rule) for rule in await self._db.alerts(session).rules()
            }
        # The workers of one server (and the nodes of a cluster) start at the same time
        # and all see the empty table: a name taken meanwhile means that another one
        # installed the same rule, not an error that should stop this one's start.
        if not existing:
            # The built-in defaults are part of the installation, not someone's change.
            configured_names = {spec.name for spec in configured}
            await self._install_defaults(
                tuple(spec for spec in DEFAULT_RULES if spec.name not in configured_names)
            )
        for spec in configured:
            stored = existing.get(spec.name.strip())
            if stored is None:
                with contextlib.suppress(Conflict):
                    await self.create(spec)
            elif not _matches(stored, spec):
                # Only a real change is written and audited: every start of every node
                # would otherwise record one (and fire "Administrative actions").
                await self.update(stored.id, spec)

    async def _install_defaults(self, specs: tuple[RuleSpec, ...]) -> None:
        """The built-in rules, in one transaction (one commit instead of one per rule),
        unless the table is no longer empty. Another worker installing them at the same
        moment makes the names clash and this transaction roll back as a whole: the
        rules are there then, written by the other one, all or none."""
        rules = [self._new_rule(spec) for spec in specs]
        with contextlib.suppress(StorageConflict):
            async with self._db.transaction() as session:
                repository = self._db.alerts(session)
                if await repository.rules():
                    return
                for rule in rules:
                    repository.add_rule(rule)

    def _changed(self, action: str, rule: AlertRule) -> None:
        self._audit.record(
            EventType.ALERT_RULE_CHANGED,
            "success",
            details={"action": action, "rule": rule.name, "kind": rule.kind},
        )


def _matches(rule: RuleView, spec: RuleSpec) -> bool:
    """Whether ``rule`` is stored exactly as ``spec`` would store it."""
    stored = (rule.name, rule.kind, rule.threshold, rule.window_seconds, rule.severity)
    wanted = (spec.name.strip(), spec.kind, _threshold(spec), spec.window_seconds, spec.severity)
    return stored == wanted and rule.enabled == spec.enabled


def _threshold(spec: RuleSpec) -> int:
    """A single-event kind fires on one event, whatever threshold was asked for."""
    kind = KINDS.get(spec.kind)
    return 1 if kind is not None and kind.single_event else spec.threshold


def _name_taken() -> Conflict:
    return Conflict("An alert rule with this name already exists.", reason=Reason.ALERT_RULE_EXISTS)
