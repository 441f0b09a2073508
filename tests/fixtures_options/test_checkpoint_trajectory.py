"""A run through training from real checkpoints: `pytest claims/ --model-checkpoint ...` on the
snapshots of one run of our trainer (as .npz files and as HF folders), given in shuffled order.

The plugin orders them by step and refuses an ambiguous run before any test runs; each step is
judged exactly as the checkpoint alone would be; the trajectory each reading records (its table
and figure, drawn by the first step's test) holds the very numbers each step's own test
recorded."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mechclaims.interp.training_steps import training_step
from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ("-p", "mechclaims.fixtures.plugin")
SNAPSHOTS = {  # --snapshot-format: the snapshots' paths under the run's folder
    "npz": ["run.step000000.npz", "run.step000010.npz", "run.step000020.npz"],
    "hf": ["run/step0", "run/step10", "run/step20"],
}
# tiny-mha as HF's gpt2 can hold it (for both formats: the same run, written two ways)
HF_EXPRESSIBLE = ("--set", "norm=pre", "--set", "final_ln=true", "--set", "unembed_bias=false")
SHUFFLED = (1, 2, 0)  # the order the snapshots are given in
SEEDS = "0:4"  # the baselines: seeds 1-3 (seed 0 is the run's own initialization)
TRAJECTORY = "the run through training"
# Records the data of every figure a test draws: its lines' and its markers' points by label.
FIGURE_SPY = """
import json

from matplotlib.collections import PathCollection

from mechclaims.evidence.recorder import Evidence

drawn = {}
record_figure = Evidence.figure


def spied(self, name, fig):
    points = {}
    for ax in fig.axes:
        for line in ax.lines:
            points[line.get_label()] = line.get_xydata().tolist()
        for marks in ax.collections:
            if isinstance(marks, PathCollection):
                points[marks.get_label()] = marks.get_offsets().tolist()
    drawn.setdefault(self._nodeid, {})[name] = points
    record_figure(self, name, fig)


Evidence.figure = spied


def pytest_sessionfinish(session):
    with open("drawn.json", "w") as handle:
        json.dump(drawn, handle)
"""


def train_cli(out: Path, snapshot_format: str) -> dict:
    """`mechclaims train` of tiny-mha, 20 steps with a snapshot every 10: its JSON summary."""
    done = subprocess.run(
        [sys.executable, "-m", "mechclaims.model", "train", "--preset", "tiny-mha",
         *HF_EXPRESSIBLE, "--task", "patterns", "--steps", "20", "--snapshot-every", "10",
         "--snapshot-format", snapshot_format, "--warmup", "2", "--batch-size", "16",
         "--eval-size", "64", "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=list(SNAPSHOTS))
def snapshots(request, tmp_path_factory) -> list[str]:
    """The snapshots of a short run of our trainer, in the order of their steps, in the format
    of the parameter."""
    folder = tmp_path_factory.mktemp(request.param)
    summary = train_cli(folder / "run.npz", request.param)
    assert summary["snapshots"] == [str(folder / path) for path in SNAPSHOTS[request.param]]
    return summary["snapshots"]


def run_claims(folder: Path, checkpoints: list[str]) -> dict:
    """`pytest claims/ --model-checkpoint ...` with the figure spy: {"results": results.json,
    "drawn": the figures' data}."""
    (folder / "figure_spy.py").write_text(FIGURE_SPY)
    env = {**os.environ, "PYTHONPATH": str(folder), "OPENBLAS_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "claims"), "-q", "-p", "figure_spy",
         "-p", "no:cacheprovider", "--evidence-dir", str(folder / "report"), "--seeds", SEEDS,
         *given(checkpoints)],
        cwd=folder, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {
        "results": json.loads((folder / "report" / "results.json").read_text()),
        "drawn": json.loads((folder / "drawn.json").read_text()),
    }


@pytest.fixture(scope="module")
def trajectory_run(snapshots, tmp_path_factory) -> dict:
    return run_claims(tmp_path_factory.mktemp("shuffled"), [snapshots[index] for index in SHUFFLED])


def deciding_tests(results: dict) -> dict[tuple[str, str], dict]:
    """{(claim/reading, checkpoint): its deciding test}."""
    return {
        (part["claim"], test["params"]["checkpoint"]): test
        for part in results["claims"]
        for test in part["tests"]
        if test["decides"]
    }


@pytest.mark.parametrize(
    ("changes", "occupied", "message"),
    [((), False, "--snapshot-format hf: norm='post': HF's gpt2 has norm='pre'"),
     (HF_EXPRESSIBLE, True, "--snapshot-format hf: */run exists and is not an empty folder")],
)  # fmt: skip
def test_hf_snapshots_of_a_model_no_hf_family_has_or_into_an_occupied_folder_are_refused(
    tmp_path, changes, occupied, message
):
    if occupied:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "notes.txt").write_text("mine")
    done = subprocess.run(
        [sys.executable, "-m", "mechclaims.model", "train", "--preset", "tiny-mha", *changes,
         "--task", "patterns", "--snapshot-every", "10", "--snapshot-format", "hf", "--out",
         str(tmp_path / "run.npz")],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert fnmatch.fnmatch(done.stderr.strip().splitlines()[-1], f"mechclaims: error: {message}")
    assert not (tmp_path / "run.npz").exists()


def test_the_trainer_records_each_snapshots_step_and_the_last_checkpoints(snapshots):
    assert [training_step(path) for path in snapshots] == [0, 10, 20]
    last = next(folder / "run.npz" for folder in Path(snapshots[0]).parents
                if (folder / "run.npz").exists())  # fmt: skip
    assert training_step(str(last)) == 20


def test_the_report_takes_the_checkpoints_in_the_order_of_their_steps(snapshots, trajectory_run):
    results = trajectory_run["results"]
    assert results["descriptions"]["groups"] == {"checkpoint": snapshots}
    for (_, checkpoint), test in deciding_tests(results).items():
        assert test["values"]["step"] == training_step(checkpoint)
        assert test["values"]["summary"].startswith(f"step {test['values']['step']}: ")


def trajectories(results: dict) -> dict[str, dict]:
    """{claim/reading: its trajectory table (columns, rows)}; only the first step's tests have
    one."""
    tables = {}
    for part in results["claims"]:
        for test in part["tests"]:
            for table in test["tables"]:
                assert table["name"] == TRAJECTORY
                assert part["claim"] not in tables
                tables[part["claim"]] = table
    return tables


def test_each_readings_trajectory_is_each_steps_own_record(snapshots, trajectory_run):
    """Two computations: the first step's test judges every step for its table; each step's
    own test judges its step (numbers rounded alike on their way into results.json)."""
    tests = deciding_tests(trajectory_run["results"])
    tables = trajectories(trajectory_run["results"])
    assert len(tables) == 12  # 6 claims x 2 readings
    for reading, table in tables.items():
        rows = [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]
        assert [row["checkpoint"] for row in rows] == snapshots
        for row in rows:
            own = tests[reading, row["checkpoint"]]
            assert (row["step"], row["verdict"]) == (own["values"]["step"], own["verdict"])
            if row["verdict"] == "not-applicable":
                assert row["why"] == own["values"]["why"]
                continue
            for name in ("statistic", "baseline_median", "direction", "adjusted_p"):
                assert row[name] == own["values"][name], (reading, row["step"], name)


def marker_label(test: dict) -> str:
    """The legend label of a step's verdict marker (claims/claim_plots.py CHECKPOINT_VERDICTS)."""
    if test["verdict"] == "unlike-random":
        return f"unlike-random, {test['values']['direction']}"
    return "not applicable" if test["verdict"] == "not-applicable" else test["verdict"]


def test_each_readings_figure_draws_each_steps_own_numbers(snapshots, trajectory_run):
    tests = deciding_tests(trajectory_run["results"])
    drawn = trajectory_run["drawn"]
    for reading in dict.fromkeys(reading for reading, _ in tests):
        own = [tests[reading, path] for path in snapshots]
        figures = drawn.get(own[0]["nodeid"], {})  # the first step's test draws the run
        assert all(TRAJECTORY not in drawn.get(test["nodeid"], {}) for test in own[1:])
        judged = [test for test in own if test["verdict"] != "not-applicable"]
        if not judged:  # claim 6's seed protocol judges no checkpoint: nothing to draw
            assert TRAJECTORY not in figures
            continue
        points = figures[TRAJECTORY]
        along = [[test["values"]["step"], test["values"]["statistic"]] for test in judged]
        medians = [[test["values"]["step"], test["values"]["baseline_median"]] for test in judged]
        np.testing.assert_allclose(points.pop("checkpoint"), along, rtol=1e-9)
        np.testing.assert_allclose(points.pop("random inits' median"), medians, rtol=1e-9)
        marks = {}
        for test in own:
            at = test["values"]["statistic"] if test in judged else 0.0  # on the x axis
            marks.setdefault(marker_label(test), []).append([test["values"]["step"], at])
        assert points.keys() == marks.keys()
        for label, expected in marks.items():
            np.testing.assert_allclose(points[label], expected, rtol=1e-9, err_msg=reading)


@pytest.mark.parametrize("snapshots", ["npz"], indirect=True)  # the same code judges HF's
def test_each_step_is_judged_as_the_checkpoint_alone_is(snapshots, trajectory_run, tmp_path):
    """Run alone, the first and the last checkpoint get the verdicts and numbers their steps got
    in the run, in a report without steps or a trajectory (a single checkpoint behaves as before
    runs through training)."""
    in_run = deciding_tests(trajectory_run["results"])
    for path in (snapshots[0], snapshots[-1]):
        folder = tmp_path / Path(path).name
        folder.mkdir()
        alone = run_claims(folder, [path])
        assert not trajectories(alone["results"])
        for (reading, checkpoint), test in deciding_tests(alone["results"]).items():
            stepped = in_run[reading, checkpoint]
            expected = {name: value for name, value in stepped["values"].items() if name != "step"}
            expected["summary"] = expected["summary"].removeprefix(
                f"step {stepped['values']['step']}: "
            )
            assert (test["verdict"], test["values"]) == (stepped["verdict"], expected), reading


# ---------------------------------------------------------------- the plugin's options


def saved(path: Path, step: int | None = None, **changes) -> str:
    Transformer(TransformerConfig.preset("tiny-mha").replace(**changes), seed=0).save(path, step)
    return str(path)


def test_the_plugin_parametrizes_a_run_in_the_order_of_its_steps(pytester):
    pytester.makepyfile(
        """
        from mechclaims.fixtures.plugin import OPTIONS_KEY

        def test_of_a_checkpoint(checkpoint, pytestconfig):
            print("STEPS", pytestconfig.stash[OPTIONS_KEY].steps)
        """
    )
    paths = [saved(pytester.path / f"step{step}.npz") for step in (100, 9, 10)]
    result = pytester.runpytest(*PLUGIN, *given(paths), "-v", "-s")
    result.stdout.fnmatch_lines([f"*::test_of_a_checkpoint?step{step}.npz? STEPS (9, 10, 100)"
                                 for step in (9, 10, 100)])  # fmt: skip


def test_one_checkpoint_or_several_without_steps_are_judged_as_given(pytester):
    pytester.makepyfile(
        """
        from mechclaims.fixtures.plugin import OPTIONS_KEY

        def test_of_a_checkpoint(checkpoint, pytestconfig):
            print("STEPS", pytestconfig.stash[OPTIONS_KEY].steps)
        """
    )
    result = pytester.runpytest(*PLUGIN, *given([saved(pytester.path / "step5.npz")]), "-s")
    result.stdout.fnmatch_lines(["*STEPS ()*"])
    paths = [saved(pytester.path / "b.npz"), saved(pytester.path / "a.npz", d_model=32)]
    result = pytester.runpytest(*PLUGIN, *given(paths), "-v", "-s")
    result.stdout.fnmatch_lines([f"*::test_of_a_checkpoint?{name}.npz? STEPS ()"
                                 for name in ("b", "a")])  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: [saved(tmp / "step1.npz"), saved(tmp / "final.npz")],
         "1 of 2 checkpoints give no training step (*/final.npz): name each as step1000*"),
        (lambda tmp: [saved(tmp / "run.npz", 20), saved(tmp / "run.step000020.npz")],
         "two checkpoints at step 20: */run.npz, */run.step000020.npz"),
        (lambda tmp: [saved(tmp / "step1.npz"), saved(tmp / "step2.npz", d_model=32)],
         "the checkpoints of one run share a config; */step1.npz and */step2.npz differ in "
         "d_model"),
        (lambda tmp: [saved(tmp / "step1.npz", 2), saved(tmp / "step3.npz")],
         "*/step1.npz: its steps disagree: its name 1, __step__ 2"),
    ],
)  # fmt: skip
def test_an_ambiguous_run_is_a_usage_error_naming_the_paths(pytester, make, message):
    pytester.makepyfile(test_ran="def test_ran():\n    open('ran', 'w').close()\n")
    result = pytester.runpytest(*PLUGIN, *given(make(pytester.path)))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --model-checkpoint: {message}"])
    assert not (pytester.path / "ran").exists()


def given(paths: list[str]) -> list[str]:
    return [arg for path in paths for arg in ("--model-checkpoint", path)]
