"""The one way authgate reads a given instant into UTC, and the one way it writes
instants: ISO 8601 in UTC with ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from authgate.clock import as_utc, format_utc, utc_now


def test_utc_now_is_aware_utc() -> None:
    assert utc_now().tzinfo is UTC


def test_an_instant_is_written_in_utc_with_z_and_milliseconds() -> None:
    moment = datetime(2026, 12, 4, 17, 40, 0, 123456, tzinfo=UTC)
    assert format_utc(moment) == "2026-12-04T17:40:00.123Z"


def test_an_instant_in_another_zone_is_converted_to_utc() -> None:
    moment = datetime(2026, 12, 4, 18, 40, tzinfo=timezone(timedelta(hours=1)))
    assert format_utc(moment) == "2026-12-04T17:40:00.000Z"


def test_microseconds_when_asked_for() -> None:
    moment = datetime(2026, 12, 4, 17, 40, 0, 5, tzinfo=UTC)
    assert format_utc(moment, timespec="microseconds") == "2026-12-04T17:40:00.000005Z"


def test_seconds_and_minutes_for_people() -> None:
    moment = datetime(2026, 12, 4, 17, 40, 36, 999999, tzinfo=UTC)
    assert format_utc(moment, timespec="seconds") == "2026-12-04T17:40:36Z"
    assert format_utc(moment, timespec="minutes") == "2026-12-04T17:40Z"


def test_a_naive_time_is_taken_as_utc() -> None:
    """SQLite hands back naive times; they are UTC, never the machine's local time."""
    naive = datetime(2026, 12, 4, 17, 40)  # noqa: DTZ001 - the case under test
    assert format_utc(naive, timespec="seconds") == "2026-12-04T17:40:00Z"


def test_a_given_instant_is_read_into_utc() -> None:
    """An offset is converted; a time without zone is taken as UTC."""
    moment = datetime(2026, 12, 4, 18, 40, tzinfo=timezone(timedelta(hours=1)))
    assert as_utc(moment) == datetime(2026, 12, 4, 17, 40, tzinfo=UTC)
    assert as_utc(moment).tzinfo is UTC
    naive = datetime(2026, 12, 4, 17, 40)  # noqa: DTZ001 - the case under test
    assert as_utc(naive) == datetime(2026, 12, 4, 17, 40, tzinfo=UTC)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1))),
    ],
)
def test_an_instant_with_no_utc_form_is_a_value_error(moment: datetime) -> None:
    """Valid with its offset, outside the years 1 to 9999 in UTC: a ValueError (what
    validators and option parsers refuse input with), never an OverflowError."""
    with pytest.raises(ValueError, match="out of range"):
        as_utc(moment)


def test_the_extremes_in_utc_are_read() -> None:
    first = datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert as_utc(first) == datetime(1, 1, 1, tzinfo=UTC)
    last = datetime(9999, 12, 31, 22, 59, 59, tzinfo=timezone(timedelta(hours=-1)))
    assert as_utc(last) == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
