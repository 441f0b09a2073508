"""A fresh run's evidence against the committed report: the same conclusions, test for test.

    python .ci/check_report.py reports/default reports/latest

Fails (exit 1) if any verdict of the matrix, any group's verdict or pass rate, any test's
outcome or verdict changed, or a test came or went. Values may move in their last digits
between machines (OpenBLAS chooses its kernels by CPU, and training amplifies the
differences), so changed values are counted, not failed: on the machine that made the
committed report the files are byte-identical. Fails too if the fresh index.md outgrew what a
reader takes in (MAX_INDEX_BYTES): per-seed values belong in claims.csv and results.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mechclaims.evidence.collector import comparison_lines
from mechclaims.evidence.compare import compare_results

CONCLUSIONS = ("decisions", "verdicts", "outcomes", "added", "removed")
MAX_INDEX_BYTES = 150_000


def main(committed: Path, fresh: Path) -> int:
    earlier, now = (json.loads((path / "results.json").read_text()) for path in (committed, fresh))
    comparison = compare_results(earlier, now, str(committed))
    for line in comparison_lines(comparison):
        print(line)
    size = (fresh / "index.md").stat().st_size
    if size > MAX_INDEX_BYTES:
        print(f"CI: {fresh / 'index.md'} has {size} bytes, more than {MAX_INDEX_BYTES}: per-seed "
              "detail belongs in claims.csv and results.json.", file=sys.stderr)  # fmt: skip
        return 1
    moved = [key for key in CONCLUSIONS if comparison[key]]
    if moved:
        print(f"CI: the evidence's conclusions moved ({', '.join(moved)}); regenerate "
              f"{committed} as reports/README.md says.", file=sys.stderr)  # fmt: skip
        return 1
    print(f"the conclusions of {fresh} are those of {committed}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*map(Path, sys.argv[1:3])))
