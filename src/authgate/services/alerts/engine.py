"""Evaluating alert rules against the audit trail, and API key expiry reminders.

The audit trail is the event stream: every node reads new audit records (by id, once
a second) and, for each enabled rule whose events appear, counts the events of the
rule's subject over its window with one indexed query. A rule that reaches its
threshold fires once per (rule, subject, window): the fired alert is inserted under a
unique constraint, so when several nodes evaluate the same events only the node whose
insert succeeds records ``ALERT_FIRED`` and hands the alert to the sinks.

Latency from the event to the sinks: the audit flush (1 s) plus this poll (1 s).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from authgate.clock import Clock
from authgate.reasons import AlertKindName, Reason
from authgate.services.alerts.dispatch import AlertDispatcher
from authgate.services.alerts.kinds import KEY, KEY_AND_ADDRESS, KINDS, AlertKind
from authgate.services.alerts.messages import Alert
from authgate.services.alerts.rules import RuleView
from authgate.services.audit.events import SERVER, EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.pause import pause
from authgate.services.ports import AlertRepo, Database
from authgate.services.severity import Severity
from authgate.services.sorting import require_sortable
from authgate.storage.models import AuditEvent, FiredAlert
from authgate.storage.paging import Page, PageRequest

log = logging.getLogger(__name__)

EXPIRY_STAGES: Final = (14, 3, 0)  # days before expiry when the owner/admins are told
REMINDER_INTERVAL_SECONDS: Final = 3600.0
_BATCH = 5000


@dataclass(frozen=True, slots=True)
class FiredAlertView:
    id: int
    rule_name: str
    kind: str
    severity: str
    subject: str
    count: int
    fired_at: datetime
    summary: str


class AlertEngine:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        audit: AuditLog,
        dispatcher: AlertDispatcher,
        poll_interval: float = 1.0,
    ) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._dispatcher = dispatcher
        self._poll_interval = poll_interval
        self._cursor = 0
        self._last_reminders = 0.0

    @property
    def poll_interval(self) -> float:
        """Seconds between two checks of new audit records against the rules."""
        return self._poll_interval

    async def start_from_now(self) -> None:
        async with self._db.session() as session:
            self._cursor = await self._db.alerts(session).last_event_id()

    async def run(self, stop: asyncio.Event) -> None:
        failing = False
        while not stop.is_set():
            try:
                await self.evaluate_new_events()
                if self._clock().timestamp() - self._last_reminders >= REMINDER_INTERVAL_SECONDS:
                    await self.expiry_reminders()
                failing = False
            except Exception as error:  # noqa: BLE001 - retried at the next tick
                if not failing:
                    log.warning("alert evaluation failed: %s", type(error).__name__)
                failing = True
            await pause(stop, self._poll_interval)

    async def recent(self, request: PageRequest) -> Page[FiredAlertView]:
        """Fired alerts, newest first unless ``request`` sorts otherwise."""
        require_sortable(request, self._db.alerts.SORT_COLUMNS)
        async with self._db.session() as session:
            repository = self._db.alerts(session)
            total = await repository.count_fired()
            rows = await repository.fired(request)
        items = [
            FiredAlertView(
                id=row.id,
                rule_name=row.rule_name,
                kind=row.kind,
                severity=row.severity,
                subject=row.subject,
                count=row.count,
                fired_at=row.fired_at,
                summary=row.summary,
            )
            for row in rows
        ]
        return Page(items=items, total=total, request=request)

    def send_test(self) -> int:
        """Queue a test alert to every sink; returns how many sinks it went to."""
        self._dispatcher.submit(
            Alert(
                id=0,
                rule_name="Test alert",
                kind="test",
                severity="low",
                subject="test",
                count=1,
                window_seconds=0,
                fired_at=self._clock(),
                summary="A test alert sent by an administrator; no action is needed.",
            )
        )
        return len(self._dispatcher.stats)

    async def evaluate_new_events(self) -> int:
        """Evaluate the rules against audit records written since the last call."""
        async with self._db.session() as session:
            repository = self._db.alerts(session)
            events = await repository.events_after(self._cursor, limit=_BATCH)
            if not events:  # the usual second: the rules are read only when needed
                return 0
            rules = [RuleView.of(rule) for rule in await repository.rules() if rule.enabled]
        self._cursor = events[-1].id
        fired = 0
        for rule in rules:
            kind = KINDS.get(rule.kind)
            if kind is None:
                continue  # validated when set: only a rule written by a newer version
            matching = [event for event in events if event.event_type in kind.events]
            if matching:
                fired += await self._evaluate(rule, kind, matching)
        return fired

    async def expiry_reminders(self) -> int:
        """Once per stage (14, 3 and 0 days before expiry) per key and expiry date, an alert."""
        self._last_reminders = self._clock().timestamp()
        now = self._clock()
        fired = 0
        async with self._db.session() as session:
            repository = self._db.alerts(session)
            # 14: expiring in 3 to 14 days; 3: in the next 3 days; 0: expired in the last day.
            ranges = {14: (3, 14), 3: (0, 3), 0: (-1, 0)}
            due = {
                stage: await repository.keys_expiring_between(
                    now + timedelta(days=ranges[stage][0]), now + timedelta(days=ranges[stage][1])
                )
                for stage in EXPIRY_STAGES
            }
        for stage, keys in due.items():
            for key in keys:
                if key.expires_at is None:
                    continue  # never returned: the query asks for an expiry
                expired = stage == 0
                if await self._fire(
                    rule_key=f"api_key_expiry:{stage}d",
                    rule_name="API key expired" if expired else f"API key expires in {stage} days",
                    kind="api_key_expiry",
                    severity="high" if stage <= 3 else "medium",
                    subject=f"key:{key.public_id}",
                    # Once per stage per expiry date: a key whose expiry is extended
                    # is reminded again before its new date.
                    window_start=int(key.expires_at.timestamp()),
                    window_seconds=0,
                    count=1,
                    summary=f"API key {key.public_id} ({key.name}) of user {key.user_id} "
                    + ("has expired" if expired else f"expires at {key.expires_at:%Y-%m-%d %H:%M}"),
                ):
                    fired += 1
                    self._audit.record(
                        EventType.API_KEY_EXPIRED if expired else EventType.API_KEY_EXPIRING,
                        "success",
                        actor=SERVER,
                        details={"keyId": key.public_id, "name": key.name, "stageDays": stage},
                    )
        return fired

    async def _evaluate(self, rule: RuleView, kind: AlertKind, events: list[AuditEvent]) -> int:
        fired = 0
        public_ids: dict[int, str] = {}
        if kind.subject in (KEY, KEY_AND_ADDRESS):  # keys are named by their UUID
            async with self._db.session() as session:
                public_ids = await self._db.alerts(session).key_public_ids(
                    {event.api_key_id for event in events if event.api_key_id is not None}
                )
        for subject, event in _latest_per_subject(kind, events, public_ids):
            count = await self._count(rule, kind, event)
            if count < rule.threshold:
                continue
            window = rule.window_seconds
            start = int(event.occurred_at.timestamp() // window * window)
            if await self._fire(
                rule_key=f"rule:{rule.id}",
                rule_name=rule.name,
                kind=rule.kind,
                severity=rule.severity,
                subject=subject,
                window_start=start,
                window_seconds=window,
                count=count,
                summary=kind.summarize(
                    rule=rule.name, subject=subject, count=count, window_seconds=window
                ),
            ):
                fired += 1
        return fired

    async def _count(self, rule: RuleView, kind: AlertKind, event: AuditEvent) -> int:
        """Events of the rule's kind for the event's subject within the window before it."""
        window = timedelta(seconds=rule.window_seconds)
        async with self._db.session() as session:
            repository = self._db.alerts(session)
            if kind.single_event:
                return await self._single_event_count(repository, kind, event, window)
            column = kind.subject.column
            return await repository.count_events(
                kind.events,
                since=event.occurred_at - window,
                until=event.occurred_at,
                actor_login=event.actor_login if column == "actor_login" else None,
                client_ip=event.client_ip if column == "client_ip" else None,
                api_key_id=event.api_key_id if column == "api_key_id" else None,
            )

    @staticmethod
    async def _single_event_count(
        repository: AlertRepo, kind: AlertKind, event: AuditEvent, window: timedelta
    ) -> int:
        if event.api_key_id is None:
            return 0
        if kind.name == "key_new_ip":
            if await repository.previous_key_success(event.api_key_id, before_id=event.id) is None:
                return 0  # the key's very first use: no address of it is "new" yet
            seen = await repository.previous_key_success(
                event.api_key_id, before_id=event.id, client_ip=event.client_ip
            )
            return 1 if seen is None else 0
        if event.reason is not None:
            # The gate audits an accepted request only when it is a security event; the
            # one after a long idle time says how long (exact, from the key's last use).
            if Reason.lookup(event.reason) is not Reason.AFTER_INACTIVITY or not event.details:
                return 0
            idle_seconds = json.loads(event.details).get("idleSeconds", 0)
            return 1 if idle_seconds >= window.total_seconds() else 0
        # Every accepted request audited (AUTHGATE_AUDIT_API_KEY_SUCCESSES): the previous one.
        previous = await repository.previous_key_success(event.api_key_id, before_id=event.id)
        idle = previous is not None and event.occurred_at - previous.occurred_at >= window
        return 1 if idle else 0

    async def _fire(
        self,
        *,
        rule_key: str,
        rule_name: str,
        kind: str,
        severity: Severity,
        subject: str,
        window_start: int,
        window_seconds: int,
        count: int,
        summary: str,
    ) -> bool:
        now = self._clock()
        fired = FiredAlert(
            rule_key=rule_key,
            rule_name=rule_name,
            kind=kind,
            severity=severity,
            subject=subject[:320],
            window_start=window_start,
            fired_at=now,
            count=count,
            summary=summary[:500],
        )
        async with self._db.transaction() as session:
            if not await self._db.alerts(session).record_fired(fired):
                return False  # this rule already fired for this subject and window
        self._audit.record(
            EventType.ALERT_FIRED,
            "success",
            actor=SERVER,
            reason=AlertKindName(kind),
            details={
                "rule": rule_name,
                "subject": subject,
                "count": count,
                "severity": severity,
                "alertId": fired.id,
            },
        )
        self._dispatcher.submit(
            Alert(
                id=fired.id,
                rule_name=rule_name,
                kind=kind,
                severity=severity,
                subject=subject,
                count=count,
                window_seconds=window_seconds,
                fired_at=now,
                summary=summary,
            )
        )
        return True


def _latest_per_subject(
    kind: AlertKind, events: Iterable[AuditEvent], public_ids: Mapping[int, str]
) -> list[tuple[str, AuditEvent]]:
    latest: dict[str, AuditEvent] = {}
    for event in events:
        subject = _key_named(kind.subject.of(event), event, public_ids)
        if subject is not None:
            if kind.single_event:
                latest.setdefault(subject, event)  # the first use is the one that matters
            else:
                latest[subject] = event
    return list(latest.items())


def _key_named(subject: str | None, event: AuditEvent, public_ids: Mapping[int, str]) -> str | None:
    """``subject`` with the key named by its public UUID (``key:<UUID>...``) rather than
    the bigint id the audit record stores; unchanged when the key is gone (deleted with
    its owner) or the subject names no key."""
    if subject is None or event.api_key_id is None or event.api_key_id not in public_ids:
        return subject
    stored = f"key:{event.api_key_id}"
    if subject != stored and not subject.startswith(stored + "|"):
        return subject
    return f"key:{public_ids[event.api_key_id]}" + subject[len(stored) :]
