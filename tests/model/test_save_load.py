"""model.save(path) and Transformer.load(path) round-trip config, parameters and logits exactly."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given

from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer
from tests.model.strategies import models_and_tokens

PRESET_NAMES = ("seed-minigpt", "tiny-mha", "gpt2-style")


def assert_same_model(loaded: Transformer, model: Transformer, tokens: np.ndarray) -> None:
    assert loaded.cfg == model.cfg
    assert set(loaded.params) == set(model.params)
    for name, value in model.params.items():
        assert loaded.params[name].dtype == value.dtype, name
        np.testing.assert_array_equal(loaded.params[name], value, err_msg=name)
    logits = loaded(tokens)
    assert logits.dtype == model(tokens).dtype
    np.testing.assert_array_equal(logits, model(tokens))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_round_trip(tmp_path, name, dtype):
    cfg = TransformerConfig.preset(name).replace(dtype=dtype)
    model = Transformer(cfg, seed=3)
    path = tmp_path / f"{name}.npz"
    model.save(path)
    assert not path.with_name(path.name + ".tmp").exists()  # written atomically, no leftover
    tokens = np.arange(2 * min(cfg.n_ctx, 8)).reshape(2, -1) % cfg.vocab_size
    assert_same_model(Transformer.load(path), model, tokens)
    assert_same_model(Transformer.load(str(path)), model, tokens)


@given(models_and_tokens())
def test_any_model_round_trips(model_and_tokens):
    model, tokens = model_and_tokens
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.npz"
        model.save(path)
        loaded = Transformer.load(path)
        model.save(path)  # overwriting an existing file works too
        again = Transformer.load(path)
    assert_same_model(loaded, model, tokens)
    assert_same_model(again, model, tokens)


def test_loading_a_file_without_a_config_is_a_value_error(tmp_path):
    model = Transformer(TransformerConfig.preset("tiny-mha"))
    path = tmp_path / "params-only.npz"
    np.savez(path, **model.params)
    with pytest.raises(ValueError, match="config"):
        Transformer.load(path)


def test_loading_checks_the_parameters_against_the_config(tmp_path):
    model = Transformer(TransformerConfig.preset("tiny-mha"))
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path) as data:
        contents = {name: data[name] for name in data.files}
    del contents["unembed.b_U"]
    broken = tmp_path / "broken.npz"
    np.savez(broken, **contents)
    with pytest.raises(ValueError, match=r"unembed\.b_U"):
        Transformer.load(broken)


def test_the_seed_a_model_was_drawn_with_survives_training_and_saving(tmp_path):
    """A model built from (cfg, seed) records its seed; training changes the weights, not it;
    a model built from parameters has none. Claim 6 rebuilds a checkpoint's initialization."""
    cfg = TransformerConfig.preset("tiny-mha")
    model = Transformer(cfg, seed=11)
    model.params["embed.W_E"] += 1.0  # as training would
    model.save(tmp_path / "drawn.npz")
    assert Transformer.load(tmp_path / "drawn.npz").seed == 11
    Transformer.from_params(cfg, model.params).save(tmp_path / "built.npz")
    assert Transformer.load(tmp_path / "built.npz").seed is None
