"""Transformer.save_pretrained: the way back to an HF folder of the model's family, read back by
ours to identical parameters; the golden folders' tensors rewritten exactly as HF wrote them;
tied iff the unembedding is exactly the embedding's transpose; a config no HF family expresses
refused naming the field; written whole or not at all.

Needs neither torch nor transformers: tests/model/test_pretrained_rotary_live.py has HF read the
folders.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from safetensors.numpy import load_file

from mechclaims.model import hf_families, pretrained
from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer
from tests.model.test_pretrained_rotary import GOLDEN, VARIANTS, _shards

SIZES = {"vocab_size": 40, "d_model": 24, "n_layers": 2, "n_heads": 4, "d_mlp": 20, "n_ctx": 16}
GPT2 = TransformerConfig(**SIZES, unembed_bias=False, init="gpt2-residual-scaled",
                         dtype="float32")  # fmt: skip
NEOX = TransformerConfig(**{**SIZES, "d_model": 32}, pos_embed="rotary", rotary_dim=4,
                         rotary_base=500.0, parallel_attn_mlp=True, unembed_bias=False,
                         act_fn="gelu", init="pythia", dtype="float32")  # fmt: skip
LLAMA = TransformerConfig(**SIZES, normalization="rmsnorm", pos_embed="rotary", gated_mlp=True,
                          act_fn="silu", n_key_value_heads=2, attn_bias=False, mlp_bias=False,
                          unembed_bias=False, init="llama2c", dtype="float32")  # fmt: skip
BUFFER = re.compile(r"\.(attention\.bias|attention\.masked_bias|rotary_emb\.inv_freq)$")
# Configs each family writes, named by what they exercise.
CONFIGS = {
    "gpt2": GPT2,
    "gpt2-relu-eps": GPT2.replace(act_fn="relu", ln_eps=1e-3, d_mlp=36),
    "gpt_neox-parallel-partial": NEOX,
    "gpt_neox-serial-full-nobias": NEOX.replace(parallel_attn_mlp=False, rotary_dim=None,
                                                attn_bias=False, act_fn="gelu_new"),
    "llama-gqa-tied": LLAMA,
    "llama-mha-biases-untied": LLAMA.replace(n_key_value_heads=None, attn_bias=True,
                                             mlp_bias=True, init="gpt2", rotary_base=50.0),
    "llama-mqa-full-rotary-dim": LLAMA.replace(n_key_value_heads=1, rotary_dim=6, init="gpt2"),
}  # fmt: skip


def _save(model: Transformer, folder: Path, **options) -> Path:
    model.save_pretrained(folder, **options)
    return folder


def _assert_same_params(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


def _canonical(cfg: TransformerConfig) -> TransformerConfig:
    """A config as a loader states it: rotary_dim None when it is d_head, n_key_value_heads
    None when it is n_heads."""
    full = cfg.pos_embed == "rotary" and cfg.rotary_dims == cfg.d_head
    return cfg.replace(rotary_dim=None if full else cfg.rotary_dim,
                       n_key_value_heads=None if cfg.n_kv_heads == cfg.n_heads
                       else cfg.n_key_value_heads)  # fmt: skip


@pytest.mark.parametrize("name", list(CONFIGS))
def test_ours_to_a_folder_and_back_is_the_same_model(tmp_path, name):
    cfg = CONFIGS[name]
    model = Transformer(cfg, seed=3)
    folder = _save(model, tmp_path / name)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == name.split("-")[0]
    back = Transformer.from_pretrained(folder)
    assert back.cfg == _canonical(cfg).replace(init=back.cfg.init)
    _assert_same_params(back.params, model.params)
    tokens = np.arange(24).reshape(2, 12) % 40
    np.testing.assert_array_equal(back(tokens), model(tokens))


def test_float64_weights_keep_a_float64_model_exact(tmp_path):
    model = Transformer(LLAMA.replace(dtype="float64"), seed=4)
    folder = _save(model, tmp_path / "llama", dtype="float64")
    assert {value.dtype for value in load_file(folder / "model.safetensors").values()} == {
        np.dtype(np.float64)
    }
    _assert_same_params(Transformer.from_pretrained(folder, dtype="float64").params, model.params)
    rounded = Transformer.from_pretrained(_save(model, tmp_path / "float32"), dtype="float64")
    assert not np.array_equal(rounded.params["embed.W_E"], model.params["embed.W_E"])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_golden_folders_are_written_back_as_hf_wrote_them(tmp_path, variant):
    """Every tensor under HF's name with HF's values (half precision upcast exactly), no other:
    the hub's buffers left out, its head under save_pretrained's name (embed_out for GPT-NeoX)."""
    model = Transformer.from_pretrained(GOLDEN / variant)
    folder = _save(model, tmp_path / "back")
    written = load_file(folder / "model.safetensors")
    original = {}
    for path in _shards(GOLDEN / variant):
        original.update(pretrained.read_tensors(path))
    original = {name: value for name, value in original.items() if not BUFFER.search(name)}
    assert set(written) == set(original)
    for name, value in original.items():
        assert written[name].dtype == np.float32
        np.testing.assert_array_equal(written[name], value.astype(np.float32), err_msg=name)
    assert Transformer.from_pretrained(folder).cfg == model.cfg


def test_tied_iff_the_unembedding_is_exactly_the_embeddings_transpose(tmp_path):
    model = Transformer(LLAMA, seed=5)  # llama2c ties
    folder = _save(model, tmp_path / "tied")
    assert json.loads((folder / "config.json").read_text())["tie_word_embeddings"] is True
    assert "lm_head.weight" not in load_file(folder / "model.safetensors")
    params = dict(model.params)
    params["unembed.W_U"] = params["unembed.W_U"].copy()
    params["unembed.W_U"][3, 7] = np.nextafter(params["unembed.W_U"][3, 7], np.float32(1))
    untied = Transformer.from_params(LLAMA, params)
    folder = _save(untied, tmp_path / "untied")
    assert json.loads((folder / "config.json").read_text())["tie_word_embeddings"] is False
    head = load_file(folder / "model.safetensors")["lm_head.weight"]
    np.testing.assert_array_equal(head, params["unembed.W_U"].T)


@pytest.mark.parametrize(
    ("cfg", "named"),
    [
        (GPT2.replace(norm="post"), "norm='post': HF's gpt2 has norm='pre'"),
        (TransformerConfig.preset("seed-minigpt"), "attention='parameter-free'"),
        (GPT2.replace(pos_embed="sinusoidal"), "pos_embed='sinusoidal'"),
        (GPT2.replace(normalization="rmsnorm"), "normalization='rmsnorm' with pos_embed="),
        (GPT2.replace(ln_affine=False), "ln_affine=False"),
        (GPT2.replace(final_ln=False), "final_ln=False"),
        (GPT2.replace(unembed_bias=True), "unembed_bias=True"),
        (GPT2.replace(causal=False), "causal=False"),
        (GPT2.replace(n_key_value_heads=2), "n_key_value_heads=2: HF's gpt2 has"),
        (GPT2.replace(parallel_attn_mlp=True), "parallel_attn_mlp=True"),
        (GPT2.replace(attn_bias=False), "attn_bias=False"),
        (NEOX.replace(gated_mlp=True), "gated_mlp=True: HF's gpt_neox has gated_mlp=False"),
        (NEOX.replace(mlp_bias=False), "mlp_bias=False"),
        (NEOX.replace(n_key_value_heads=2), "n_key_value_heads=2"),
        (LLAMA.replace(rotary_dim=4), "rotary_dim=4 (HF's llama rotates every dimension"),
        (LLAMA.replace(parallel_attn_mlp=True), "parallel_attn_mlp=True"),
        (LLAMA.replace(gated_mlp=False), "gated_mlp=False"),
    ],
)  # fmt: skip
def test_configs_no_hf_family_expresses_are_refused(tmp_path, cfg, named):
    folder = tmp_path / "model"
    with pytest.raises(ValueError, match=re.escape(str(folder))) as excinfo:
        _save(Transformer(cfg, seed=0), folder)
    message = str(excinfo.value)
    assert "\n" not in message
    assert named in message, message
    assert "cannot save as an HF model" in message
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_holds_files_is_not_overwritten(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not an empty folder"):
        _save(Transformer(GPT2), folder)
    assert [path.name for path in folder.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    _save(Transformer(GPT2), empty)
    assert sorted(path.name for path in empty.iterdir()) == ["config.json", "model.safetensors"]


def test_a_failed_write_leaves_nothing(tmp_path):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    with mock.patch.object(pretrained, "save_file", fail), pytest.raises(OSError, match="full"):
        _save(Transformer(NEOX), tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_dtype_is_refused(tmp_path):
    with pytest.raises(ValueError, match="dtype must be one of float32, float64; got 'float16'"):
        _save(Transformer(GPT2), tmp_path / "model", dtype="float16")


def test_a_rotary_width_is_written_as_a_fraction_hf_rounds_back_to_it(tmp_path):
    """HF rotates int(d_head * fraction) dimensions: 2 of 98 is written as the float just above
    2 / 98, which (2 / 98) * 98 = 1.9999999999999998 would round down to 1."""
    cfg = NEOX.replace(d_model=98, n_heads=1, rotary_dim=2)
    assert int(98 * (2 / 98)) == 1
    folder = _save(Transformer(cfg, seed=0), tmp_path / "neox")
    assert Transformer.from_pretrained(folder).cfg.rotary_dim == 2


@pytest.mark.parametrize(
    ("preset", "family"),
    [("gpt2-small", "gpt2"), ("pythia-70m", "gpt_neox"), ("llama2c-stories15m", "llama"),
     ("seed-minigpt", None), ("tiny-mha", None), ("gpt2-style", None)],
)  # fmt: skip
def test_presets_are_written_as_their_family_and_read_back(preset, family):
    """The config.json each preset gets reads back as the preset (without building the big ones);
    the seed's models and gpt2-style (an unembedding bias) have no HF family."""
    cfg = TransformerConfig.preset(preset)
    if family is None:
        with pytest.raises(ValueError, match="HF's gpt2 has"):
            hf_families.family_of(cfg)
        return
    found = hf_families.family_of(cfg)
    assert found.model_type == family
    config = hf_families.config_json(found, cfg, tie=False, dtype="float32")
    back = hf_families.read_config(found, config, Path("config.json"), cfg.dtype)
    assert back == _canonical(cfg)
