"""The broker without a cluster: measurement keys, measuring once, the executor's shape, and the
plan of what each collected test will ask memo for (`measurements_of`)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time

import pytest
from toy_claim_project import run_pytest, write_toy_project

from mechclaims.fixtures.broker import Broker, InProcessExecutor, Measurement, measurement_key
from mechclaims.interp.claims import selectivity
from mechclaims.interp.claims.catalog import CLAIMS
from mechclaims.interp.claims.feature_detectors import controlled, seed_protocol
from mechclaims.interp.sources import ModelSource, source_for
from mechclaims.model.config import TransformerConfig

TINY = TransformerConfig.preset("tiny-mha")
THRESHOLDS = {"n_sequences": 50, "fdr": 0.05}
KEY_IN_A_NEW_PROCESS = """
from mechclaims.fixtures.broker import measurement_key
from mechclaims.interp.claims.feature_detectors import controlled
from mechclaims.model.config import TransformerConfig

print(measurement_key(controlled, TransformerConfig.preset("tiny-mha"), 3,
                      {"fdr": 0.05, "n_sequences": 50}))
"""

PLANTED_KEY_IN_A_NEW_PROCESS = """
from mechclaims.fixtures.broker import measurement_key
from mechclaims.interp.claims.selectivity import controlled
from mechclaims.interp.sources import source_for
from mechclaims.model.config import TransformerConfig

print(measurement_key(controlled, source_for(TransformerConfig.preset("tiny-mha"),
                                             planted="selective-units"), 3,
                      {"fdr": 0.05, "n_sequences": 50}))
"""


def test_a_key_names_the_function_and_the_seed_and_is_the_same_in_every_process():
    key = measurement_key(controlled, TINY, 3, THRESHOLDS)
    assert re.fullmatch(r"controlled-seed3-[0-9a-f]{32}", key)
    for hash_seed in ("1", "2"):  # str and dict hashing differ between these processes
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        printed = subprocess.run([sys.executable, "-c", KEY_IN_A_NEW_PROCESS], env=env,
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert printed.strip() == key


def test_a_key_changes_with_each_argument():
    keys = {
        measurement_key(controlled, TINY, 3, THRESHOLDS),
        measurement_key(seed_protocol, TINY, 3, THRESHOLDS),
        measurement_key(controlled, TINY.replace(init_scale=0.5), 3, THRESHOLDS),
        measurement_key(controlled, TINY, 4, THRESHOLDS),
        measurement_key(controlled, TINY, 3, {**THRESHOLDS, "fdr": 0.1}),
    }
    assert len(keys) == 5


def test_measures_of_different_claims_that_share_a_name_have_different_keys():
    """`controlled` (and `seed_protocol`) exist in several claim modules: on the same source,
    seed and thresholds each claim's measurement is its own, or the broker would serve one
    claim's result to another."""
    measures = list({reading.measure: None for claim in CLAIMS.values()
                     for reading in claim.readings.values()})  # fmt: skip
    assert len({measure.__qualname__ for measure in measures}) < len(measures)  # names shared
    source = source_for(TINY)
    keys = {measurement_key(measure, source, 3, THRESHOLDS) for measure in measures}
    assert len(keys) == len(measures)


def test_a_key_changes_with_every_field_of_a_model_source():
    """A planted model and the init it is planted in, another panel, a fixed model seed, a
    checkpoint and its recorded init: each is another measurement."""
    source = source_for(TINY)
    sources = [
        source,
        source_for(TINY, planted="detectors"),
        source_for(TINY, planted="embedding"),
        ModelSource(TINY, source.panel[::-1]),
        source_for(TINY, model_seed=3),
        ModelSource(TINY, source.panel, checkpoint="model.npz"),
        ModelSource(TINY, source.panel, checkpoint="model.npz", init_seed=3),
        source_for(TINY.replace(init_scale=0.5)),
    ]
    keys = {measurement_key(controlled, where, 3, THRESHOLDS) for where in sources}
    assert len(keys) == len(sources)
    assert measurement_key(controlled, source_for(TINY, planted="detectors"), 3, THRESHOLDS) == (
        measurement_key(controlled, source_for(TINY, planted="detectors"), 3, dict(THRESHOLDS))
    )


def test_a_key_of_a_planted_source_is_the_same_in_another_process():
    key = measurement_key(selectivity.controlled, source_for(TINY, planted="selective-units"), 3,
                          THRESHOLDS)  # fmt: skip
    printed = subprocess.run([sys.executable, "-c", PLANTED_KEY_IN_A_NEW_PROCESS],
                             env={**os.environ, "PYTHONHASHSEED": "3"}, capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert printed.strip() == key


class CountingMeasure:
    """A measurement that counts its calls and can take its time."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[int] = []
        self.delay_s = delay_s
        self.__module__, self.__qualname__ = __name__, "counting"

    def __call__(self, source, seed, thresholds) -> dict:
        self.calls.append(seed)
        time.sleep(self.delay_s)
        if seed < 0:
            raise ValueError(f"no seed {seed}")
        return {"value": source * 10 + seed}


def test_each_measurement_is_submitted_once_and_measured_when_asked_for():
    measure = CountingMeasure()
    broker = Broker(InProcessExecutor())
    planned = [Measurement(measure, 1, seed, THRESHOLDS) for seed in (0, 1, 0, 1)]
    assert broker.submit(planned) == 2
    assert broker.submit(planned) == 0
    assert measure.calls == []  # in this process, a measurement runs when a test asks for it
    assert broker.memo(measure, 1, 1, THRESHOLDS) == {"value": 11}
    assert broker.memo(measure, 1, 1, THRESHOLDS) == {"value": 11}
    assert broker.memo(measure, 2, 5, THRESHOLDS) == {"value": 25}  # not planned: measured
    assert measure.calls == [1, 5]
    broker.close()
    assert broker.pending == {}


def test_a_measurement_that_raises_raises_in_each_test_that_asks_for_it():
    broker = Broker(InProcessExecutor())
    for _ in range(2):
        with pytest.raises(ValueError, match="no seed -1"):
            broker.memo(CountingMeasure(), 1, -1, THRESHOLDS)
    assert broker.results == {}


class RecordedProgress:
    def __init__(self) -> None:
        self.shown = 0
        self.cleared = 0

    def show(self, broker: Broker) -> None:
        self.shown += 1

    def clear(self) -> None:
        self.cleared += 1


def test_any_executor_of_the_concurrent_futures_shape_serves_and_progress_shows_while_waiting():
    measure = CountingMeasure(delay_s=1.2)
    progress = RecordedProgress()
    broker = Broker(concurrent.futures.ThreadPoolExecutor(max_workers=2), progress)
    broker.submit(Measurement(measure, 1, seed, THRESHOLDS) for seed in (0, 1))
    assert [broker.memo(measure, 1, seed, THRESHOLDS) for seed in (0, 1)] == [
        {"value": 10},
        {"value": 11},
    ]
    assert sorted(measure.calls) == [0, 1]
    assert progress.shown >= 1  # while the first measurement took its time
    assert progress.cleared == 2  # after each wait
    broker.close()


PLAN_HOOK = """
import json

from mechclaims.fixtures.plugin import measurements_of


def pytest_collection_finish(session):
    plan = {item.name: [[m.measure.__name__, m.source.cfg.d_model, m.source.cfg.init_scale, m.seed,
                         m.thresholds["n_sequences"]] for m in measurements_of(item)]
            for item in session.items}
    keys = {item.name: [m.key for m in measurements_of(item)] for item in session.items}
    with open("plan.json", "w") as handle:
        json.dump({"plan": plan, "keys": keys}, handle)
"""
OTHER_TESTS = """
import pytest

from toy_measures import CLAIM


@pytest.mark.claim(f"{CLAIM.id}/seed-protocol")
def test_a_reading_without_measures(memo, model_config, seed):
    pass


@pytest.mark.claim(f"{CLAIM.id}/controlled")
def test_without_memo(model_config, seed):
    pass


def test_without_a_claim(memo, model_config, seed):
    pass


@pytest.mark.claim(f"{CLAIM.id}/controlled")
@pytest.mark.parametrize("seed", [7])
def test_its_own_seed(memo, model_config, seed):
    pass
"""


def test_the_plan_of_a_test_is_its_readings_measure_on_its_preset_for_its_seeds(pytester):
    write_toy_project(pytester.path)
    pytester.makeconftest(PLAN_HOOK)
    pytester.makepyfile(test_other=OTHER_TESTS)
    args = ("--seeds", "1:3", "--model-preset", "tiny-mha", "--model-set", "init_scale=0.5")
    pytester.runpytest(*args, "--collect-only").assert_outcomes()
    planned = json.loads((pytester.path / "plan.json").read_text())

    def measurement(seed: int) -> list:
        return ["activation_scale", 16, 0.5, seed, 50]

    assert planned["plan"] == {
        "test_each_seed[tiny-mha-seed1]": [measurement(1)],
        "test_each_seed[tiny-mha-seed2]": [measurement(2)],
        "test_across_seeds[tiny-mha]": [measurement(1), measurement(2)],
        "test_a_reading_without_measures[tiny-mha-seed1]": [],
        "test_a_reading_without_measures[tiny-mha-seed2]": [],
        "test_without_memo[tiny-mha-seed1]": [],
        "test_without_memo[tiny-mha-seed2]": [],
        "test_without_a_claim[tiny-mha-seed1]": [],
        "test_without_a_claim[tiny-mha-seed2]": [],
        "test_its_own_seed[tiny-mha-7]": [measurement(7)],
    }
    keys = planned["keys"]
    assert keys["test_across_seeds[tiny-mha]"] == [
        *keys["test_each_seed[tiny-mha-seed1]"],
        *keys["test_each_seed[tiny-mha-seed2]"],
    ]


DRIFTED_TEST = """
import pytest

from toy_measures import CLAIM


def other_scale(source, seed, thresholds):
    return {"scale": 1.0}


@pytest.mark.claim(f"{CLAIM.id}/controlled")
def test_asks_for_what_its_declaration_does_not(memo, model_source, seed, thresholds):
    assert memo(other_scale, model_source, seed, thresholds)["scale"] == 1.0


@pytest.mark.claim(f"{CLAIM.id}/controlled")
def test_plans_what_it_asks_for_when_it_runs(memo, model_source, seed, thresholds):
    memo.plan([(other_scale, model_source, seed + 10, thresholds)])
    assert memo(other_scale, model_source, seed + 10, thresholds)["scale"] == 1.0
"""


def test_check_mode_fails_a_test_that_asks_for_what_its_plan_does_not_name(toy_project):
    """The toy claim declares `activation_scale`; a test of its reading that asks memo for
    another measurement is measured on demand, but in check mode fails, naming the test and the
    measurement, while the tests that keep to their plan pass, and so does one that names what
    it asks for when it runs (memo.plan)."""
    (toy_project / "test_drifted.py").write_text(DRIFTED_TEST)
    args = ("--model-preset", "tiny-mha", "--seeds", "0:2")
    unchecked = run_pytest(toy_project, *args)
    assert unchecked.returncode == 0, unchecked.output
    checked = run_pytest(toy_project, *args, "--check-plan")
    assert checked.returncode == 1, checked.output
    assert re.search(r"2 failed, 5 passed", checked.output), checked.output
    assert re.search(
        r"--check-plan: test_drifted\.py::test_asks_for_what_its_declaration_does_not\[tiny-mha-"
        r"seed0\] asked memo for test_drifted\.other_scale on ModelSource\(.*\), seed 0, which "
        r"its plan does not name",
        checked.output,
    ), checked.output
    kept = run_pytest(toy_project, *args, "--check-plan", "test_toy_claim.py")
    assert kept.returncode == 0, kept.output
