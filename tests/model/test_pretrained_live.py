"""Transformer.from_pretrained against HF transformers itself, wherever it is installed.

Tiny random GPT-2s are made with transformers, written to tmp_path in both key layouts (and with
a config.json that states the sizes only), loaded by ours and run by both: logits and each
block's resid_pre (HF's output_hidden_states; the last hidden state is the final LayerNorm's
output) agree to 1e-8 in float64 and 1e-4 in float32. Each case is also a committed golden
folder (fixtures/golden/gpt2/, tests/model/test_pretrained.py), so that what this checks is
checked without transformers too.

Skipped without torch and transformers (the `bench` extra). CI installs them and sets
MECHCLAIMS_REQUIRE_TRANSFORMERS=1, which turns the skip into an import error: the comparison
cannot silently not run there.
"""

from __future__ import annotations

import numpy as np
import pytest

from mechclaims.model.transformer import Transformer
from tests.model.hf_required import torch_and_transformers
from tests.model.reference import assert_close

torch, transformers = torch_and_transformers()
from tests.model import hf_gpt2  # noqa: E402 (after the skip: it imports torch)

# Each case: GPT2Config options, named by what they exercise.
CASES = {
    "gelu_new": {"activation_function": "gelu_new"},
    "gelu": {"activation_function": "gelu"},
    "gelu_pytorch_tanh": {"activation_function": "gelu_pytorch_tanh"},
    "relu": {"activation_function": "relu"},
    "n_inner-eps": {"n_inner": 20, "layer_norm_epsilon": 1e-3},
    "reorder_and_upcast_attn": {"reorder_and_upcast_attn": True},
    "untied": {"tie_word_embeddings": False},
}


def _compare(model, folder, seed):
    """Ours from `folder` against HF's `model` in float64 (1e-8) and float32 (1e-4)."""
    tokens = np.random.default_rng(seed).integers(0, hf_gpt2.TINY["vocab_size"], (3, 12))
    for dtype, torch_dtype, rtol in (("float64", torch.float64, 1e-8),
                                     ("float32", torch.float32, 1e-4)):  # fmt: skip
        ours = Transformer.from_pretrained(folder, dtype=dtype)
        logits, hidden = hf_gpt2.outputs(model, tokens, torch_dtype)
        our_logits, cache = ours.run_with_cache(tokens)
        assert our_logits.dtype == dtype
        ours_hidden = [cache[f"blocks.{layer}.hook_resid_pre"] for layer in range(2)]
        ours_hidden.append(cache["ln_final.hook_normalized"])
        for name, actual, expected in [("logits", our_logits, logits),
                                       *zip(("resid_pre 0", "resid_pre 1", "ln_final"),
                                            ours_hidden, hidden, strict=True)]:  # fmt: skip
            if dtype == "float64":
                assert_close(actual, expected, rtol=rtol, err_msg=f"{dtype} {name}")
            else:
                scale = np.abs(expected).max()
                np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale,
                                           err_msg=f"{dtype} {name}")  # fmt: skip


@pytest.mark.parametrize("layout", hf_gpt2.LAYOUTS)
@pytest.mark.parametrize("case", list(CASES))
def test_from_pretrained_matches_transformers(tmp_path, case, layout):
    seed = list(CASES).index(case)
    model = hf_gpt2.random_gpt2(seed, **CASES[case])
    hf_gpt2.save(model, tmp_path / case, layout)
    _compare(model, tmp_path / case, seed)


@pytest.mark.parametrize("layout", hf_gpt2.LAYOUTS)
def test_a_config_stating_only_the_sizes_is_read_as_transformers_reads_it(tmp_path, layout):
    """Every option absent from config.json: each takes HF's GPT2Config default in ours too (the
    golden folder defaults-hub checks the same without transformers)."""
    folder = tmp_path / "gpt2"
    hf_gpt2.save(hf_gpt2.random_gpt2(len(CASES)), folder, layout)
    hf_gpt2.state_only_sizes(folder)
    _compare(hf_gpt2.load(folder), folder, len(CASES))


def test_the_comparison_catches_a_wrong_gelu(tmp_path):
    """Not vacuous: the same weights under the other GELU miss HF's logits by far more than 1e-8."""
    model = hf_gpt2.random_gpt2(0, activation_function="gelu")
    hf_gpt2.save(model, tmp_path / "gpt2", "save_pretrained")
    ours = Transformer.from_pretrained(tmp_path / "gpt2", dtype="float64")
    wrong = Transformer.from_params(ours.cfg.replace(act_fn="gelu_new"), ours.params)
    tokens = np.arange(24).reshape(2, 12) % hf_gpt2.TINY["vocab_size"]
    logits, _ = hf_gpt2.outputs(model, tokens, torch.float64)
    assert_close(ours(tokens), logits, rtol=1e-8)
    assert np.abs(wrong(tokens) - logits).max() > 1e-4
