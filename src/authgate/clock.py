"""Time as an injectable dependency, so expiry and lockout are tested without sleeping;
and the one way instants are written for people and other programs."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


Timespec = Literal["minutes", "seconds", "milliseconds", "microseconds"]


def format_utc(moment: datetime, *, timespec: Timespec = "milliseconds") -> str:
    """An instant in ISO 8601, in UTC, with ``Z`` for the offset:
    ``2026-12-04T17:40:00.123Z`` (what JavaScript's ``toISOString`` and UTMStack write;
    ``seconds`` for people: ``2026-12-04T17:40:00Z``). A naive time is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
