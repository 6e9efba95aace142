"""A key's notable use, as this process judged it, recorded as the cluster's stored last
use confirms it (``services.notable_use``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from authgate.reasons import Reason
from authgate.services.audit.events import EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.notable_use import NotableUse

AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HOUR = 3600.0


class Recorded:
    """Stands in for the audit log: what ``record`` was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[EventType, Reason | None, dict[str, Any] | None, datetime]] = []

    def record(self, event_type: EventType, outcome: str, **fields: Any) -> bool:
        assert outcome == "success"
        self.calls.append((event_type, fields["reason"], fields["details"], fields["occurred_at"]))
        return True


def judged(
    reason: Reason,
    stored: datetime | None,
    *,
    details: dict[str, Any] | None = None,
    every_success: bool = False,
) -> list[tuple[Reason | None, dict[str, Any] | None]]:
    audit = Recorded()
    use = NotableUse(
        audit=cast(AuditLog, audit),
        at=AT,
        reason=reason,
        details=details,
        idle_seconds=HOUR,
        every_success=every_success,
    )
    use(stored)
    assert all(t is EventType.API_KEY_ACCESS_SUCCESS and at == AT for t, _, _, at in audit.calls)
    return [(r, d) for _, r, d, _ in audit.calls]


def test_a_first_use_no_process_stored_a_use_of_is_the_first_use() -> None:
    assert judged(Reason.FIRST_USE, None) == [(Reason.FIRST_USE, None)]


def test_a_first_use_in_this_process_of_a_key_used_elsewhere_minutes_ago_is_a_new_address() -> None:
    stored = AT - timedelta(minutes=5)
    assert judged(Reason.FIRST_USE, stored) == [(Reason.NEW_ADDRESS, None)]


def test_a_first_use_in_this_process_of_a_key_idle_elsewhere_is_a_use_after_inactivity() -> None:
    stored = AT - timedelta(hours=3)
    assert judged(Reason.FIRST_USE, stored) == [
        (Reason.AFTER_INACTIVITY, {"idleSeconds": 3 * 3600})
    ]


@pytest.mark.parametrize("every_success", [False, True])
def test_idle_as_seen_here_but_used_elsewhere_meanwhile(every_success: bool) -> None:
    """Idle for two hours as this process saw it, used ten minutes ago elsewhere: no
    record (or, with every accepted request audited, an ordinary one)."""
    stored = AT - timedelta(minutes=10)
    got = judged(
        Reason.AFTER_INACTIVITY,
        stored,
        details={"idleSeconds": 7200},
        every_success=every_success,
    )
    assert got == ([(None, None)] if every_success else [])


def test_idle_for_the_whole_cluster_counts_from_the_later_last_use() -> None:
    """Seen idle for three hours here; the stored last use is two hours old: two hours."""
    stored = AT - timedelta(hours=2)
    got = judged(Reason.AFTER_INACTIVITY, stored, details={"idleSeconds": 3 * 3600})
    assert got == [(Reason.AFTER_INACTIVITY, {"idleSeconds": 7200})]


@pytest.mark.parametrize("reason", [Reason.NEW_ADDRESS, Reason.MANY_ADDRESSES])
def test_other_events_are_recorded_as_judged(reason: Reason) -> None:
    details = {"moreThan": 256} if reason is Reason.MANY_ADDRESSES else None
    assert judged(reason, AT - timedelta(seconds=1), details=details) == [(reason, details)]
