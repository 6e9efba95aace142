"""Evaluating alert rules against the audit trail, and API key expiry reminders.

The audit trail is the event stream: every node reads new audit records (by id, once
a second) and, for each enabled rule whose events appear, counts the events of the
rule's subject over its window with one indexed query. A rule that reaches its
threshold fires once per (rule, subject, window): the fired alert is inserted under a
unique constraint, so when several nodes evaluate the same events only the node whose
insert succeeds records ``ALERT_FIRED`` and hands the alert to the sinks.

Subjects are often the attacker's to choose, so alerts per rule and window are bounded
(``rollup``): beyond ``max_subjects_per_window`` subjects, one summary alert stands for
the rest.

Latency from the event to the sinks: the audit flush (1 s) plus this poll (1 s).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from authgate.clock import Clock
from authgate.reasons import AlertKindName
from authgate.services.alerts.counting import count_for_subject
from authgate.services.alerts.dispatch import AlertDispatcher
from authgate.services.alerts.kinds import KEY, KEY_AND_ADDRESS, KINDS, AlertKind
from authgate.services.alerts.messages import Alert
from authgate.services.alerts.rollup import SUMMARY_SUBJECTS, Rollup, summary_rule_key
from authgate.services.alerts.rules import RuleView
from authgate.services.audit.events import SERVER, EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.pause import pause
from authgate.services.ports import Database
from authgate.services.severity import Severity
from authgate.services.sorting import require_sortable
from authgate.storage.models import AuditEvent, FiredAlert
from authgate.storage.paging import Page, PageRequest

log = logging.getLogger(__name__)

DEFAULT_MAX_SUBJECTS_PER_WINDOW: Final = 10
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
        max_subjects_per_window: int = DEFAULT_MAX_SUBJECTS_PER_WINDOW,
    ) -> None:
        if max_subjects_per_window < 1:
            raise ValueError("max_subjects_per_window must be at least 1")
        self._db = db
        self._clock = clock
        self._audit = audit
        self._dispatcher = dispatcher
        self._poll_interval = poll_interval
        self._max_subjects = max_subjects_per_window
        self._cursor = 0
        self._last_reminders = 0.0
        # (rule key, window start) -> the subjects rolled up beyond the bound
        self._rollups: dict[tuple[str, int], Rollup] = {}
        # One evaluation at a time: a second caller waits, so that when
        # ``evaluate_new_events`` returns, every record written before the call has been
        # judged and its alerts stored (the cursor moves before the alerts are written).
        self._evaluating = asyncio.Lock()

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
        """Evaluate the rules against audit records written since the last call; on
        return, their alerts are stored (an evaluation already running is waited for)."""
        async with self._evaluating:
            return await self._evaluate_new_events()

    async def _evaluate_new_events(self) -> int:
        async with self._db.session() as session:
            repository = self._db.alerts(session)
            events = await repository.events_after(self._cursor, limit=_BATCH)
            if not events:  # the usual second: the rules are read only when needed
                return 0
            rules = [RuleView.of(rule) for rule in await repository.rules() if rule.enabled]
        self._cursor = events[-1].id
        self._forget_rollups(before=int(events[0].occurred_at.timestamp()))
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
        rule_key, window = f"rule:{rule.id}", rule.window_seconds
        fired_in: dict[int, set[str]] = {}  # window start -> the subjects fired in it
        for subject, candidates in _candidates_per_subject(kind, events, public_ids):
            for event, previous in candidates:
                start = int(event.occurred_at.timestamp() // window * window)
                if start not in fired_in:
                    async with self._db.session() as session:
                        fired_in[start] = await self._db.alerts(session).fired_subjects(
                            rule_key, start
                        )
                already = fired_in[start]
                rollup = self._rollups.get((rule_key, start))
                if subject[:320] in already or (rollup is not None and subject in rollup):
                    continue  # alerted on, or rolled up, in this window already
                count = await self._count(rule, kind, event, previous)
                if count < rule.threshold:
                    continue
                if len(already) >= self._max_subjects:
                    self._rollup(rule_key, start, window).add(subject)
                    break
                already.add(subject[:320])  # fired here or, just now, by another node
                if await self._fire(
                    rule_key=rule_key,
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
                # On to the subject's later records: one in a later window may fire too
                # (a record in this one is skipped: the subject is in ``already``).
        return fired + await self._summarize(rule, rule_key)

    def _rollup(self, rule_key: str, start: int, window: int) -> Rollup:
        rollup = self._rollups.get((rule_key, start))
        if rollup is None:
            rollup = self._rollups[rule_key, start] = Rollup(start, window)
        return rollup

    def _forget_rollups(self, *, before: int) -> None:
        """Drop what was rolled up in windows that ended before ``before``."""
        for key in [key for key, rollup in self._rollups.items() if rollup.window_end < before]:
            del self._rollups[key]

    async def _summarize(self, rule: RuleView, rule_key: str) -> int:
        """Send the summaries due for ``rule``'s windows; how many were sent."""
        sent = 0
        for (key, start), rollup in list(self._rollups.items()):
            stage = rollup.due(self._max_subjects) if key == rule_key else None
            if stage is None:
                continue
            rollup.sent.append(rollup.count)  # sent, or already sent by another node
            if await self._fire(
                rule_key=summary_rule_key(rule_key),
                rule_name=rule.name,
                kind=rule.kind,
                severity=rule.severity,
                subject=SUMMARY_SUBJECTS[stage],
                window_start=start,
                window_seconds=rollup.window_seconds,
                count=rollup.count,
                summary=rollup.summarize(rule.name, self._max_subjects),
            ):
                sent += 1
        return sent

    async def _count(
        self, rule: RuleView, kind: AlertKind, event: AuditEvent, previous: AuditEvent | None
    ) -> int:
        """Events of the rule's kind for the event's subject within the window before it
        (``previous``: the subject's record just before it, when this batch holds it)."""
        window = timedelta(seconds=rule.window_seconds)
        async with self._db.session() as session:
            return await count_for_subject(
                self._db.alerts(session), kind, event, window, previous=previous
            )

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


def _candidates_per_subject(
    kind: AlertKind, events: Iterable[AuditEvent], public_ids: Mapping[int, str]
) -> list[tuple[str, list[tuple[AuditEvent, AuditEvent | None]]]]:
    """Per subject, the records of this batch to judge, in order, each with the
    subject's record before it in the batch (None for the first). A counted kind judges
    its latest record (its count covers the window before it); ``key_new_ip`` its first
    (a later use from the same address or /64 is not new); ``key_after_inactivity``
    every one until one fires: a long idle time may end after a shorter one, or after
    the key's first use, in the same batch (an engine catching up, or a clock set
    forward)."""
    candidates: dict[str, list[tuple[AuditEvent, AuditEvent | None]]] = {}
    for event in events:
        subject = _key_named(kind.subject.of(event), event, public_ids)
        if subject is None:
            continue
        judged = candidates.get(subject)
        if judged is None:
            candidates[subject] = [(event, None)]
        elif kind.name == "key_after_inactivity":
            judged.append((event, judged[-1][0]))
        elif not kind.single_event:
            judged[0] = (event, None)
    return list(candidates.items())


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
