"""Runs every benchmark in bench/ and prints their figures (see bench/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = ["auth_overhead.py"]


def main() -> int:
    here = Path(__file__).resolve().parent
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        completed = subprocess.run([sys.executable, str(here / name), *sys.argv[1:]], check=False)
        if completed.returncode != 0:
            return completed.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
