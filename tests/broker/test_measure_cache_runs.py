"""The measurement cache in real runs, each in a process of its own: a run killed half-way
(SIGKILL, and Ctrl-C's SIGINT under pytest-xdist) resumes where it stopped and reports as an
uninterrupted run; a changed threshold measures its claim alone again; a changed line of the
model's source measures everything again. (On a Dask cluster: test_broker_dask.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from toy_claim_project import (
    N_MEASUREMENTS,
    ROOT,
    calls,
    run_pytest,
    scratch_package,
    stopped_half_way,
    stored,
)

EVERY = {(seed, d_model) for seed in range(4) for d_model in (16, 64)}


def call_files(project: Path) -> set[str]:
    return {path.name for path in (project / "calls").iterdir() if path.name != "killed"}


def measured_since(project: Path, before: set[str]) -> list[tuple[int, int]]:
    """(seed, d_model) of every call of the toy measurement since the calls `before`."""
    return [tuple(int(part) for part in name.split("-")[:2])
            for name in call_files(project) - before]  # fmt: skip


def measurements(run) -> dict:
    return json.loads((run.project / "report" / "run.json").read_text())["measurements"]


def test_a_run_killed_half_way_resumes_where_it_stopped_and_reports_as_if_never_stopped(
    serial_report, toy_project
):
    cache = toy_project / "cache"
    stopped_half_way(toy_project, cache, signal.SIGKILL, 2)
    killed = stored(cache)
    assert 2 <= len(killed) <= N_MEASUREMENTS - 3

    before = call_files(toy_project)
    stopped_half_way(toy_project, cache, signal.SIGINT, len(killed) + 2, "-n", "2")
    stopped = stored(cache)
    assert not set(measured_since(toy_project, before)) & killed  # nothing measured twice
    assert len(killed) < len(stopped) < N_MEASUREMENTS

    before = call_files(toy_project)
    finished = run_pytest(toy_project, f"--measure-cache={cache}")
    assert finished.returncode == 0, finished.output
    assert sorted(measured_since(toy_project, before)) == sorted(EVERY - stopped)
    assert finished.report() == serial_report
    assert measurements(finished) == {"cache": str(cache), "from_cache": len(stopped),
                                      "computed": N_MEASUREMENTS - len(stopped)}  # fmt: skip


def test_under_xdist_each_worker_reads_and_stores_and_run_json_sums_their_counts(
    serial_report, toy_project
):
    run = run_pytest(toy_project, f"--measure-cache={toy_project / 'cache'}", "-n", "2")
    assert run.returncode == 0, run.output
    assert run.report() == serial_report
    counts = measurements(run)
    assert counts["computed"] == len(calls(toy_project))  # by both workers
    assert counts["computed"] + counts["from_cache"] >= N_MEASUREMENTS
    assert len(stored(toy_project / "cache")) == N_MEASUREMENTS


def claims_run(tmp_path: Path, registry: Path) -> dict:
    """run.json's measurements of claims 1 and 3 on tiny-mha, seeds 0-1, with `registry`."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               str(ROOT / "claims" / "test_claim1_detectors.py"),
               str(ROOT / "claims" / "test_claim3_selectivity.py"), "--model-preset", "tiny-mha",
               "--seeds", "0:2", f"--claims-registry={registry}",
               f"--measure-cache={tmp_path / 'cache'}",
               f"--evidence-dir={tmp_path / 'report'}"]  # fmt: skip
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, check=False)
    return json.loads((tmp_path / "report" / "run.json").read_text())["measurements"]


def entries(cache: Path) -> dict[str, str]:
    """{entry: the measure it is a result of} of every entry of the cache."""
    measures = {}
    for path in cache.glob("*.npz"):
        with np.load(path) as entry:
            measures[path.name] = json.loads(entry["identity"].tobytes())["measure"]["function"]
    return measures


def test_a_changed_threshold_measures_that_claim_alone_again(tmp_path):
    """Claims 1 and 3, 2 readings each, on 2 seeds: 8 measurements; after a change of one of
    claim 3's thresholds in a copy of the registry, its 4 alone are measured again."""
    registry = tmp_path / "registry.toml"
    text = (ROOT / "claims" / "registry.toml").read_text()
    registry.write_text(text)
    assert claims_run(tmp_path, registry)["computed"] == 8
    before = entries(tmp_path / "cache")
    changed = "seed_std = { value = 0.5, "
    assert text.count(changed) == 1
    registry.write_text(text.replace(changed, "seed_std = { value = 0.55, "))
    counts = claims_run(tmp_path, registry)
    assert (counts["computed"], counts["from_cache"]) == (4, 4)
    new = {name: measure for name, measure in entries(tmp_path / "cache").items()
           if name not in before}  # fmt: skip
    assert sorted(new.values()) == sorted(
        f"mechclaims.interp.claims.selectivity.{reading}"
        for reading in ("controlled", "seed_protocol")
        for _ in range(2)
    )


def test_one_changed_line_of_the_model_measures_everything_again(
    toy_project, tmp_path, monkeypatch
):
    """The same source, copied elsewhere, is the same code; one line changed in the copy's
    model/layers.py (a comment) is other code."""
    cache = str(tmp_path / "cache")
    installed = run_pytest(toy_project, f"--measure-cache={cache}")
    assert measurements(installed)["computed"] == N_MEASUREMENTS
    package = scratch_package(tmp_path / "scratch")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "scratch"))
    copied = run_pytest(toy_project, f"--measure-cache={cache}")
    assert measurements(copied)["from_cache"] == N_MEASUREMENTS, copied.output
    layers = package / "model" / "layers.py"
    lines = layers.read_text().splitlines(keepends=True)
    lines[-1] = lines[-1].rstrip("\n") + "  # one changed line\n"
    layers.write_text("".join(lines))
    edited = run_pytest(toy_project, f"--measure-cache={cache}")
    assert measurements(edited)["computed"] == N_MEASUREMENTS, edited.output
    assert edited.report() == installed.report()
