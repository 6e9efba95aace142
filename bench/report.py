"""Result rows that benchmarks print and write as JSON (``--json-out``) for a runner.

Each row is one figure: an id such as ``P3a``, what was measured, the value and its
unit, the target if the figure has one (``">= 0.60"``) and whether this run met it.
Nothing fails on a missed target: figures from a shared host are noisy.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    id: str
    measure: str
    value: float
    unit: str
    target: str | None = None
    met: bool | None = None
    detail: str = ""


def at_least(
    id: str, measure: str, value: float, minimum: float, *, unit: str = "", detail: str = ""
) -> Row:
    return Row(id, measure, value, unit, f">= {minimum:g}", value >= minimum, detail)


def at_most(
    id: str, measure: str, value: float, maximum: float, *, unit: str = "", detail: str = ""
) -> Row:
    return Row(id, measure, value, unit, f"<= {maximum:g}", value <= maximum, detail)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run (well under a minute)"
    )
    parser.add_argument(
        "--json-out", type=Path, metavar="PATH", help="also write the figures as a JSON list"
    )


def print_rows(rows: Sequence[Row]) -> None:
    print("Summary")
    for row in rows:
        target = ""
        if row.target is not None:
            target = f"   target {row.target}: {'met' if row.met else 'MISSED'}"
        print(f"  {row.id:<4} {row.measure:<52} {row.value:>10.3f} {row.unit:<8}{target}")


def write_json(path: Path | None, rows: Sequence[Row]) -> None:
    if path is not None:
        path.write_text(json.dumps([asdict(row) for row in rows], indent=2) + "\n")
