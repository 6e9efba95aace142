"""What a search of the audit trail may ask, for the two surfaces that read a filter
from a query string: the REST search and export (``api/audit.py``, validated by
FastAPI) and the Settings page (``web/admin/audit.py``, with its own messages at the
fields). Both answer with an :class:`AuditFilter`; the vocabulary and bounds are here."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal

from authgate.services.audit.events import EventType

Outcome = Literal["success", "failure"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("success", "failure")
EVENT_TYPES: Final = frozenset(event.value for event in EventType)
# More types than a filter names in practice; bounds the IN list the query builds.
MAX_EVENT_TYPES: Final = 30
# An actor is a login or an API key name (each at most this long).
MAX_ACTOR_LENGTH: Final = 254


def outcome_of(raw: str) -> Outcome | None:
    """``raw`` as an outcome, or None when it is not one."""
    return next((outcome for outcome in OUTCOMES if outcome == raw), None)


def day_range(first: date | None, last: date | None) -> tuple[datetime | None, datetime | None]:
    """Whole UTC days, both inclusive, as the instants the repository searches between
    (from the start of ``first`` to before the start of the day after ``last``)."""
    since = datetime.combine(first, time.min, tzinfo=UTC) if first else None
    until = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC) if last else None
    return since, until
