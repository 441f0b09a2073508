"""The plan of our own claims: what the broker submits at the end of collection is exactly what
their tests then ask memo for (a planned measurement no test asks for would be computed on the
cluster for nothing; one asked for and not planned would wait for its turn)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mechclaims import Transformer, TransformerConfig

ROOT = Path(__file__).resolve().parents[2]
PLAN_CHECK = """
import json

import pytest

from mechclaims.fixtures.plugin import BROKER_PLUGIN


def broker(config):
    return config.pluginmanager.get_plugin(BROKER_PLUGIN).broker


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    session.config.planned = sorted(broker(session.config).pending)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    asked = sorted(broker(session.config).results)
    with open("keys.json", "w") as handle:
        json.dump({"planned": session.config.planned, "asked": asked}, handle)
"""


def planned_and_asked(tmp_path: Path, *args: str, returncode: int = 0) -> dict[str, list[str]]:
    """{"planned": keys submitted at the end of collection, "asked": keys memo was asked for}
    of `pytest claims/ *args`, which must end with `returncode`."""
    (tmp_path / "plan_check.py").write_text(PLAN_CHECK)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OPENBLAS_NUM_THREADS": "1"}
    options = ["-p", "plan_check", "-p", "no:cacheprovider", "-q",
               "--evidence-dir", str(tmp_path / "report")]  # fmt: skip
    run = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "claims"), *options, *args],
                         cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == returncode, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads((tmp_path / "keys.json").read_text())


def test_the_claims_ask_for_exactly_the_measurements_planned_for_them(tmp_path):
    keys = planned_and_asked(tmp_path, "--model-preset", "tiny-mha", "--seeds", "0:2")
    assert keys["planned"] == keys["asked"]
    functions = {key.split("-seed")[0] for key in keys["planned"]}
    assert functions == {"seed_protocol", "controlled", "measure"}
    assert len(keys["planned"]) == 2 * (2 * 5 + 1)  # 2 seeds: 5 claims x 2 readings, claim 6


def test_a_checkpoint_run_asks_for_exactly_the_measurements_planned_for_it(tmp_path):
    checkpoint = tmp_path / "random.npz"
    Transformer(TransformerConfig.preset("tiny-mha"), seed=7).save(checkpoint)
    keys = planned_and_asked(tmp_path, "--model-checkpoint", str(checkpoint), "--seeds", "0:3")
    assert keys["planned"] == keys["asked"]
    # The checkpoint and 3 baselines, on 5 claims x 2 readings and claim 6's controlled one.
    assert len(keys["planned"]) == 4 * (2 * 5 + 1)


def small_sweep_registry(path: Path) -> Path:
    """Our registry with the sweep cut to three factors: norm (pre, post), n_heads (1, 4) and
    d_model (16, 18); 4 heads do not divide 18 (architectures that cannot be built)."""
    text = (ROOT / "claims" / "registry.toml").read_text()
    start = text.index("[claims.sweep.factors]")
    end = text.index("\n[", start + 1)
    factors = ('[claims.sweep.factors]\nnorm = { levels = ["pre", "post"], why = "two" }\n'
               'n_heads = { levels = [1, 4], why = "two" }\n'
               'd_model = { levels = [16, 18], why = "18 has no 4 heads" }\n')  # fmt: skip
    path.write_text(text[:start] + factors + text[end:])
    return path


def test_a_sweep_on_a_cluster_is_planned_whole_and_a_cell_that_cannot_be_built_is_not(tmp_path):
    registry = small_sweep_registry(tmp_path / "registry.toml")
    args = ("--claims-registry", str(registry), "-m", "sweep", "--seeds", "0:3")
    keys = planned_and_asked(tmp_path, *args, returncode=1)  # the unbuildable cells' tests fail
    assert keys["planned"] == keys["asked"]
    assert len(keys["planned"]) == 6 * 3  # 6 of the 8 architectures can be built, 3 seeds
