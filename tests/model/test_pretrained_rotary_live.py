"""GPT-NeoX and Llama folders and save_pretrained against HF transformers itself, wherever it is
installed.

Tiny random models are made with transformers and written to tmp_path in every way we read
(save_pretrained in float32, float16, bfloat16 and in shards; the hub's older layout), loaded
by ours and run by both: logits and each block's resid_pre (HF's output_hidden_states; the last
hidden state is the final norm's output) agree to 1e-8 in float64 and 1e-4 in float32. HF's
float64 runs under hf_rotary.float64_exact (its rotary angles and RMSNorm in float64, not
float32), which is checked here to be HF's function. The way back: our models, written by
save_pretrained, are read by transformers as the same function, tied or not as ours are.

Skipped without torch and transformers (the `bench` extra). CI installs them and sets
MECHCLAIMS_REQUIRE_TRANSFORMERS=1, which turns the skip into an import error: the comparison
cannot silently not run there.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mechclaims.model import pretrained
from mechclaims.model.transformer import Transformer
from tests.model.hf_required import torch_and_transformers
from tests.model.reference import assert_close

torch, transformers = torch_and_transformers()
from tests.model import hf_rotary  # noqa: E402 (after the skip: it imports torch)
from tests.model.test_save_pretrained import CONFIGS  # noqa: E402

# Each case: the family and its HF config options, named by what they exercise.
CASES = {
    "gpt_neox-parallel-partial": ("gpt_neox", {"rotary_pct": 0.5, "rotary_emb_base": 500.0}),
    "gpt_neox-serial-full-gelu_new": ("gpt_neox", {"use_parallel_residual": False,
                                                   "rotary_pct": 1.0, "hidden_act": "gelu_new"}),
    "gpt_neox-quarter-tied-nobias-relu": ("gpt_neox", {"tie_word_embeddings": True,
                                                       "attention_bias": False,
                                                       "hidden_act": "relu"}),
    "gpt_neox-pytorch_tanh-eps": ("gpt_neox", {"hidden_act": "gelu_pytorch_tanh",
                                               "rotary_pct": 0.5, "layer_norm_eps": 1e-3}),
    "llama-gqa": ("llama", {"rope_theta": 500.0}),
    "llama-mha-tied-biases": ("llama", {"num_key_value_heads": 4, "attention_bias": True,
                                        "mlp_bias": True, "tie_word_embeddings": True}),
    "llama-mqa-gelu-eps": ("llama", {"num_key_value_heads": 1, "hidden_act": "gelu",
                                     "rms_norm_eps": 1e-3}),
}  # fmt: skip
WRITINGS = ("float32", "float16", "bfloat16", "sharded", "hub")


def _write(model, folder, writing: str) -> None:
    if writing == "hub":
        hf_rotary.save_as_hub(model, folder, torch.float16)
    elif writing == "sharded":
        hf_rotary.save(model, folder, sharded=True)
    else:
        hf_rotary.save(model, folder, getattr(torch, writing))


def _assert_agree(actual: np.ndarray, expected: np.ndarray, dtype: str, what: str) -> None:
    if dtype == "float64":
        assert_close(actual, expected, rtol=1e-8, err_msg=f"{dtype} {what}")
    else:
        scale = np.abs(expected).max()
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale,
                                   err_msg=f"{dtype} {what}")  # fmt: skip


def _compare(folder, seed: int) -> None:
    """Ours from `folder` against what HF reads from it, in float64 (1e-8) and float32 (1e-4):
    the logits, each block's resid_pre and the final norm's output."""
    tokens = np.random.default_rng(seed).integers(0, 40, (3, hf_rotary.N_TOKENS))
    for dtype in ("float64", "float32"):
        ours = Transformer.from_pretrained(folder, dtype=dtype)
        torch_dtype = getattr(torch, dtype)
        logits, hidden = hf_rotary.outputs(hf_rotary.load(folder, torch_dtype), tokens, torch_dtype)
        our_logits, cache = ours.run_with_cache(tokens)
        assert our_logits.dtype == dtype
        ours_hidden = [cache[f"blocks.{layer}.hook_resid_pre"]
                       for layer in range(ours.cfg.n_layers)]  # fmt: skip
        ours_hidden.append(cache["ln_final.hook_normalized"])
        _assert_agree(our_logits, logits, dtype, "logits")
        for layer, (actual, expected) in enumerate(zip(ours_hidden, hidden, strict=True)):
            _assert_agree(actual, expected, dtype, f"hidden state {layer}")


@pytest.mark.parametrize("writing", WRITINGS)
@pytest.mark.parametrize("case", list(CASES))
def test_from_pretrained_matches_transformers(tmp_path, case, writing):
    family, config = CASES[case]
    seed = list(CASES).index(case)
    _write(hf_rotary.random_model(family, seed, **config), tmp_path / case, writing)
    _compare(tmp_path / case, seed)


def test_float64_exact_is_hfs_function_in_float64(tmp_path):
    """Patched, HF in float64 agrees with HF's own float32 to float32 rounding; unpatched, its
    float64 carries float32's errors, which 1e-8 would catch."""
    model = hf_rotary.random_model("llama", 0, rope_theta=500.0)
    tokens = np.random.default_rng(0).integers(0, 40, (3, hf_rotary.N_TOKENS))
    exact, _ = hf_rotary.outputs(model, tokens, torch.float64)
    single, _ = hf_rotary.outputs(model, tokens, torch.float32)
    _assert_agree(single, exact, "float32", "patched float64 against float32")
    with torch.no_grad():
        unpatched = model.to(torch.float64)(torch.tensor(tokens)).logits.numpy()
    assert 1e-10 < np.abs(unpatched - exact).max() / np.abs(exact).max() < 1e-5


def test_bfloat16_weights_read_as_torch_converts_them(tmp_path):
    """Our reading of the raw bfloat16 bytes against torch's conversion of the same tensors."""
    model = hf_rotary.random_model("gpt_neox", 1, rotary_pct=0.5)
    hf_rotary.save(model, tmp_path / "bf16", torch.bfloat16)
    ours = pretrained.read_tensors(tmp_path / "bf16" / "model.safetensors")
    theirs = {name: value.to(torch.bfloat16).to(torch.float32).numpy()
              for name, value in model.state_dict().items()}  # fmt: skip
    theirs["embed_out.weight"] = theirs.pop("lm_head.weight")
    assert set(ours) == set(theirs)
    for name, value in theirs.items():
        assert ours[name].dtype == np.float32
        np.testing.assert_array_equal(ours[name], value, err_msg=name)


# HF config.json contents whose rotary options HF resolves: old keys, new keys, both, neither.
ROPE_CONFIGS = {
    "pythia-keys": ("gpt_neox", {"rotary_pct": 0.5, "rotary_emb_base": 77.0}),
    "rope_parameters": ("gpt_neox", {"rope_parameters": {"rope_type": "default",
                                                         "rope_theta": 77.0,
                                                         "partial_rotary_factor": 1.0}}),
    "both-agreeing": ("gpt_neox", {"rotary_pct": 0.25, "rope_parameters": {
        "rope_theta": 77.0, "partial_rotary_factor": 0.25}}),
    "neox-defaults": ("gpt_neox", {}),
    "llama-top-level": ("llama", {"rope_theta": 77.0}),
    "llama-old-type": ("llama", {"rope_parameters": {"type": "default", "rope_theta": 77.0}}),
    "llama-defaults": ("llama", {}),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ROPE_CONFIGS))
def test_rotary_options_are_resolved_as_transformers_resolves_them(tmp_path, name):
    family, options = ROPE_CONFIGS[name]
    folder = tmp_path / name
    hf_rotary.save(hf_rotary.random_model(family, 2), folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("rope_parameters")
    (folder / "config.json").write_text(json.dumps({**config, **options}))
    hf = transformers.AutoConfig.from_pretrained(folder)
    ours = Transformer.from_pretrained(folder).cfg
    d_head = hf.hidden_size // hf.num_attention_heads
    factor = hf.rope_parameters.get("partial_rotary_factor", 1.0) if family == "gpt_neox" else 1
    assert (ours.rotary_base, ours.rotary_dims) == (
        hf.rope_parameters["rope_theta"], int(d_head * factor))  # fmt: skip
    _compare(folder, 2)


def test_the_comparison_catches_a_per_block_qkv_reading(tmp_path):
    """Not vacuous: GPT-NeoX's fused Q|K|V read per block, (Q|K|V, head, dh), as GPT-2's is,
    misses HF's logits by far more than 1e-8."""
    model = hf_rotary.random_model("gpt_neox", 3, rotary_pct=0.5)
    hf_rotary.save(model, tmp_path / "neox")
    ours = Transformer.from_pretrained(tmp_path / "neox", dtype="float64")
    params = dict(ours.params)
    d, H, dh = 32, 4, 8
    for layer, block in enumerate(model.gpt_neox.layers):
        qkv = block.attention.query_key_value
        W = qkv.weight.detach().double().numpy().reshape(3, H, dh, d).transpose(0, 1, 3, 2)
        b = qkv.bias.detach().double().numpy().reshape(3, H, dh)
        for which, name in enumerate("QKV"):
            params[f"blocks.{layer}.attn.W_{name}"] = W[which]
            params[f"blocks.{layer}.attn.b_{name}"] = b[which]
    tokens = np.arange(24).reshape(2, 12) % 40
    logits, _ = hf_rotary.outputs(model, tokens, torch.float64)
    assert_close(ours(tokens), logits, rtol=1e-8)
    assert np.abs(Transformer.from_params(ours.cfg, params)(tokens) - logits).max() > 1e-3


# ---------------------------------------------------------------- save_pretrained


def _random_params(cfg, seed: int) -> dict[str, np.ndarray]:
    """Every parameter N(0, 0.3²), norm gains 1 + N(0, 0.3²); the unembedding the embedding's
    transpose where the init ties them (llama2c), so that both kinds of head are written."""
    rng = np.random.default_rng(seed)
    params = {name: rng.normal(0.0, 0.3, value.shape) + (name.endswith(".w"))
              for name, value in Transformer(cfg).params.items()}  # fmt: skip
    if cfg.init == "llama2c":
        params["unembed.W_U"] = params["embed.W_E"].T
    return params


@pytest.mark.parametrize("name", list(CONFIGS))
def test_save_pretrained_is_read_by_transformers_as_ours(tmp_path, name):
    """float64 weights read by HF in float64 give our float64 logits and hidden states to 1e-8;
    the default float32 weights, HF's float32 ones to 1e-4; HF ties the head iff ours is tied."""
    cfg = CONFIGS[name]
    params = _random_params(cfg, seed=len(name))
    for dtype in ("float64", "float32"):
        model = Transformer.from_params(cfg.replace(dtype=dtype), params)
        folder = tmp_path / dtype
        model.save_pretrained(folder, dtype=dtype)
        hf = hf_rotary.load(folder, getattr(torch, dtype))
        assert type(hf).__name__ == json.loads((folder / "config.json").read_text())[
            "architectures"][0]  # fmt: skip
        assert hf.config.tie_word_embeddings == (cfg.init == "llama2c")
        tokens = np.random.default_rng(0).integers(0, 40, (3, hf_rotary.N_TOKENS))
        logits, hidden = hf_rotary.outputs(hf, tokens, getattr(torch, dtype))
        our_logits, cache = model.run_with_cache(tokens)
        _assert_agree(our_logits, logits, dtype, "logits")
        for layer in range(cfg.n_layers):
            resid = cache[f"blocks.{layer}.hook_resid_pre"]
            _assert_agree(resid, hidden[layer], dtype, f"resid_pre {layer}")
        _assert_agree(cache["ln_final.hook_normalized"], hidden[-1], dtype, "ln_final")


def test_hf_folders_written_back_by_ours_are_hfs_models(tmp_path):
    """HF -> ours -> save_pretrained -> HF: the same function as the model HF started with."""
    for family, config in (("gpt_neox", {"rotary_pct": 0.5}), ("llama", {})):
        model = hf_rotary.random_model(family, 4, **config)
        hf_rotary.save(model, tmp_path / family)
        ours = Transformer.from_pretrained(tmp_path / family)
        ours.save_pretrained(tmp_path / f"{family}-back")
        shutil.rmtree(tmp_path / family)
        _compare(tmp_path / f"{family}-back", 4)
        tokens = np.arange(24).reshape(2, 12) % 40
        back, _ = hf_rotary.outputs(hf_rotary.load(tmp_path / f"{family}-back", torch.float64),
                                    tokens, torch.float64)  # fmt: skip
        original, _ = hf_rotary.outputs(model, tokens, torch.float64)
        assert_close(back, original, rtol=1e-12)
