"""Runs every benchmark in bench/ and prints one table of their figures.

Each script writes its figures as JSON rows (``--json-out``): ``{"id", "measure",
"value", "unit", "target", "met", "detail"}``. ``--quick`` passes ``--quick`` on for a
short smoke run (figures from it are not worth quoting); ``--only P3`` runs the scripts
whose rows start with the given ids. The table is printed in Markdown, and every row is
also written to ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# (script, the ids of the figures it measures)
BENCHMARKS = [
    ("auth_overhead.py", ("P1", "P2")),
    ("forward_auth.py", ("P3",)),
    ("peer_drf.py", ("P4",)),
    ("login_flood.py", ("P5",)),
    ("many_keys.py", ("P6",)),
    ("propagation.py", ("P7",)),
    ("tail_latency.py", ("P8",)),
]


def run(script: str, *, quick: bool) -> tuple[list[dict[str, Any]], str | None]:
    """The script's rows, and what went wrong if it failed."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "rows.json"
        command = [sys.executable, str(HERE / script), "--json-out", str(out)]
        if quick:
            command.append("--quick")
        print(f"== {script}", flush=True)
        completed = subprocess.run(command, check=False, cwd=HERE)
        rows: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
        problem = None if completed.returncode == 0 else f"exit code {completed.returncode}"
        return rows, problem


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| id | measure | value | target | met | detail |", "|---|---|---|---|---|---|"]
    for row in rows:
        met = {True: "yes", False: "**no**", None: ""}[row.get("met")]
        value = f"{row['value']:,.3g}" if abs(row["value"]) < 10 else f"{row['value']:,.0f}"
        lines.append(
            f"| {row['id']} | {row['measure']} | {value} {row['unit']} | "
            f"{row.get('target') or ''} | {met} | {row.get('detail') or ''} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke runs of everything")
    parser.add_argument("--only", action="append", default=[], help="e.g. P3 (repeatable)")
    args = parser.parse_args()
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    failures = []
    for script, ids in BENCHMARKS:
        if args.only and not set(ids) & set(args.only):
            continue
        script_rows, problem = run(script, quick=args.quick)
        rows += script_rows
        if problem:
            failures.append(f"{script}: {problem}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.json").write_text(json.dumps(rows, indent=2) + "\n")
    print()
    print(table(rows))
    print(f"\n{len(rows)} figures in {time.monotonic() - started:.0f} s")
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
