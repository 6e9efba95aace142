"""The one way authgate writes instants: ISO 8601 in UTC with ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from authgate.clock import format_utc, utc_now


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
