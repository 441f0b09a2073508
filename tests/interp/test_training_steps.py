"""A checkpoint's training step, from its name or what it records, and the order of a run."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from mechclaims.interp.training_steps import name_step, training_run, training_step
from mechclaims.model.config import TransformerConfig
from mechclaims.model.tasks import get_task
from mechclaims.model.train import TrainSettings, train
from mechclaims.model.transformer import STEP_KEY, Transformer

CFG = TransformerConfig.preset("tiny-mha")


def saved(path, step=None, cfg=CFG) -> str:
    Transformer(cfg, seed=0).save(path, step=step)
    return str(path)


def hf_folder(path, **files) -> str:
    """A folder with the JSON files given ({file stem: content}), as a step reads it."""
    path.mkdir()
    for stem, content in files.items():
        (path / f"{stem}.json").write_text(json.dumps(content))
    return str(path)


@pytest.mark.parametrize(
    ("name", "step"),
    [("step1000", 1000), ("step_1000", 1000), ("step-1000", 1000), ("step0", 0),
     ("run.step001000.npz", 1000), ("pythia-70m-step1000", 1000), ("checkpoint-1000", 1000),
     ("model.npz", None), ("steps1000", None), ("mystep1000", None), ("step1000x", None),
     ("checkpoint_1000", None), ("step.npz", None)],
)  # fmt: skip
def test_a_name_gives_the_step_of_the_documented_patterns_only(name, step):
    assert name_step(f"/runs/step5/{name}") == step  # the parents' names do not count


def test_a_name_with_two_steps_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"run.step10.step20.npz: its name gives more than one"):
        name_step("run.step10.step20.npz")


def test_a_saved_step_round_trips_and_files_without_one_load_as_before(tmp_path):
    with_step, without = saved(tmp_path / "a.npz", step=7), saved(tmp_path / "b.npz")
    assert training_step(with_step) == 7
    assert training_step(without) is None
    with np.load(with_step) as data:
        assert int(data[STEP_KEY]) == 7
    for path in (with_step, without):
        loaded = Transformer.load(path)
        assert loaded.params.keys() == Transformer(CFG, seed=0).params.keys()
        assert loaded.seed == 0


def test_an_hf_folder_records_its_step_in_config_or_trainer_state(tmp_path):
    assert training_step(hf_folder(tmp_path / "a", config={"step": 3})) == 3
    assert training_step(hf_folder(tmp_path / "b", trainer_state={"global_step": 4})) == 4
    assert training_step(hf_folder(tmp_path / "checkpoint-5", trainer_state={"global_step": 5},
                                   config={"step": 5})) == 5  # fmt: skip
    assert training_step(hf_folder(tmp_path / "c", config={"n_layer": 2})) is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: saved(tmp / "run.step000010.npz", step=20),
         r"run.step000010.npz: its steps disagree: its name 10, __step__ 20"),
        (lambda tmp: hf_folder(tmp / "step1", config={"step": 1},
                               trainer_state={"global_step": 2}),
         r"step1: its steps disagree: its name 1, config.json step 1, trainer_state.json "
         r"global_step 2"),
        (lambda tmp: hf_folder(tmp / "a", config={"step": "10"}),
         r"a: config.json step must be a non-negative integer, got '10'"),
        (lambda tmp: hf_folder(tmp / "b", config={"step": -1}),
         r"b: config.json step must be a non-negative integer, got -1"),
    ],
)  # fmt: skip
def test_steps_that_disagree_or_are_not_steps_are_errors_naming_the_checkpoint(
    tmp_path, make, message
):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message):
        training_step(path)


def test_a_run_is_ordered_by_step_not_as_given(tmp_path):
    steps = [0, 5, 40, 100, 1000]
    paths = [saved(tmp_path / f"step{step}.npz") for step in steps]
    shuffled = random.Random(0).sample(paths, len(paths))
    assert shuffled != paths
    assert training_run(dict.fromkeys(shuffled, CFG)) == dict(zip(paths, steps, strict=True))


def test_a_run_orders_by_number_whether_the_step_is_named_or_recorded(tmp_path):
    nine, ten = saved(tmp_path / "step9.npz"), hf_folder(tmp_path / "late", config={"step": 10})
    hundred = saved(tmp_path / "a.npz", step=100)
    assert list(training_run(dict.fromkeys([hundred, ten, nine], CFG))) == [nine, ten, hundred]


def test_one_checkpoint_or_several_without_steps_are_no_run(tmp_path):
    assert training_run({saved(tmp_path / "step10.npz"): CFG}) == {}
    unrelated = {saved(tmp_path / "a.npz"): CFG, saved(tmp_path / "b.npz"): CFG.replace(d_model=32)}
    assert training_run(unrelated) == {}


def test_the_trainer_records_each_snapshots_step_as_its_name_gives_it(tmp_path):
    task = get_task("patterns")
    model = Transformer(CFG, seed=3)
    settings = TrainSettings(steps=5, batch_size=4, warmup=1, eval_size=8, snapshot_every=2)
    result = train(model, task, settings,
                   snapshot_path=lambda step: tmp_path / f"run.step{step:06d}.npz")  # fmt: skip
    assert [training_step(str(path)) for path in result.snapshots] == [0, 2, 4, 5]
    assert [Transformer.load(path).seed for path in result.snapshots] == [3] * 4


def test_a_snapshot_is_an_npz_or_an_hf_folder():
    with pytest.raises(ValueError, match=r"snapshot_format must be one of npz, hf, got 'pt'"):
        TrainSettings(snapshot_format="pt")
