"""Time as an injectable dependency, so expiry and lockout are tested without sleeping;
the one way a given instant is read into UTC, and the one way instants are written for
people and other programs."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


_OUT_OF_RANGE = "Time out of range: in UTC, it must fall in the years 1 to 9999."


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive time is taken as UTC.

    Raises ``ValueError`` (what parsers and validators refuse input with) for an instant
    that has no UTC form: ``0001-01-01T00:00:00+01:00`` is an hour before the year 1, and
    ``9999-12-31T23:59:59-01:00`` after 9999. The database stores every instant in UTC,
    where the conversion would otherwise fail with an ``OverflowError`` (a crash, not a
    refusal) when the query is sent.
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(_OUT_OF_RANGE) from None


Timespec = Literal["minutes", "seconds", "milliseconds", "microseconds"]


def format_utc(moment: datetime, *, timespec: Timespec = "milliseconds") -> str:
    """An instant in ISO 8601, in UTC, with ``Z`` for the offset:
    ``2026-12-04T17:40:00.123Z`` (what JavaScript's ``toISOString`` and UTMStack write;
    ``seconds`` for people: ``2026-12-04T17:40:00Z``). A naive time is taken as UTC."""
    return as_utc(moment).isoformat(timespec=timespec).replace("+00:00", "Z")
