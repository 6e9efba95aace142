"""The fixed windows both throttle stores count in, and the sliding count over them."""

from __future__ import annotations

from authgate.storage.throttle_store import sliding_count, window_start


def test_a_window_starts_at_a_multiple_of_its_length_and_holds_its_first_second() -> None:
    """``now`` on a boundary opens the new window; just before it, the old one."""
    assert window_start(600.0, 300) == 600
    assert window_start(899.999, 300) == 600
    assert window_start(900.0, 300) == 900
    assert isinstance(window_start(601.5, 300), int)


def test_the_previous_window_weighs_what_still_overlaps_the_last_window() -> None:
    """A third into the current window, two thirds of the previous one still count."""
    assert sliding_count(2, 3, window=300, now=700.0) == 2 + 3 * (1 - 100 / 300)
    assert sliding_count(2, 3, window=300, now=600.0) == 5.0
