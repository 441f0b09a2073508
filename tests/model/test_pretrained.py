"""Transformer.from_pretrained: HF GPT-2 checkpoints against committed golden outputs, our own
.npz, and every kind of bad file as a one-line ValueError naming file and tensor (or key).

The golden folders (fixtures/golden/gpt2/, see the README there) were written once by HF
transformers, with the logits and hidden states HF computed in float64; this file needs neither
torch nor transformers. Bad files are real files written to tmp_path from a golden folder.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import CONFIG_KEY, Transformer
from tests.model.reference import assert_close, reference_forward

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden" / "gpt2"
VARIANTS = (
    "gelu_new-save_pretrained",
    "gelu_new-hub",
    "gelu-save_pretrained",
    "gelu-hub",
    "defaults-hub",
    "relu-untied-save_pretrained",
    "gelu_pytorch_tanh-untied-hub",
)
# HF's activation_function -> our act_fn (gelu_pytorch_tanh is the tanh form in PyTorch's code)
ACT_FN_OF = {
    "gelu": "gelu",
    "gelu_new": "gelu_new",
    "gelu_pytorch_tanh": "gelu_new",
    "relu": "relu",
}


def _expected(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "expected.npz") as data:
        return {name: data[name] for name in data.files}


def _assert_matches_hf(model: Transformer, expected: dict, rtol: float) -> None:
    """Logits, and each block's resid_pre and the final LN's output against HF's hidden states."""
    logits, cache = model.run_with_cache(expected["tokens"])
    hidden = expected["hidden_states"]
    assert_close(logits, expected["logits"], rtol=rtol, err_msg="logits")
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.hook_resid_pre"
        assert_close(cache[name], hidden[layer], rtol=rtol, err_msg=name)
    assert_close(cache["ln_final.hook_normalized"], hidden[-1], rtol=rtol, err_msg="ln_final")


# ---------------------------------------------------------------- golden files


def _hf_options(folder: Path) -> dict:
    """The config HF built the golden model with: hf_config.json (what HF made of a config.json
    that states the sizes only, every absent option at its default) where there is one, else
    config.json, which states every option."""
    resolved = folder / "hf_config.json"
    return json.loads((resolved if resolved.exists() else folder / "config.json").read_text())


@pytest.mark.parametrize("variant", VARIANTS)
def test_golden_checkpoints_give_hfs_logits_and_hidden_states(variant):
    """Every option as HF has it, absent keys included (defaults-hub states the sizes only):
    the activation, LayerNorm epsilon, MLP width, context and tied unembedding; then HF's own
    outputs, which any other reading of an option would miss."""
    folder = GOLDEN / variant
    model = Transformer.from_pretrained(folder, dtype="float64")
    hf = _hf_options(folder)
    assert model.cfg.act_fn == ACT_FN_OF[hf["activation_function"]]
    assert (model.cfg.d_model, model.cfg.n_layers, model.cfg.n_heads) == (12, 2, 3)
    assert (model.cfg.ln_eps, model.cfg.n_ctx) == (hf["layer_norm_epsilon"], hf["n_positions"])
    assert model.cfg.d_mlp == (4 * hf["n_embd"] if hf["n_inner"] is None else hf["n_inner"])
    tied = np.array_equal(model.params["unembed.W_U"], model.params["embed.W_E"].T)
    assert tied == hf["tie_word_embeddings"] == ("untied" not in variant)
    assert (model.cfg.norm, model.cfg.unembed_bias, model.cfg.init) == (
        "pre",
        False,
        "gpt2-residual-scaled",
    )
    expected = _expected(folder)
    _assert_matches_hf(model, expected, rtol=1e-10)
    # The naive reference on the loaded weights agrees too: the mapping, not just our forward.
    reference_logits, _ = reference_forward(model.cfg, model.params, expected["tokens"])
    assert_close(reference_logits, expected["logits"], rtol=1e-10)


def test_the_sizes_only_config_leaves_every_option_to_hfs_defaults():
    """defaults-hub's config.json states the model type and sizes only; HF read every option
    from GPT2Config's defaults (hf_config.json), not from anything stated."""
    config = json.loads((GOLDEN / "defaults-hub" / "config.json").read_text())
    assert set(config) == {"model_type", "vocab_size", "n_positions", "n_embd", "n_layer",
                           "n_head"}  # fmt: skip
    hf = _hf_options(GOLDEN / "defaults-hub")
    assert (hf["activation_function"], hf["layer_norm_epsilon"], hf["n_inner"]) == (
        "gelu_new", 1e-5, None)  # fmt: skip
    assert (hf["tie_word_embeddings"], hf["scale_attn_weights"]) == (True, True)


def test_golden_variants_differ_where_they_should():
    """Not vacuous: the other GELU on the same weights misses HF's logits by far more than 1e-10."""
    folder = GOLDEN / "gelu-save_pretrained"
    model = Transformer.from_pretrained(folder, dtype="float64")
    other = Transformer.from_params(model.cfg.replace(act_fn="gelu_new"), model.params)
    expected = _expected(folder)
    assert np.abs(other(expected["tokens"]) - expected["logits"]).max() > 1e-4


@pytest.mark.parametrize("variant", VARIANTS)
def test_golden_checkpoints_load_in_float32_by_default(variant):
    model = Transformer.from_pretrained(GOLDEN / variant)
    assert model.cfg.dtype == "float32"
    assert all(value.dtype == np.float32 for value in model.params.values())
    expected = _expected(GOLDEN / variant)
    logits = model(expected["tokens"])
    assert logits.dtype == np.float32
    scale = np.abs(expected["logits"]).max()
    np.testing.assert_allclose(logits, expected["logits"], rtol=1e-4, atol=1e-4 * scale)


def test_the_two_key_layouts_map_to_the_same_names(tmp_path):
    """A save_pretrained folder rewritten in the hub's layout loads to identical parameters."""
    folder = GOLDEN / "gelu_new-save_pretrained"
    tensors = load_file(folder / "model.safetensors")
    hub = _copy(folder, tmp_path / "hub")
    save_file({key.removeprefix("transformer."): value for key, value in tensors.items()},
              hub / "model.safetensors")  # fmt: skip
    first = Transformer.from_pretrained(folder, dtype="float64")
    second = Transformer.from_pretrained(hub, dtype="float64")
    for name, value in first.params.items():
        np.testing.assert_array_equal(second.params[name], value, err_msg=name)


def test_parameters_are_laid_out_as_transformer_lens_does(tmp_path):
    """Independent of HF's arithmetic: c_attn's columns are (Q|K|V) x (head, d_head), c_proj's
    rows (head, d_head), Conv1D weights [in, out]; checked entry by entry on the raw file."""
    folder = GOLDEN / "gelu-hub"
    raw = load_file(folder / "model.safetensors")
    params = Transformer.from_pretrained(folder, dtype="float64").params
    d, H, dh = 12, 3, 4
    c_attn, c_proj = raw["h.1.attn.c_attn.weight"], raw["h.1.attn.c_proj.weight"]
    for which, name in enumerate("QKV"):
        for head in range(H):
            for row in range(d):
                for col in range(dh):
                    assert (
                        params[f"blocks.1.attn.W_{name}"][head, row, col]
                        == c_attn[row, which * d + head * dh + col]
                    )
            np.testing.assert_array_equal(
                params[f"blocks.1.attn.b_{name}"][head],
                raw["h.1.attn.c_attn.bias"][which * d + head * dh : which * d + (head + 1) * dh],
            )
    for head in range(H):
        np.testing.assert_array_equal(params["blocks.1.attn.W_O"][head],
                                      c_proj[head * dh : (head + 1) * dh])  # fmt: skip
    np.testing.assert_array_equal(params["blocks.0.mlp.W_in"], raw["h.0.mlp.c_fc.weight"])
    np.testing.assert_array_equal(params["unembed.W_U"], raw["wte.weight"].T)  # tied


# ---------------------------------------------------------------- our own .npz


def test_our_npz_loads_through_from_pretrained(tmp_path):
    model = Transformer(TransformerConfig.preset("gpt2-style"), seed=2)
    model.save(tmp_path / "model.npz")
    loaded = Transformer.from_pretrained(tmp_path / "model.npz")
    assert loaded.cfg == model.cfg
    tokens = np.array([[1, 2, 3, 4]])
    np.testing.assert_array_equal(loaded(tokens), model(tokens))
    as32 = Transformer.from_pretrained(str(tmp_path / "model.npz"), dtype="float32")
    assert as32.cfg == model.cfg.replace(dtype="float32")
    np.testing.assert_allclose(as32(tokens), model(tokens), rtol=1e-4, atol=1e-5)


def test_npz_of_format_1_read_gelu_as_the_tanh_form(tmp_path):
    """Before the GELU names followed TransformerLens, files said "gelu" for GPT-2's tanh GELU."""
    model = Transformer(TransformerConfig.preset("gpt2-style"), seed=2)
    old = dict(model.cfg.to_dict(), act_fn="gelu")
    np.savez(tmp_path / "old.npz", **{CONFIG_KEY: np.array(json.dumps(old))}, **model.params)
    assert Transformer.load(tmp_path / "old.npz").cfg.act_fn == "gelu_new"
    exact = Transformer.from_params(model.cfg.replace(act_fn="gelu"), model.params)
    exact.save(tmp_path / "new.npz")  # format 2 keeps "gelu", the exact GELU
    assert Transformer.load(tmp_path / "new.npz").cfg.act_fn == "gelu"


@pytest.mark.parametrize("cut", [10, 200, -100])
def test_a_truncated_npz_is_a_value_error_naming_it(tmp_path, cut):
    Transformer(TransformerConfig.preset("tiny-mha")).save(tmp_path / "model.npz")
    data = (tmp_path / "model.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:cut])
    with pytest.raises(ValueError, match=r"cut\.npz: truncated or not an \.npz file"):
        Transformer.from_pretrained(tmp_path / "cut.npz")


def test_nan_in_an_npz_is_a_value_error_naming_file_and_parameter(tmp_path):
    model = Transformer(TransformerConfig.preset("tiny-mha"))
    model.params["blocks.1.mlp.W_in"][0, 0] = np.nan
    model.save(tmp_path / "nan.npz")
    with pytest.raises(ValueError, match=r"nan\.npz: parameter 'blocks\.1\.mlp\.W_in' has non-fin"):
        Transformer.from_pretrained(tmp_path / "nan.npz")


def test_a_path_that_is_no_checkpoint_is_a_value_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"0" * 16)
    for path in (tmp_path / "weights.bin", tmp_path / "missing.npz"):
        with pytest.raises(ValueError, match="not a checkpoint"):
            Transformer.from_pretrained(path)


# ---------------------------------------------------------------- bad HF folders


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    for key in [key for key, value in changes.items() if value is None]:
        del config[key]
    path.write_text(json.dumps(config))


def _edit_tensors(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


def _write_raw_safetensors(path: Path, header: dict, data: bytes) -> None:
    """The format by hand (8-byte little-endian header length, JSON header, data): for dtypes
    NumPy cannot write."""
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def _assert_refused(folder: Path, *patterns: str) -> None:
    """A one-line ValueError matching every pattern, raised before any model is built."""
    with (
        mock.patch.object(Transformer, "from_params", wraps=Transformer.from_params) as built,
        pytest.raises(ValueError, match=re.escape(str(folder))) as excinfo,  # names its file
    ):
        Transformer.from_pretrained(folder)
    message = str(excinfo.value)
    assert "\n" not in message, message
    for pattern in patterns:
        assert pattern in message, f"{pattern!r} not in {message!r}"
    assert built.call_count == 0, "a model was built from a bad checkpoint"


@pytest.fixture
def hf_folder(tmp_path) -> Path:
    return _copy(GOLDEN / "gelu_new-save_pretrained", tmp_path / "gpt2")


@pytest.fixture
def hub_folder(tmp_path) -> Path:
    return _copy(GOLDEN / "gelu-hub", tmp_path / "gpt2-hub")


@pytest.mark.parametrize(
    ("keep", "names"),
    [
        (20, ("model.safetensors", "truncated or not a safetensors file")),  # inside the header
        (-1, ("model.safetensors", "tensor 'transformer.wte.weight' runs past the end")),
    ],
)
def test_a_truncated_safetensors_file_names_the_file_and_tensor(hf_folder, keep, names):
    """Cut in the header, the file is named; by one byte, the last tensor (by offset) too."""
    path = hf_folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    _assert_refused(hf_folder, *names)


def test_the_truncation_names_the_first_tensor_cut_off(hf_folder):
    path = hf_folder / "model.safetensors"
    header_length = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8 : 8 + header_length])
    spans = sorted((spec["data_offsets"], name) for name, spec in header.items()
                   if name != "__metadata__")  # fmt: skip
    (begin, _), name = spans[len(spans) // 2]
    path.write_bytes(path.read_bytes()[: 8 + header_length + begin + 1])
    _assert_refused(hf_folder, str(path), f"tensor {name!r} runs past the end of the file")


@pytest.mark.parametrize("name", ["transformer.h.1.mlp.c_fc.bias", "transformer.wpe.weight"])
def test_a_missing_tensor_is_named(hf_folder, name):
    _edit_tensors(hf_folder, lambda tensors: tensors.pop(name))
    _assert_refused(hf_folder, "model.safetensors", f"tensor {name.split('.', 1)[1]!r} missing")


def test_a_missing_tensor_is_named_in_the_hub_layout(hub_folder):
    _edit_tensors(hub_folder, lambda tensors: tensors.pop("h.0.attn.c_attn.weight"))
    _assert_refused(hub_folder, "model.safetensors", "tensor 'h.0.attn.c_attn.weight' missing")


def test_a_wrong_shape_is_named(hf_folder):
    def transpose(tensors):
        tensors["transformer.h.0.attn.c_proj.weight"] = np.zeros((12, 13), np.float32)

    _edit_tensors(hf_folder, transpose)
    _assert_refused(hf_folder, "tensor 'transformer.h.0.attn.c_proj.weight' has shape (12, 13), "
                               "expected (12, 12)")  # fmt: skip


def test_hf_conv1d_weights_stored_as_out_by_in_are_refused(hf_folder):
    """A c_fc weight [out, in] (a Linear's layout) instead of Conv1D's [in, out]."""

    def transpose(tensors):
        key = "transformer.h.1.mlp.c_fc.weight"
        tensors[key] = np.ascontiguousarray(tensors[key].T)

    _edit_tensors(hf_folder, transpose)
    _assert_refused(hf_folder, "'transformer.h.1.mlp.c_fc.weight' has shape (48, 12)")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_named(hf_folder, bad):
    def poison(tensors):
        tensors["transformer.h.1.ln_2.bias"][3] = bad

    _edit_tensors(hf_folder, poison)
    _assert_refused(hf_folder, "tensor 'transformer.h.1.ln_2.bias' has non-finite values")


def test_integer_weights_are_named(hf_folder):
    def to_int(tensors):
        tensors["transformer.ln_f.weight"] = tensors["transformer.ln_f.weight"].astype(np.int32)

    _edit_tensors(hf_folder, to_int)
    _assert_refused(hf_folder, "tensor 'transformer.ln_f.weight' has dtype int32")


def test_a_dtype_numpy_cannot_read_is_named(hf_folder):
    header = {"transformer.wte.weight": {"dtype": "F8_E5M2", "shape": [2], "data_offsets": [0, 2]}}
    _write_raw_safetensors(hf_folder / "model.safetensors", header, b"\x3c\x40")
    _assert_refused(hf_folder, "model.safetensors", "'transformer.wte.weight' cannot be read")


@pytest.mark.parametrize("name", ["score.weight", "transformer.h.2.ln_1.weight"])
def test_unexpected_tensors_are_named(hf_folder, name):
    """A sequence-classification head, or a block the config does not have."""

    def add(tensors):
        tensors[name] = np.zeros(12, np.float32)

    _edit_tensors(hf_folder, add)
    _assert_refused(hf_folder, f"unexpected tensor {name!r}")


def test_mask_buffers_are_ignored_but_only_those(hub_folder):
    tensors = load_file(hub_folder / "model.safetensors")
    assert "h.1.attn.bias" in tensors
    assert "h.1.attn.masked_bias" in tensors
    Transformer.from_pretrained(hub_folder)  # loads
    _edit_tensors(hub_folder, lambda t: t.update({"h.1.attn.other_bias": np.zeros(1, np.float32)}))
    _assert_refused(hub_folder, "unexpected tensor 'h.1.attn.other_bias'")


def test_an_untied_head_is_read_and_a_tied_one_must_equal_the_embedding(hf_folder):
    tensors = load_file(hf_folder / "model.safetensors")
    head = np.random.default_rng(0).standard_normal((32, 12)).astype(np.float32)
    _edit_tensors(hf_folder, lambda t: t.update({"lm_head.weight": head}))
    _assert_refused(hf_folder, "'lm_head.weight' differs from 'wte.weight'", "tie_word_embeddings")
    _edit_config(hf_folder, tie_word_embeddings=False)
    model = Transformer.from_pretrained(hf_folder, dtype="float64")
    np.testing.assert_array_equal(model.params["unembed.W_U"], head.T)
    np.testing.assert_array_equal(model.params["embed.W_E"], tensors["transformer.wte.weight"])
    _edit_tensors(hf_folder, lambda t: t.pop("lm_head.weight"))
    _assert_refused(hf_folder, "tensor 'lm_head.weight' missing")


def test_a_tied_head_stored_equal_to_the_embedding_loads(hf_folder):
    _edit_tensors(hf_folder, lambda t: t.update({"lm_head.weight": t["transformer.wte.weight"]}))
    model = Transformer.from_pretrained(hf_folder, dtype="float64")
    np.testing.assert_array_equal(model.params["unembed.W_U"], model.params["embed.W_E"].T)


def test_missing_files_are_named(hf_folder):
    (hf_folder / "model.safetensors").unlink()
    _assert_refused(hf_folder, "model.safetensors: no such file")
    (hf_folder / "config.json").unlink()
    _assert_refused(hf_folder, "config.json: no such file")


# Real config.json files of other architectures (abridged from their hub repositories).
GPTJ = {"architectures": ["GPTJForCausalLM"], "model_type": "gptj", "n_embd": 4096,
        "n_head": 16, "n_layer": 28, "n_positions": 2048, "rotary_dim": 64, "vocab_size": 50400,
        "activation_function": "gelu_new"}  # fmt: skip
MISTRAL = {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 4096,
           "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
           "num_key_value_heads": 8, "hidden_act": "silu", "rms_norm_eps": 1e-5,
           "sliding_window": 4096, "vocab_size": 32000}  # fmt: skip


@pytest.mark.parametrize(("config", "named"), [(GPTJ, "'gptj'"), (MISTRAL, "'mistral'")])
def test_other_architectures_are_refused(hf_folder, config, named):
    """The refusal lists the three families we read."""
    (hf_folder / "config.json").write_text(json.dumps(config))
    _assert_refused(hf_folder, "config.json", f"model_type {named}", "not supported",
                    "supported: gpt2", "gpt_neox", "llama")  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"scale_attn_weights": False}, "scale_attn_weights=False"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
        ({"add_cross_attention": True}, "add_cross_attention=True"),
        ({"activation_function": "quick_gelu"}, "activation_function 'quick_gelu' is not supp"),
        ({"activation_function": "gelu_fast"}, "activation_function 'gelu_fast'"),
        ({"n_embd": None}, "key 'n_embd' missing"),
        ({"n_head": 5}, "n_heads=5 must divide d_model=12"),
        ({"layer_norm_epsilon": -1.0}, "ln_eps must be finite and > 0.0"),
        ({"n_inner": 0}, "d_mlp must be a positive integer"),
    ],
)
def test_config_options_the_model_does_not_implement_are_refused(hf_folder, changes, named):
    _edit_config(hf_folder, **changes)
    _assert_refused(hf_folder, "config.json", named)


def test_a_config_that_is_not_json_is_named(hf_folder):
    (hf_folder / "config.json").write_text('{"model_type": "gpt2",')
    _assert_refused(hf_folder, "config.json: not readable JSON")
    (hf_folder / "config.json").write_text("[1, 2]")
    _assert_refused(hf_folder, "config.json: expected a JSON object")


@pytest.mark.parametrize(
    "changes",
    [
        {"n_ctx": 1024},  # the hub's early configs state both; HF reads n_positions
        {"resid_pdrop": 0.5, "embd_pdrop": 0.5, "attn_pdrop": 0.5},  # training only
        {"initializer_range": 0.5, "use_cache": False, "bos_token_id": 7},
    ],
    ids=["n_ctx", "dropout", "training-and-generation"],
)
def test_options_that_do_not_change_the_function_leave_the_model_as_it_is(hf_folder, changes):
    model = Transformer.from_pretrained(hf_folder, dtype="float64")
    _edit_config(hf_folder, **changes)
    same = Transformer.from_pretrained(hf_folder, dtype="float64")
    assert same.cfg == model.cfg
    _assert_matches_hf(same, _expected(GOLDEN / "gelu_new-save_pretrained"), rtol=1e-10)


def test_n_ctx_does_not_stand_in_for_n_positions(hf_folder):
    """HF takes the context from n_positions alone (1024 if absent, which these weights do not
    fit); n_ctx is no substitute, so a config.json without n_positions is refused."""
    _edit_config(hf_folder, n_ctx=12, n_positions=None)
    _assert_refused(hf_folder, "config.json", "key 'n_positions' missing")


def test_options_that_keep_the_function_are_honoured(hf_folder):
    """reorder_and_upcast_attn changes fp16 arithmetic only; n_inner None means 4 d_model;
    missing options take HF's defaults (the hub's gpt2 config.json lists few of them)."""
    model = Transformer.from_pretrained(hf_folder, dtype="float64")
    _edit_config(hf_folder, reorder_and_upcast_attn=True, n_inner=None, scale_attn_weights=None,
                 activation_function=None, layer_norm_epsilon=None)  # fmt: skip
    same = Transformer.from_pretrained(hf_folder, dtype="float64")
    assert same.cfg == model.cfg
    expected = _expected(GOLDEN / "gelu_new-save_pretrained")
    _assert_matches_hf(same, expected, rtol=1e-10)
