"""Run comparison (`compare_results`, `--evidence-compare`, .ci/check_report.py) when the runs do
not share every cell: a verdict of the matrix (claim, reading, preset), a whole claim or a test
present in one run and absent in the other must be reported, in both directions, and fail the
check of the committed report.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from mechclaims.evidence.collector import comparison_lines
from mechclaims.evidence.compare import compare_results

CHECK_REPORT = Path(__file__).resolve().parents[2] / ".ci" / "check_report.py"
DECIDING = "test_controlled_across_seeds"
CELLS = {("alpha", "tiny-mha"): "refuted", ("alpha", "gpt2-style"): "supported",
         ("beta", "tiny-mha"): "inconclusive"}  # fmt: skip


def _results(cells: dict[tuple[str, str], str]) -> dict:
    """results.json of a run with a deciding verdict per (claim, preset) and two seeds' tests."""
    claims = {}
    for (claim, preset), verdict in cells.items():
        entry = claims.setdefault(claim, {"claim": claim, "verdicts": [], "summary": [],
                                          "tests": []})  # fmt: skip
        group = {"preset": preset}
        entry["verdicts"].append({"test": DECIDING, "group": group, "verdict": verdict})
        entry["summary"].append({"test": "test_controlled", "group": group,
                                 "verdict": verdict, "pass_rate": 0.5})  # fmt: skip
        entry["tests"] += [
            {"nodeid": f"claims/test_{claim}.py::test_controlled[{preset}-seed{seed}]",
             "outcome": "passed", "verdict": verdict, "values": {"statistic": 0.1 * seed}}
            for seed in range(2)
        ]  # fmt: skip
    return {"claims": list(claims.values())}


def _without(cells: dict, *removed: tuple[str, str]) -> dict:
    return {cell: verdict for cell, verdict in cells.items() if cell not in removed}


def _one_sided(comparison: dict) -> list[tuple]:
    return [(c["claim"], c["group"]["preset"], c["verdict_before"], c["verdict_now"])
            for c in comparison["decisions"]]  # fmt: skip


@pytest.mark.parametrize("direction", ["removed", "added"])
def test_a_cell_in_one_run_only_is_a_changed_verdict_and_its_tests_came_or_went(direction):
    full, fewer = _results(CELLS), _results(_without(CELLS, ("alpha", "gpt2-style")))
    earlier, now = (full, fewer) if direction == "removed" else (fewer, full)
    comparison = compare_results(earlier, now, "before")
    sides = ("supported", None) if direction == "removed" else (None, "supported")
    assert _one_sided(comparison) == [("alpha", "gpt2-style", *sides)]
    gone_or_new = [where["nodeid"] for where in comparison[direction]]
    assert gone_or_new == [f"claims/test_alpha.py::test_controlled[gpt2-style-seed{seed}]"
                           for seed in range(2)]  # fmt: skip
    other = "added" if direction == "removed" else "removed"
    assert comparison[other] == []
    assert f"alpha [preset=gpt2-style]: verdict {sides[0]} -> {sides[1]}" in "\n".join(
        comparison_lines(comparison)
    )


@pytest.mark.parametrize("direction", ["removed", "added"])
def test_a_claim_in_one_run_only_is_reported_cell_by_cell(direction):
    full, fewer = _results(CELLS), _results(_without(CELLS, ("beta", "tiny-mha")))
    earlier, now = (full, fewer) if direction == "removed" else (fewer, full)
    comparison = compare_results(earlier, now, "before")
    sides = ("inconclusive", None) if direction == "removed" else (None, "inconclusive")
    assert _one_sided(comparison) == [("beta", "tiny-mha", *sides)]
    assert len(comparison[direction]) == 2


def test_runs_of_the_same_cells_compare_equal_and_a_changed_verdict_is_not_one_sided():
    assert _one_sided(compare_results(_results(CELLS), _results(CELLS), "before")) == []
    changed = {**CELLS, ("alpha", "tiny-mha"): "inconclusive"}
    comparison = compare_results(_results(CELLS), _results(changed), "before")
    assert _one_sided(comparison) == [("alpha", "tiny-mha", "refuted", "inconclusive")]
    assert comparison["added"] == comparison["removed"] == []


def _check_report(tmp_path: Path, earlier: dict, now: dict) -> int:
    """.ci/check_report.py's exit status on a committed and a fresh report of these results."""
    spec = importlib.util.spec_from_file_location("check_report", CHECK_REPORT)
    check_report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_report)
    for name, results in (("committed", earlier), ("fresh", now)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results))
        (tmp_path / name / "index.md").write_text("# report\n")
    return check_report.main(tmp_path / "committed", tmp_path / "fresh")


def _without_a_test(results: dict) -> dict:
    """The same run less its last test: a seed fewer, no verdict changed."""
    fewer = copy.deepcopy(results)
    fewer["claims"][-1]["tests"].pop()
    return fewer


@pytest.mark.parametrize(
    "change", ["cell removed", "cell added", "test removed", "test added", "none"]
)
def test_the_check_of_the_committed_report_fails_on_a_cell_or_test_that_came_or_went(
    tmp_path, change
):
    full = _results(CELLS)
    fewer_cells, fewer_tests = (
        _results(_without(CELLS, ("alpha", "tiny-mha"))),
        _without_a_test(full),
    )
    earlier, now = {"cell removed": (full, fewer_cells), "cell added": (fewer_cells, full),
                    "test removed": (full, fewer_tests), "test added": (fewer_tests, full),
                    "none": (full, copy.deepcopy(full))}[change]  # fmt: skip
    assert _check_report(tmp_path, earlier, now) == (0 if change == "none" else 1)
