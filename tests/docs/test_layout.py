"""The repository's layout as pytest collects it: without __init__.py files (rootdir-relative
imports), two test modules with the same basename in one run are an import-file mismatch."""

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLLECTED = ("claims", "tests", "bench")


def test_every_test_module_basename_is_unique_across_the_run():
    modules = [p for d in COLLECTED for p in (ROOT / d).rglob("test_*.py")]
    counts = Counter(p.name for p in modules)
    assert modules, "no test modules found"
    assert [name for name, n in counts.items() if n > 1] == []
