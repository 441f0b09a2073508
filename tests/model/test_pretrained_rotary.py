"""Transformer.from_pretrained on GPT-NeoX and Llama folders: committed golden outputs, the
layouts entry by entry, shards, half-precision weights, and every refusal as a one-line
ValueError naming file and key (or tensor).

The golden folders (fixtures/golden/gpt_neox/ and llama/, see the README there) were written once
by HF transformers (tests/model/make_rotary_golden.py), with the logits and hidden states HF
computed in float64; this file needs neither torch nor transformers. Bad folders are real
folders written to tmp_path from a golden one.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mechclaims.model.transformer import Transformer
from tests.model.reference import assert_close, reference_forward
from tests.model.test_pretrained import _assert_refused, _expected, _write_raw_safetensors

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
# Each golden folder and the config ours must read from it: (act_fn, parallel_attn_mlp,
# rotary_dims, rotary_base, n_kv_heads, attn_bias, mlp_bias, ln_eps, tied), and its weights'
# dtype in the files.
VARIANTS = {
    "gpt_neox/parallel-partial": (("gelu", True, 4, 500.0, 4, True, True, 1e-5, False), "F32"),
    "gpt_neox/sequential-full": (("gelu_new", False, 8, 1e4, 4, True, True, 1e-3, False), "F32"),
    "gpt_neox/pythia-hub-float16": (("gelu", True, 2, 1e4, 4, True, True, 1e-5, False), "F16"),
    "gpt_neox/tied-nobias-relu-bfloat16": (("relu", True, 4, 1e4, 4, False, True, 1e-5, True),
                                           "BF16"),
    "gpt_neox/sequential-silu-sharded": (("silu", False, 4, 1e4, 4, True, True, 1e-5, False),
                                         "F32"),
    "llama/gqa": (("silu", False, 6, 500.0, 2, False, False, 1e-5, False), "F32"),
    "llama/mha-tied-biases": (("silu", False, 6, 1e4, 4, True, True, 1e-6, True), "F32"),
    "llama/mqa-gelu-bfloat16": (("gelu", False, 6, 1e4, 1, False, False, 1e-6, False), "BF16"),
    "llama/float16-sharded": (("silu", False, 6, 1e4, 2, False, False, 1e-6, False), "F16"),
    "llama/hub": (("silu", False, 6, 50.0, 2, False, False, 1e-6, False), "F32"),
}  # fmt: skip
SIZES = {"gpt_neox": (40, 32, 2, 4, 20, 16), "llama": (40, 24, 2, 4, 20, 16)}


def _assert_matches_hf(model: Transformer, expected: dict, rtol: float) -> None:
    """Logits, and each block's resid_pre and the final norm's output against HF's hidden
    states."""
    logits, cache = model.run_with_cache(expected["tokens"])
    hidden = expected["hidden_states"]
    assert_close(logits, expected["logits"], rtol=rtol, err_msg="logits")
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.hook_resid_pre"
        assert_close(cache[name], hidden[layer], rtol=rtol, err_msg=name)
    assert_close(cache["ln_final.hook_normalized"], hidden[-1], rtol=rtol, err_msg="ln_final")


def _shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("model*.safetensors"))


def _raw(folder: Path) -> dict[str, np.ndarray]:
    """Every tensor of the folder's files (float16 as float16; no bfloat16 here)."""
    return {name: value for path in _shards(folder) for name, value in load_file(path).items()}


def _dtypes(folder: Path) -> set[str]:
    dtypes = set()
    for path in _shards(folder):
        data = path.read_bytes()
        header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
        dtypes |= {spec["dtype"] for name, spec in header.items() if name != "__metadata__"}
    return dtypes


# ---------------------------------------------------------------- golden files


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_golden_checkpoints_give_hfs_logits_and_hidden_states(variant):
    """Every option as HF read it; then HF's own outputs to 1e-10, which a wrong reading of an
    option or a wrong layout would miss."""
    folder = GOLDEN / variant
    family = variant.split("/")[0]
    model = Transformer.from_pretrained(folder, dtype="float64")
    cfg = model.cfg
    (act_fn, parallel, rotary_dims, base, kv_heads, attn_bias, mlp_bias, eps, tied), weights = (
        VARIANTS[variant]
    )
    assert weights in _dtypes(folder)
    assert (cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_mlp, cfg.n_ctx) == (
        SIZES[family]
    )
    assert (cfg.act_fn, cfg.parallel_attn_mlp, cfg.rotary_dims, cfg.rotary_base) == (
        act_fn, parallel, rotary_dims, base)  # fmt: skip
    assert (cfg.n_kv_heads, cfg.attn_bias, cfg.mlp_bias, cfg.ln_eps) == (
        kv_heads, attn_bias, mlp_bias, eps)  # fmt: skip
    assert np.array_equal(model.params["unembed.W_U"], model.params["embed.W_E"].T) == tied
    llama = family == "llama"
    assert (cfg.normalization, cfg.gated_mlp, cfg.pos_embed, cfg.unembed_bias) == (
        "rmsnorm" if llama else "layernorm", llama, "rotary", False)  # fmt: skip
    assert cfg.init == ("llama2c" if llama else "pythia")
    expected = _expected(folder)
    _assert_matches_hf(model, expected, rtol=1e-10)
    # The naive reference on the loaded weights agrees too: the mapping, not just our forward.
    reference_logits, _ = reference_forward(model.cfg, model.params, expected["tokens"])
    assert_close(reference_logits, expected["logits"], rtol=1e-10)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_golden_checkpoints_load_in_float32_by_default(variant):
    model = Transformer.from_pretrained(GOLDEN / variant)
    assert all(value.dtype == np.float32 for value in model.params.values())
    expected = _expected(GOLDEN / variant)
    logits = model(expected["tokens"])
    assert logits.dtype == np.float32
    scale = np.abs(expected["logits"]).max()
    np.testing.assert_allclose(logits, expected["logits"], rtol=1e-4, atol=1e-4 * scale)


def test_the_golden_variants_differ_where_they_should():
    """Not vacuous: the same weights with the residual stream serial instead of parallel, or
    rotating all of each head instead of half, miss HF's logits by far more than 1e-10."""
    folder = GOLDEN / "gpt_neox/parallel-partial"
    model = Transformer.from_pretrained(folder, dtype="float64")
    expected = _expected(folder)
    for change in ({"parallel_attn_mlp": False}, {"rotary_dim": None}, {"rotary_base": 1e4}):
        other = Transformer.from_params(model.cfg.replace(**change), model.params)
        assert np.abs(other(expected["tokens"]) - expected["logits"]).max() > 1e-3, change


# ---------------------------------------------------------------- layouts


def test_gpt_neox_fuses_q_k_v_per_head(tmp_path):
    """query_key_value's 3d rows are (head, Q|K|V, dh), checked entry by entry on the raw file;
    the (Q|K|V, head, dh) reading, the GPT-2 one, has the same shapes and gives other logits."""
    folder = GOLDEN / "gpt_neox/parallel-partial"
    raw = _raw(folder)
    model = Transformer.from_pretrained(folder, dtype="float64")
    d, H, dh = 32, 4, 8
    weight = raw["gpt_neox.layers.1.attention.query_key_value.weight"]  # [3d, d]
    bias = raw["gpt_neox.layers.1.attention.query_key_value.bias"]
    for which, name in enumerate("QKV"):
        for head in range(H):
            rows = slice((3 * head + which) * dh, (3 * head + which + 1) * dh)
            np.testing.assert_array_equal(model.params[f"blocks.1.attn.W_{name}"][head],
                                          weight[rows].T)  # fmt: skip
            np.testing.assert_array_equal(model.params[f"blocks.1.attn.b_{name}"][head],
                                          bias[rows])  # fmt: skip
    dense = raw["gpt_neox.layers.1.attention.dense.weight"]  # [d_out, (head, dh)]
    for head in range(H):
        np.testing.assert_array_equal(model.params["blocks.1.attn.W_O"][head],
                                      dense[:, head * dh : (head + 1) * dh].T)  # fmt: skip
    per_block = dict(model.params)
    for layer in range(2):
        prefix = f"gpt_neox.layers.{layer}.attention.query_key_value"
        W = raw[f"{prefix}.weight"].reshape(3, H, dh, d).transpose(0, 1, 3, 2)
        b = raw[f"{prefix}.bias"].reshape(3, H, dh)
        for which, name in enumerate("QKV"):
            per_block[f"blocks.{layer}.attn.W_{name}"] = W[which]
            per_block[f"blocks.{layer}.attn.b_{name}"] = b[which]
    wrong = Transformer.from_params(model.cfg, per_block)
    expected = _expected(folder)
    assert np.abs(wrong(expected["tokens"]) - expected["logits"]).max() > 1e-2


def test_llama_projections_are_laid_out_by_head():
    """q_proj's rows (head, dh), k_proj's and v_proj's (kv head, dh), o_proj's columns (head,
    dh), the MLP's gate/up/down as W_gate/W_in/W_out, Linear weights [out, in]."""
    folder = GOLDEN / "llama/gqa"
    raw = _raw(folder)
    params = Transformer.from_pretrained(folder, dtype="float64").params
    dh, attn = 6, "model.layers.1.self_attn"
    for name, proj, heads in (("Q", "q_proj", 4), ("K", "k_proj", 2), ("V", "v_proj", 2)):
        weight = raw[f"{attn}.{proj}.weight"]  # [(head, dh), d]
        for head in range(heads):
            rows = weight[head * dh : (head + 1) * dh]
            np.testing.assert_array_equal(params[f"blocks.1.attn.W_{name}"][head], rows.T)
    o_proj = raw[f"{attn}.o_proj.weight"]  # [d, (head, dh)]
    for head in range(4):
        columns = o_proj[:, head * dh : (head + 1) * dh]
        np.testing.assert_array_equal(params["blocks.1.attn.W_O"][head], columns.T)
    for ours, theirs in (("W_gate", "gate_proj"), ("W_in", "up_proj"), ("W_out", "down_proj")):
        np.testing.assert_array_equal(params[f"blocks.0.mlp.{ours}"],
                                      raw[f"model.layers.0.mlp.{theirs}.weight"].T)  # fmt: skip
    np.testing.assert_array_equal(params["unembed.W_U"], raw["lm_head.weight"].T)


def test_the_kv_heads_a_query_head_reads_matter():
    """Query head h reads kv head h // 2: the kv heads swapped miss HF's logits."""
    folder = GOLDEN / "llama/gqa"
    model = Transformer.from_pretrained(folder, dtype="float64")
    swapped = dict(model.params)
    for name in ("W_K", "W_V"):
        swapped[f"blocks.0.attn.{name}"] = model.params[f"blocks.0.attn.{name}"][::-1]
    expected = _expected(folder)
    wrong = Transformer.from_params(model.cfg, swapped)(expected["tokens"])
    assert np.abs(wrong - expected["logits"]).max() > 1e-2


# ---------------------------------------------------------------- weights' dtypes


def test_float16_weights_load_exactly():
    folder = GOLDEN / "llama/float16-sharded"
    raw = _raw(folder)
    assert raw["model.norm.weight"].dtype == np.float16
    params = Transformer.from_pretrained(folder, dtype="float64").params
    np.testing.assert_array_equal(params["ln_final.w"], raw["model.norm.weight"].astype(np.float64))


def test_bfloat16_weights_are_the_top_half_of_float32s():
    """A bfloat16 checkpoint's weights, read as float32, have their low 16 bits zero, and some
    weights are neither float16 numbers nor rounded to them (bfloat16 has 8 exponent bits)."""
    for variant in ("gpt_neox/tied-nobias-relu-bfloat16", "llama/mqa-gelu-bfloat16"):
        assert _dtypes(GOLDEN / variant) == {"BF16"}
        params = Transformer.from_pretrained(GOLDEN / variant).params
        for name, value in params.items():
            assert not np.any(value.view(np.uint32) & 0xFFFF), name
            assert np.any(value != 0), name


def test_bfloat16_bytes_read_by_hand(tmp_path):
    """Hand-made bfloat16 values: 1, -2, 0.5, the largest bfloat16 (3.39e38, beyond float16),
    the smallest normal one (1.18e-38) and pi rounded to bfloat16's 8 bits (3.140625)."""
    from mechclaims.model.pretrained import read_tensors

    bits = np.array([0x3F80, 0xC000, 0x3F00, 0x7F7F, 0x0080, 0x4049], dtype="<u2")
    header = {"x": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]}}
    _write_raw_safetensors(tmp_path / "x.safetensors", header, bits.tobytes())
    value = read_tensors(tmp_path / "x.safetensors")["x"]
    expected = [[1.0, -2.0, 0.5], [3.3895313892515355e38, 2.0**-126, 3.140625]]
    assert value.dtype == np.float32
    np.testing.assert_array_equal(value, np.array(expected, np.float32))


# ---------------------------------------------------------------- shards


def _merged(folder: Path, target: Path) -> Path:
    """The sharded folder rewritten as one model.safetensors."""
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("model*.safetensors*"))
    save_file(_raw(folder), target / "model.safetensors")
    return target


@pytest.mark.parametrize("variant", ["gpt_neox/sequential-silu-sharded", "llama/float16-sharded"])
def test_shards_load_as_one_file_does(tmp_path, variant):
    folder = GOLDEN / variant
    assert len(_shards(folder)) > 2
    sharded = Transformer.from_pretrained(folder, dtype="float64")
    single = Transformer.from_pretrained(_merged(folder, tmp_path / "one"), dtype="float64")
    for name, value in single.params.items():
        np.testing.assert_array_equal(sharded.params[name], value, err_msg=name)


@pytest.fixture
def sharded(tmp_path) -> Path:
    return Path(shutil.copytree(GOLDEN / "llama/float16-sharded", tmp_path / "llama"))


def _index(folder: Path) -> dict:
    return json.loads((folder / "model.safetensors.index.json").read_text())


def _write_index(folder: Path, index: dict) -> None:
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def test_a_missing_shard_is_named(sharded):
    (sharded / "model-00002-of-00003.safetensors").unlink()
    _assert_refused(sharded, "model-00002-of-00003.safetensors: no such file")


def test_a_tensor_the_index_puts_elsewhere_is_named(sharded):
    index = _index(sharded)
    index["weight_map"]["model.norm.weight"] = "model-00001-of-00003.safetensors"
    _write_index(sharded, index)
    found = index["weight_map"]["model.embed_tokens.weight"]
    assert found == "model-00001-of-00003.safetensors"
    _assert_refused(sharded, "tensor 'model.norm.weight' is in 'model-00001-of-00003")


def test_a_tensor_the_index_lacks_is_named(sharded):
    index = _index(sharded)
    del index["weight_map"]["model.norm.weight"]
    _write_index(sharded, index)
    _assert_refused(sharded, "tensor 'model.norm.weight' is not in the index")


def test_a_tensor_the_index_lists_but_no_shard_holds_is_named(sharded):
    index = _index(sharded)
    index["weight_map"]["model.layers.2.input_layernorm.weight"] = (
        "model-00003-of-00003.safetensors"
    )
    _write_index(sharded, index)
    _assert_refused(sharded, "model-00003-of-00003.safetensors: tensor "
                             "'model.layers.2.input_layernorm.weight' missing")  # fmt: skip


def test_a_tensor_in_two_shards_is_refused(sharded):
    """Read once: a second copy in another shard is not where the index puts it."""
    index = _index(sharded)["weight_map"]
    home, other = index["model.norm.weight"], index["model.embed_tokens.weight"]
    assert home != other
    tensors = load_file(sharded / other)
    tensors["model.norm.weight"] = load_file(sharded / home)["model.norm.weight"]
    save_file(tensors, sharded / other)
    _assert_refused(sharded, f"{other}: tensor 'model.norm.weight' is in {home!r} by the index")


@pytest.mark.parametrize(
    ("weight_map", "named"),
    [(None, "key 'weight_map' missing"), ({}, "key 'weight_map' missing"),
     ([], "key 'weight_map' missing"),
     ({"model.norm.weight": 7}, "weight_map names 7, not a file of this folder")],
)  # fmt: skip
def test_a_bad_weight_map_is_named(sharded, weight_map, named):
    index = _index(sharded)
    index["weight_map"] = weight_map
    _write_index(sharded, index)
    _assert_refused(sharded, f"model.safetensors.index.json: {named}")


def test_a_shard_outside_the_folder_is_refused(sharded):
    index = _index(sharded)
    index["weight_map"] = dict.fromkeys(index["weight_map"], "../model.safetensors")
    _write_index(sharded, index)
    _assert_refused(sharded, "weight_map names '../model.safetensors', not a file of this folder")


def test_one_file_and_an_index_together_are_refused(sharded, tmp_path):
    shutil.copy(GOLDEN / "llama/gqa/model.safetensors", sharded / "model.safetensors")
    _assert_refused(sharded, "both model.safetensors and model.safetensors.index.json")


def test_a_pickle_is_not_read(tmp_path):
    folder = Path(shutil.copytree(GOLDEN / "llama/gqa", tmp_path / "llama"))
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    _assert_refused(folder, "model.safetensors: no such file", "pickle")


# ---------------------------------------------------------------- bad tensors


@pytest.fixture
def neox(tmp_path) -> Path:
    return Path(shutil.copytree(GOLDEN / "gpt_neox/parallel-partial", tmp_path / "neox"))


@pytest.fixture
def llama(tmp_path) -> Path:
    return Path(shutil.copytree(GOLDEN / "llama/gqa", tmp_path / "llama"))


def _edit_tensors(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    for key in [key for key, value in changes.items() if value is None]:
        del config[key]
    path.write_text(json.dumps(config))


def test_the_pythia_buffers_are_ignored_but_only_those(tmp_path):
    folder = Path(shutil.copytree(GOLDEN / "gpt_neox/pythia-hub-float16", tmp_path / "pythia"))
    tensors = load_file(folder / "model.safetensors")
    for buffer in ("bias", "masked_bias", "rotary_emb.inv_freq"):
        assert f"gpt_neox.layers.1.attention.{buffer}" in tensors
    Transformer.from_pretrained(folder)  # loads
    _edit_tensors(folder, lambda t: t.update({"gpt_neox.layers.1.attention.other_bias":
                                              np.zeros(1, np.float32)}))  # fmt: skip
    _assert_refused(folder, "unexpected tensor 'gpt_neox.layers.1.attention.other_bias'",
                    "not part of a gpt_neox language model")  # fmt: skip


@pytest.mark.parametrize(
    ("family", "name", "shape", "expected"),
    [
        ("neox", "gpt_neox.layers.0.attention.query_key_value.weight", (32, 96), "(96, 32)"),
        ("neox", "gpt_neox.layers.1.mlp.dense_h_to_4h.weight", (32, 20), "(20, 32)"),
        ("llama", "model.layers.0.self_attn.k_proj.weight", (24, 24), "(12, 24)"),
        ("llama", "model.layers.1.mlp.down_proj.weight", (20, 24), "(24, 20)"),
    ],
)
def test_wrong_shapes_are_named(request, family, name, shape, expected):
    """A transposed Linear weight, or a grouped-query k_proj with a row per query head."""
    folder = request.getfixturevalue(family)
    _edit_tensors(folder, lambda t: t.update({name: np.zeros(shape, np.float32)}))
    _assert_refused(folder, f"tensor {name!r} has shape {shape}, expected {expected}")


@pytest.mark.parametrize(
    ("family", "name"),
    [("neox", "gpt_neox.layers.1.attention.dense.bias"), ("neox", "embed_out.weight"),
     ("llama", "model.layers.0.mlp.gate_proj.weight"), ("llama", "lm_head.weight")],
)  # fmt: skip
def test_a_missing_tensor_is_named(request, family, name):
    folder = request.getfixturevalue(family)
    _edit_tensors(folder, lambda tensors: tensors.pop(name))
    short = name.removeprefix("gpt_neox.").removeprefix("model.")
    _assert_refused(folder, f"tensor {short!r} missing")


@pytest.mark.parametrize(
    ("family", "name"),
    [("neox", "gpt_neox.layers.2.input_layernorm.weight"),
     ("llama", "model.layers.0.self_attn.q_proj.bias"),  # attention_bias is false
     ("llama", "model.layers.0.mlp.up_proj.bias")],  # mlp_bias is false
)  # fmt: skip
def test_leftover_tensors_are_named(request, family, name):
    folder = request.getfixturevalue(family)
    _edit_tensors(folder, lambda t: t.update({name: np.zeros(24, np.float32)}))
    _assert_refused(folder, f"unexpected tensor {name!r}")


def test_non_finite_weights_are_named(llama):
    def poison(tensors):
        tensors["model.layers.1.self_attn.v_proj.weight"][3, 2] = np.nan

    _edit_tensors(llama, poison)
    _assert_refused(llama, "tensor 'model.layers.1.self_attn.v_proj.weight' has non-finite")


def test_a_neox_head_is_read_under_either_name_but_not_both(neox):
    """save_pretrained and Pythia write embed_out.weight; transformers 5 names it lm_head."""
    model = Transformer.from_pretrained(neox, dtype="float64")
    _edit_tensors(neox, lambda t: t.update({"lm_head.weight": t.pop("embed_out.weight")}))
    renamed = Transformer.from_pretrained(neox, dtype="float64")
    np.testing.assert_array_equal(renamed.params["unembed.W_U"], model.params["unembed.W_U"])
    _edit_tensors(neox, lambda t: t.update({"embed_out.weight": t["lm_head.weight"]}))
    _assert_refused(neox, "tensors 'embed_out.weight' and 'lm_head.weight': two heads")


def test_a_tied_head_must_equal_the_embedding(neox):
    _edit_config(neox, tie_word_embeddings=True)
    _assert_refused(neox, "'embed_out.weight' differs from 'embed_in.weight'",
                    "tie_word_embeddings")  # fmt: skip
    _edit_tensors(neox, lambda t: t.update({"embed_out.weight": t["gpt_neox.embed_in.weight"]}))
    model = Transformer.from_pretrained(neox, dtype="float64")
    np.testing.assert_array_equal(model.params["unembed.W_U"], model.params["embed.W_E"].T)


def test_keys_without_the_base_prefix_load_the_same(llama):
    model = Transformer.from_pretrained(llama, dtype="float64")
    _edit_tensors(llama, lambda t: t.update({k.removeprefix("model."): t.pop(k) for k in list(t)}))
    same = Transformer.from_pretrained(llama, dtype="float64")
    for name, value in model.params.items():
        np.testing.assert_array_equal(same.params[name], value, err_msg=name)
    _edit_tensors(llama, lambda t: t.update({"model.norm.weight": t["norm.weight"]}))
    _assert_refused(llama, "tensors 'model.norm.weight' and 'norm.weight': the same")


# ---------------------------------------------------------------- config.json


@pytest.mark.parametrize(
    ("family", "changes", "named"),
    [
        ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling="),
        ("llama", {"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}},
         "rope_parameters.factor is not supported"),
        ("llama", {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}},
         "rope_parameters.rope_type 'yarn' (scaled rotary positions) is not supported"),
        ("neox", {"rope_parameters": {"type": "dynamic", "rope_theta": 1e4}},
         "rope_parameters.rope_type 'dynamic'"),
        ("llama", {"rope_parameters": "default"}, "rope_parameters must be an object"),
        ("llama", {"sliding_window": 4}, "sliding_window=4 (sliding-window attention)"),
        ("llama", {"use_sliding_window": True}, "use_sliding_window=True"),
        ("llama", {"layer_types": ["full_attention", "sliding_attention"]}, "layer_types="),
        ("neox", {"alibi": True}, "alibi=True (ALiBi positions)"),
        ("llama", {"num_local_experts": 8}, "num_local_experts=8 (a mixture of experts)"),
        ("llama", {"num_experts": 4}, "num_experts=4 (a mixture of experts)"),
        ("llama", {"use_qk_norm": True}, "use_qk_norm=True (normalized queries and keys)"),
        ("llama", {"attn_logit_softcapping": 50.0}, "attn_logit_softcapping=50.0"),
        ("llama", {"final_logit_softcapping": 30.0}, "final_logit_softcapping=30.0"),
        ("neox", {"rope_parameters": None, "rotary_pct": 0.375}, "rotates 3 dimensions"),
        ("neox", {"rope_parameters": None, "rotary_pct": 0.0}, "rotates 0 dimensions"),
        ("neox", {"rope_parameters": None, "rotary_pct": 1.5}, "rotary fraction"),
        ("neox", {"rope_parameters": None, "rotary_pct": "half"}, "rotary fraction"),
        ("neox", {"rotary_pct": 0.25}, "rotary_pct=0.25 disagrees with "
                                       "rope_parameters.partial_rotary_factor=0.5"),
        ("neox", {"rope_theta": 1e4}, "rope_theta=10000.0 disagrees with "
                                      "rope_parameters.rope_theta=500.0"),
        ("llama", {"rope_theta": 1e4}, "rope_theta=10000.0 disagrees"),
        ("llama", {"partial_rotary_factor": 0.5}, "partial_rotary_factor 0.5 is not supported"),
        ("llama", {"head_dim": 8}, "head_dim=8 is not supported; supported: hidden_size / "
                                   "num_attention_heads = 6"),
        ("neox", {"head_dim": 4}, "head_dim=4"),
        ("neox", {"hidden_act": "gelu_fast"}, "hidden_act 'gelu_fast' is not supported"),
        ("llama", {"hidden_act": "relu2"}, "hidden_act 'relu2' is not supported"),
        ("llama", {"num_key_value_heads": 3}, "n_key_value_heads=3 must divide n_heads=4"),
        ("llama", {"intermediate_size": None}, "key 'intermediate_size' missing"),
        ("neox", {"max_position_embeddings": None}, "key 'max_position_embeddings' missing"),
        ("neox", {"tie_word_embeddings": "no"}, "tie_word_embeddings must be true or false"),
        ("llama", {"hidden_size": 25}, "n_heads=4 must divide d_model=25"),
    ],
)  # fmt: skip
def test_config_options_the_model_does_not_implement_are_refused(request, family, changes,
                                                                 named):  # fmt: skip
    folder = request.getfixturevalue(family)
    _edit_config(folder, **changes)
    _assert_refused(folder, "config.json", named)


@pytest.mark.parametrize(
    ("family", "changes"),
    [
        ("llama", {"pretraining_tp": 2}),  # only sliced the matmuls (transformers 4); unused in 5
        ("llama", {"rope_scaling": None, "rope_theta": 500.0, "head_dim": 6,
                   "num_key_value_heads": 2, "attention_dropout": 0.5}),
        ("llama", {"rope_parameters": {"type": "default", "rope_theta": 500.0}}),
        ("neox", {"rope_parameters": None, "rotary_pct": 0.5, "rotary_emb_base": 500.0}),
        ("neox", {"rope_parameters": {"rope_theta": 500.0}, "rotary_pct": 0.5}),
        ("neox", {"hidden_dropout": 0.5, "attention_dropout": 0.5, "sliding_window": None,
                  "num_experts": 0, "use_qk_norm": False, "classifier_dropout": 0.5}),
    ],
    ids=["pretraining_tp", "llama-old-keys", "old-rope-type", "pythia-keys", "mixed-keys",
         "inert"],
)  # fmt: skip
def test_options_that_keep_the_function_leave_the_model_as_it_is(request, family, changes):
    folder = request.getfixturevalue(family)
    model = Transformer.from_pretrained(folder, dtype="float64")
    _edit_config(folder, **changes)
    same = Transformer.from_pretrained(folder, dtype="float64")
    assert same.cfg == model.cfg
    golden = "gpt_neox/parallel-partial" if family == "neox" else "llama/gqa"
    _assert_matches_hf(same, _expected(GOLDEN / golden), rtol=1e-10)


def test_absent_options_take_hfs_defaults(neox, llama):
    """GPT-NeoX: a quarter of each head rotated, base 10000, parallel, biased, untied, exact
    GELU; Llama: silu, eps 1e-6, no biases, as many kv heads as heads, untied."""
    _edit_config(neox, rope_parameters=None, use_parallel_residual=None, attention_bias=None,
                 tie_word_embeddings=None, hidden_act=None, layer_norm_eps=None)  # fmt: skip
    cfg = Transformer.from_pretrained(neox).cfg
    assert (cfg.rotary_dims, cfg.rotary_base, cfg.parallel_attn_mlp, cfg.attn_bias) == (
        2, 1e4, True, True)  # fmt: skip
    assert (cfg.act_fn, cfg.ln_eps) == ("gelu", 1e-5)
    _edit_config(llama, rope_parameters=None, rms_norm_eps=None, attention_bias=None,
                 mlp_bias=None, num_key_value_heads=None, hidden_act=None)  # fmt: skip
    with pytest.raises(ValueError, match=r"k_proj\.weight' has shape"):  # weights have 2 kv heads
        Transformer.from_pretrained(llama)
    _edit_config(llama, num_key_value_heads=2)
    cfg = Transformer.from_pretrained(llama).cfg
    assert (cfg.act_fn, cfg.ln_eps, cfg.rotary_base, cfg.attn_bias, cfg.mlp_bias) == (
        "silu", 1e-6, 1e4, False, False)  # fmt: skip
