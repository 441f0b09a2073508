"""The measurement cache behind the broker: what an entry's identity holds (each part has a test
that fails without it), how the broker reads and stores through it (in this process, ahead of
the tests on an executor, shared with another process), what it does with what it cannot read
or store, and where it lives (the options, pytest's cache directory, run.json)."""

from __future__ import annotations

import concurrent.futures
import json
import pickle
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from toy_claim_project import N_MEASUREMENTS, calls, package_dirs, write_toy_project

from mechclaims import Transformer, TransformerConfig
from mechclaims.evidence import code
from mechclaims.fixtures import measure_cache
from mechclaims.fixtures.broker import Broker, InProcessExecutor, Measurement
from mechclaims.fixtures.measure_cache import (
    HARNESS,
    MeasurementCache,
    MeasurementCacheWarning,
    software_versions,
)
from mechclaims.interp.claims import feature_detectors, selectivity
from mechclaims.interp.sources import checkpoint_source, source_for

TINY = TransformerConfig.preset("tiny-mha")
THRESHOLDS = {"n_sequences": 50, "fdr": 0.05}


def scaled(source, seed: int, thresholds: dict) -> dict:
    """A measurement of plain values, counted in CALLS."""
    CALLS.append(seed)
    if seed < 0:
        raise ValueError(f"no seed {seed}")
    return {"scale": seed * thresholds["fdr"], "per_unit": np.arange(3.0) * seed, "n": seed}


def unstorable(source, seed: int, thresholds: dict) -> dict:
    CALLS.append(seed)
    return {"case": object()}


CALLS: list[int] = []


@pytest.fixture(autouse=True)
def no_calls_yet():
    CALLS.clear()


def entry_of(cache: MeasurementCache, *args) -> Path:
    return cache.entry(Measurement(*args))[0]


# ------------------------------------------------------------------- what an identity holds


def test_an_entry_is_named_by_everything_its_result_depends_on(tmp_path):
    cache, source = MeasurementCache(tmp_path), source_for(TINY)
    entries = {
        entry_of(cache, selectivity.controlled, source, 3, THRESHOLDS),
        entry_of(cache, feature_detectors.controlled, source, 3, THRESHOLDS),  # same name
        entry_of(
            cache, selectivity.controlled, source_for(TINY.replace(init_scale=0.5)), 3, THRESHOLDS
        ),
        entry_of(cache, selectivity.controlled, source, 4, THRESHOLDS),
        entry_of(cache, selectivity.controlled, source, 3, {**THRESHOLDS, "fdr": 1.0}),
        entry_of(cache, selectivity.controlled, source, 3, {**THRESHOLDS, "fdr": 1}),  # int
    }
    assert len(entries) == 6
    again = entry_of(cache, selectivity.controlled, source_for(TINY), 3, dict(THRESHOLDS))
    assert again in entries


def identity_after(change, monkeypatch, tmp_path) -> bool:
    """Whether the entry of one measurement is another in a run after `change(monkeypatch)`."""
    before = entry_of(MeasurementCache(tmp_path), selectivity.controlled, source_for(TINY), 3,
                      THRESHOLDS)  # fmt: skip
    change(monkeypatch)
    for cached in (code.files_digest, code.module_digest, code.module_facts, software_versions):
        cached.cache_clear()
    try:
        after = MeasurementCache(tmp_path)
        return entry_of(after, selectivity.controlled, source_for(TINY), 3, THRESHOLDS) != before
    finally:
        monkeypatch.undo()
        for cached in (code.files_digest, code.module_digest, code.module_facts, software_versions):
            cached.cache_clear()


def a_version(name: str):
    return lambda monkeypatch: monkeypatch.setattr(
        measure_cache.metadata, "version", lambda asked: "0.0" if asked == name else "1.0"
    )


def edited(module, name: str, value):
    return lambda monkeypatch: monkeypatch.setattr(module, name, value)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(edited(code, "source_digest", lambda path: "edited"), id="mechclaims"),
        pytest.param(
            edited(measure_cache, "files_digest", lambda packages: "edited"),
            id="the harness's digest",
        ),
        pytest.param(
            edited(measure_cache, "function_identity", lambda function: {}),
            id="the measure's module",
        ),
        pytest.param(a_version("numpy"), id="numpy"),
        pytest.param(a_version("scipy"), id="scipy"),
        pytest.param(edited(sys, "version_info", SimpleNamespace(major=3, minor=99)), id="python"),
    ],
)
def test_an_entry_is_another_when_code_or_software_changes(change, monkeypatch, tmp_path):
    assert identity_after(change, monkeypatch, tmp_path)


def test_the_harness_is_every_python_file_of_the_packages_pyproject_installs():
    """Named by module and read byte for byte alike, installed editable or into site-packages."""
    folders = package_dirs()
    assert all(package.startswith(HARNESS) for package in folders)
    expected = {
        ".".join((package, *path.relative_to(folder).with_suffix("").parts)): path.read_bytes()
        for package, folder in folders.items()
        for path in folder.rglob("*.py")
    }
    found = {module: path.read_bytes() for module, path in code.package_files(HARNESS).items()}
    assert found == expected
    assert "mechclaims.model.layers" in found


def test_a_checkpoint_s_entry_changes_with_its_bytes(tmp_path):
    path = tmp_path / "model.npz"
    Transformer(TINY, seed=1).save(path)
    cache, source = MeasurementCache(tmp_path / "cache"), checkpoint_source(str(path))
    before = entry_of(cache, selectivity.controlled, source, 3, THRESHOLDS)
    assert entry_of(cache, selectivity.controlled, source, 3, THRESHOLDS) == before
    time.sleep(0.01)  # another modification time, as a rewrite at once may not give one
    Transformer(TINY, seed=2).save(path)
    after = MeasurementCache(tmp_path / "cache")  # the next run
    assert entry_of(after, selectivity.controlled, source, 3, THRESHOLDS) != before


# ------------------------------------------------------------ through the broker


def measured(store: MeasurementCache, seed: int = 3, executor=None) -> tuple[dict, Broker]:
    broker = Broker(executor or InProcessExecutor(), store=store)
    return broker.memo(scaled, 2, seed, THRESHOLDS), broker


def test_a_stored_measurement_is_read_by_the_next_run_and_not_measured(tmp_path):
    cache = MeasurementCache(tmp_path)
    first, broker = measured(cache)
    assert broker.counts == {"computed": 1}
    again, broker = measured(cache)
    assert broker.counts == {"from_cache": 1}
    assert CALLS == [3]
    assert again.keys() == first.keys()
    np.testing.assert_array_equal(again["per_unit"], first["per_unit"])
    assert type(again["n"]) is int


def test_a_measurement_that_raises_is_not_stored(tmp_path):
    cache = MeasurementCache(tmp_path)
    with pytest.raises(ValueError, match="no seed -1"):
        measured(cache, seed=-1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated", "planted pickle", "planted object array"])
def test_an_entry_that_cannot_be_read_is_said_measured_again_and_replaced(tmp_path, damage):
    cache = MeasurementCache(tmp_path)
    measured(cache)
    (path,) = tmp_path.iterdir()
    marker = tmp_path.parent / "marker"
    planted = np.array([PlantedPayload(marker)], dtype=object)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "planted pickle":
        path.write_bytes(pickle.dumps(planted[0]))
    else:
        with np.load(path) as entry:
            kept = dict(entry)
        np.savez(path, **{**kept, "0": planted})
    with pytest.warns(MeasurementCacheWarning, match=rf"unreadable entry {path}: .*measured again"):
        result, broker = measured(cache)
    assert broker.counts == {"computed": 1}
    assert CALLS == [3, 3]
    assert not marker.exists()
    assert measured(cache)[0]["scale"] == result["scale"]  # replaced by a readable entry
    assert CALLS == [3, 3]


class PlantedPayload:
    """What unpickling it runs: it touches the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_result_that_is_not_plain_values_is_said_once_and_measured_in_every_run(tmp_path):
    cache = MeasurementCache(tmp_path)
    broker = Broker(InProcessExecutor(), store=cache)
    with pytest.warns(MeasurementCacheWarning) as said:
        [broker.memo(unstorable, 2, seed, THRESHOLDS) for seed in (1, 2)]
    assert [str(warning.message) for warning in said] == [
        f"measurement cache: {__name__}.unstorable: value['case'] is a builtins.object; only "
        "dicts, lists, tuples, str, int, float, bool, None and numpy arrays and scalars can be "
        "stored: it is measured in every run"
    ]
    assert list(tmp_path.iterdir()) == []


def test_an_executor_that_computes_ahead_has_each_result_stored_when_done(tmp_path):
    """A run on a cluster cut short keeps every measurement that finished, asked for or not."""
    cache = MeasurementCache(tmp_path)
    broker = Broker(concurrent.futures.ThreadPoolExecutor(max_workers=2), store=cache)
    broker.submit(Measurement(scaled, 2, seed, THRESHOLDS) for seed in (1, 2))
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("*.npz"))) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    broker.close()  # no test asked for them
    assert sorted(CALLS) == [1, 2]
    again = Broker(concurrent.futures.ThreadPoolExecutor(max_workers=2), store=cache)
    again.submit(Measurement(scaled, 2, seed, THRESHOLDS) for seed in (1, 2))
    assert again.memo(scaled, 2, 2, THRESHOLDS)["n"] == 2
    assert again.counts == {"from_cache": 1}
    assert sorted(CALLS) == [1, 2]
    again.close()


def test_what_another_process_stored_since_the_plan_is_read_not_measured(tmp_path):
    """Under pytest-xdist each worker plans every measurement; the one that asks second reads
    what the other stored."""
    cache = MeasurementCache(tmp_path)
    planned = Broker(InProcessExecutor(), store=cache)
    planned.submit([Measurement(scaled, 2, 3, THRESHOLDS)])
    measured(cache)  # the other worker
    assert planned.memo(scaled, 2, 3, THRESHOLDS)["n"] == 3
    assert planned.counts == {"from_cache": 1}
    assert CALLS == [3]


# ------------------------------------------------------------ where it lives


def run_toy(pytester, *args: str) -> tuple[int, dict]:
    """A run of the toy claim project in pytester's directory: (the measurement's calls so far,
    run.json's account of the measurements)."""
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=10)
    run = json.loads((pytester.path / "report" / "run.json").read_text())
    return len(calls(pytester.path)), run["measurements"]


@pytest.fixture
def toy(pytester, monkeypatch):
    monkeypatch.setenv("TOY_CALLS", str(pytester.path / "calls"))
    write_toy_project(pytester.path)
    return pytester


def test_by_default_the_cache_is_in_pytest_s_cache_directory(toy):
    default = toy.path / ".pytest_cache" / "d" / "mechclaims-measurements"
    assert run_toy(toy) == (N_MEASUREMENTS, {"cache": str(default), "from_cache": 0,
                                             "computed": N_MEASUREMENTS})  # fmt: skip
    assert len(list(default.glob("*.npz"))) == N_MEASUREMENTS
    warm = {"cache": str(default), "from_cache": N_MEASUREMENTS, "computed": 0}
    assert run_toy(toy) == (N_MEASUREMENTS, warm)
    assert run_toy(toy, "--cache-clear")[0] == 2 * N_MEASUREMENTS
    assert run_toy(toy, "-p", "no:cacheprovider") == (
        3 * N_MEASUREMENTS,
        {"cache": None, "from_cache": 0, "computed": N_MEASUREMENTS},
    )


def test_a_directory_of_one_s_own_or_none(toy):
    toy.chdir()
    assert run_toy(toy, "--measure-cache", "shared")[0] == N_MEASUREMENTS
    assert run_toy(toy, "-p", "no:cacheprovider", "--measure-cache", "shared")[1] == {
        "cache": str(toy.path / "shared"), "from_cache": N_MEASUREMENTS, "computed": 0
    }  # fmt: skip
    assert run_toy(toy, "--measure-cache", "none") == (
        2 * N_MEASUREMENTS,
        {"cache": None, "from_cache": 0, "computed": N_MEASUREMENTS},
    )
    assert not (toy.path / ".pytest_cache" / "d" / "mechclaims-measurements").exists()
    pyproject = toy.path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'measure_cache = "shared"\n')
    assert run_toy(toy)[0] == 2 * N_MEASUREMENTS


def test_a_cache_directory_that_cannot_be_written_is_a_usage_error(toy):
    (toy.path / "taken").write_text("a file")
    result = toy.runpytest("--measure-cache", "taken")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line.strip()] == [
        f"ERROR: --measure-cache: {toy.path / 'taken'} is an existing file, not a directory"
    ]
