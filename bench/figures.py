"""Helpers of the scale benchmarks beside ``report.py``: percentiles, the rows' detail
lines, and clean exits on SIGTERM (servers stopped, scratch databases dropped)."""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Sequence

from report import Row, at_most


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` 0.99 for p99) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def row(
    id_: str,
    measure: str,
    value: float,
    unit: str,
    *,
    maximum: float | None = None,
    detail: str = "",
) -> Row:
    """A figure rounded for printing, judged against ``maximum`` when it has a target."""
    value = round(value, 3)
    if maximum is None:
        return Row(id_, measure, value, unit, detail=detail)
    return at_most(id_, measure, value, maximum, unit=unit, detail=detail)


def print_details(rows: Sequence[Row]) -> None:
    """How each figure was obtained (``report.print_rows`` shows the figures alone)."""
    print("Details")
    for row in rows:
        if row.detail:
            print(f"  {row.id:<4} {row.detail}")


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks stop servers and drop databases."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
