"""Unit tests of the evidence plugin's parts: values, Wilson interval, outcomes, the recorder."""

from __future__ import annotations

import errno
import math
import re
import tempfile
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy.stats import binomtest

from mechclaims.evidence.descriptions import checked_descriptions
from mechclaims.evidence.document import Cell
from mechclaims.evidence.files import writability_problem
from mechclaims.evidence.matrix import Decision, summary_sentences
from mechclaims.evidence.outcomes import combined_outcome, phase_outcome
from mechclaims.evidence.recorder import Evidence, figure_filename
from mechclaims.evidence.report import check_note
from mechclaims.evidence.results import record_order
from mechclaims.evidence.stats import spread, wilson_interval
from mechclaims.evidence.values import one_line, to_jsonable


@pytest.mark.parametrize(("successes", "trials"), [(0, 20), (20, 20), (10, 20), (3, 7), (1, 1)])
def test_wilson_interval_matches_scipy(successes, trials):
    expected = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(successes, trials)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)


@pytest.mark.parametrize("confidence", [0.8, 0.99])
def test_wilson_interval_at_other_levels_matches_scipy(confidence):
    for successes, trials in [(3, 7), (10, 20), (0, 5)]:
        expected = binomtest(successes, trials).proportion_ci(confidence, method="wilson")
        low, high = wilson_interval(successes, trials, confidence)
        assert (low, high) == (pytest.approx(expected.low, abs=1e-12),
                               pytest.approx(expected.high, abs=1e-12))  # fmt: skip


def test_wilson_interval_known_values():
    # 10/20: center 0.5, half-width z sqrt(5 + z²/4) / (20 + z²) with z = 1.959964.
    assert wilson_interval(10, 20) == pytest.approx((0.299298, 0.700702), abs=1e-6)
    assert wilson_interval(0, 20) == (0.0, pytest.approx(0.161125, abs=1e-6))
    assert wilson_interval(20, 20) == (pytest.approx(0.838875, abs=1e-6), 1.0)


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)


def test_spread_is_median_and_central_95_percent():
    values = list(range(41))  # percentiles of 0..40 land on integers: 1, 20, 39
    assert spread(values) == {"n": 41, "median": 20.0, "low": 1.0, "high": 39.0}


def test_to_jsonable_converts_numpy_and_rounds_floats():
    value = {"a": np.float32(0.1), "b": np.arange(3), "c": (np.bool_(True), None), 4: 1 / 3}
    expected = {"a": 0.100000001490, "b": [0, 1, 2], "c": [True, None], "4": 0.333333333333}
    assert to_jsonable(value) == expected
    assert [to_jsonable(x) for x in (math.nan, math.inf, -np.inf)] == ["nan", "inf", "-inf"]


def test_to_jsonable_names_the_value_it_cannot_convert():
    with pytest.raises(TypeError, match="value 'z' has type complex"):
        to_jsonable([1, 2j], what="value 'z'")


def test_one_line_keeps_the_first_line_and_masks_addresses():
    assert one_line("\n  <Model object at 0x7f3a2b>\nsecond line") == "<Model object at 0x…>"
    assert len(one_line("x" * 500)) == 200


def report(when, outcome, longrepr=None, **extra):
    return SimpleNamespace(
        when=when, outcome=outcome, longrepr=longrepr,
        failed=outcome == "failed", skipped=outcome == "skipped", **extra,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (report("setup", "passed"), None),
        (report("setup", "failed"), "error"),
        (report("setup", "skipped"), "skipped"),
        (report("setup", "skipped", wasxfail="no run"), "xfailed"),
        (report("call", "passed"), "passed"),
        (report("call", "failed"), "failed"),
        (report("call", "skipped", wasxfail=""), "xfailed"),
        (report("call", "passed", wasxfail=""), "xpassed"),
        (report("call", "failed", "[XPASS(strict)] was refuted"), "xpassed"),
        (report("teardown", "failed"), "error"),
    ],
)
def test_phase_outcome(phase, expected):
    assert phase_outcome(phase) == expected


def test_combined_outcome_a_failed_call_wins_over_a_teardown_error():
    setup = (None, "")
    assert combined_outcome([setup, ("failed", "boom"), ("error", "oops")]) == ("failed", "boom")
    assert combined_outcome([setup, ("passed", ""), ("error", "oops")]) == ("error", "oops")
    assert combined_outcome([(None, "")]) is None


def test_record_order_sorts_seeds_numerically():
    records = [
        {"claim": claim, "nodeid": f"t.py::test[{seed}]", "params": {"seed": seed}}
        for claim, seed in [("b", 2), ("a", 10), ("(unclaimed)", 0), ("a", 9)]
    ]
    ordered = [(r["claim"], r["params"]["seed"]) for r in sorted(records, key=record_order)]
    assert ordered == [("a", 9), ("a", 10), ("b", 2), ("(unclaimed)", 0)]


def test_evidence_records_values_and_tables():
    evidence = Evidence("t.py::test[3]", {"seed": 3}, directory=None)
    evidence.record(statistic=np.float64(0.5), verdict="refuted")
    evidence.table("frame", pd.DataFrame({"x": [1, 2]}, index=pd.Index(["a", "b"], name="token")))
    evidence.table("rows", [{"x": 1}, {"y": 2.5}])
    assert evidence.payload() == {
        "values": {"statistic": 0.5, "verdict": "refuted"},
        "tables": [
            {"name": "frame", "columns": ["token", "x"], "rows": [["a", 1], ["b", 2]]},
            {"name": "rows", "columns": ["x", "y"], "rows": [[1, None], [None, 2.5]]},
        ],
        "figures": [],
    }


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda e: e.record(seed=1), ValueError, "'seed' is taken"),
        (lambda e: e.record(outcome=1), ValueError, "'outcome' is taken"),
        (lambda e: e.record(statistic=2), ValueError, "already recorded"),
        (lambda e: e.record(verdict="Maybe so"), ValueError, "verdict must be one of"),
        (lambda e: e.record(verdict=3), ValueError, "verdict must be one of"),
        (lambda e: e.record(model=object()), TypeError, "value 'model' has type object"),
        (lambda e: e.table("t", {"x": [1]}), TypeError, "DataFrame or a list of dicts"),
        (lambda e: e.figure("f", "not a figure"), TypeError, "matplotlib Figure"),
        (lambda e: e.figure("", None), ValueError, "non-empty string"),
    ],
)
def test_evidence_rejects_bad_records(call, error, match):
    evidence = Evidence("t.py::test[3]", {"seed": 3}, directory=None)
    evidence.record(statistic=1)
    with pytest.raises(error, match=match):
        call(evidence)


def test_a_figure_is_titled_and_one_that_cannot_be_saved_keeps_its_error(tmp_path):
    blocked = tmp_path / "report"
    blocked.write_text("a file where the evidence directory should be")
    heading = "1. A claim\ncontrolled · preset small, seed 3"
    evidence = Evidence("t.py::test[3]", {"seed": 3}, blocked, heading)
    figure = Figure()
    figure.suptitle("its own title")
    evidence.figure("curve", figure)  # does not raise: the test's verdict still counts
    assert figure.get_suptitle() == f"{heading}: curve\nits own title"
    (entry,) = evidence.payload()["figures"]
    assert entry["error"].startswith("NotADirectoryError")


def test_figure_filenames_are_safe_and_unique():
    first, second = figure_filename("a/b.py::t[x]", "p q"), figure_filename("a/b.py::t[x]", "p/q")
    assert first != second
    assert first == figure_filename("a/b.py::t[x]", "p q")
    for name in (first, second):
        assert re.fullmatch(r"a_b\.py_t_x_-p_q-[0-9a-f]{10}\.png", name)


def test_writability_problem_tries_the_directory_and_leaves_nothing(tmp_path, monkeypatch):
    file = tmp_path / "file"
    file.write_text("")
    assert writability_problem(tmp_path / "new" / "dir") is None
    assert list(tmp_path.iterdir()) == [file]  # what the try created is gone again
    assert "existing file" in writability_problem(file)
    assert "cannot be created: " in writability_problem(file / "sub")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", full_disk)
    full = tmp_path / "full" / "report"
    assert writability_problem(full) == (
        f"{full} cannot be created or written: No space left on device"
    )
    assert not (tmp_path / "full").exists()
    assert writability_problem(full, try_it=False) is None  # an xdist worker does not try


def decision(claim: str, reading: str, group: dict, verdict: str) -> Decision:
    return Decision(claim, reading, group, {"verdict": verdict})


def test_summary_sentences_count_claims_per_reading_and_name_none():
    described = checked_descriptions(
        {"readings": [{"id": "c", "name": "controlled", "supported": "survive their nulls"}]}
    )
    decisions = [
        decision("a", "c", {"preset": "p"}, "refuted"),
        decision("a", "c", {"preset": "q"}, "inconclusive"),
        decision("b", "c", {"preset": "p"}, "refuted"),
        decision("b", "c", {"preset": "q"}, "error"),
        decision("a", "", {}, "supported"),  # an unnamed reading, undescribed, one group
    ]
    assert summary_sentences(decisions, described) == [
        "None of the 2 claims survive their nulls on any of the 2 presets: "
        "1 inconclusive, 2 refuted, 1 error of 4 controlled verdicts.",
        "1 of the 1 claim are supported: 1 supported of 1 verdict.",
    ]


def test_a_reading_with_words_of_its_own_is_counted_in_them_in_its_verdicts_order():
    """A study's cells say emerges, persists, fades (supported, refuted, refuted) in its own
    words, counted in the order of the verdicts they stand for."""
    described = checked_descriptions(
        {"readings": [{"id": "e", "name": "evolution", "supported": "emerge through training"}]}
    )
    cells = [("persists", "refuted"), ("emerges", "supported"), ("fades", "refuted"),
             ("inconclusive", "inconclusive"), ("fades", "refuted")]  # fmt: skip
    decisions = [
        Decision("a", "e", {"preset": "p", "statistic": f"s{i}"}, {"verdict": v, "finding": w})
        for i, (w, v) in enumerate(cells)
    ]
    assert summary_sentences(decisions, described) == [
        "1 of the 5 statistics emerge through training: "
        "1 emerges, 1 inconclusive, 2 fades, 1 persists of 5 evolution verdicts."
    ]


@pytest.mark.parametrize(
    ("recorded", "note"),
    [
        ({"registry_check": "reproduced", "registry_verdict": "refuted"}, ""),
        ({"registry_check": "consistent", "seeds_tested": 3}, "consistent, not decided on 3 seeds"),
        ({"registry_check": "contradicted", "registry_verdict": "supported"},
         "contradicts the registry: supported"),
        ({"registry_check": "missing", "registry_verdict": "missing"}, "not in the registry"),
        ({"registry_verdict": "missing"}, "not in the registry"),  # a judge without the check
        ({"registry_verdict": "supported"}, "the registry says supported"),
        ({"outcome": "failed", "message": "ValueError: none"}, "test failed: ValueError: none"),
        ({}, ""),
    ],
)  # fmt: skip
def test_a_cells_note_says_how_the_verdict_stands_to_the_registry(recorded, note):
    entry = {"verdict": "refuted", "outcome": "passed", "message": "", **recorded}
    assert check_note(entry) == note


def test_a_projects_own_verdict_word_is_recorded_and_shown_in_a_neutral_tone():
    evidence = Evidence("test::x", {}, None)
    evidence.record(verdict="unlike-random")
    assert evidence.values["verdict"] == "unlike-random"
    cell = Cell("unlike-random", tone="unlike-random")
    assert cell.markdown().startswith("🔵 **unlike-random**")
    assert 'class="tone-other"' in cell.html()
    assert Cell("refuted", tone="refuted").markdown().startswith("🔴")
