"""GPT-2's init (`gpt2-residual-scaled`) and float32 end to end, for the `gpt2-small` preset.

The float32 paths (forward, cache, hooks, stop_at_layer, loss_and_grads) are checked on a small
config with gpt2-small's architecture, init and dtype, against the same weights in float64; the
full preset is built once, where that is cheap enough (its shapes, init and one short forward).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer, param_shapes
from tests.model.strategies import seeds

GPT2_SMALL = TransformerConfig.preset("gpt2-small")
# gpt2-small's architecture, init and dtype at a size the tests can afford.
SMALL = GPT2_SMALL.replace(vocab_size=97, d_model=32, n_heads=4, n_layers=3, d_mlp=128, n_ctx=16)
# TransformerLens's gpt2 has 124,439,808 parameters; ours adds the untied unembedding [768, V].
GPT2_SMALL_PARAMETERS = 124_439_808 + 768 * 50257


def _assert_normal(values: np.ndarray, std: float, name: str) -> None:
    """Mean 0 and the given std, within 6 standard errors."""
    values = values.astype(np.float64).ravel()
    assert abs(values.mean()) < 6 * std / np.sqrt(values.size), name
    assert abs(values.std() / std - 1) < 6 / np.sqrt(2 * values.size), name


@given(seeds, st.integers(1, 12))
def test_residual_scaled_init_is_gpt2s_with_residual_projections_scaled(seed, n_layers):
    """Same draws as `gpt2`, with W_O and W_out divided by sqrt(2 n_layers) (HF's c_proj)."""
    cfg = SMALL.replace(n_layers=n_layers, dtype="float64")
    scaled = Transformer(cfg, seed=seed).params
    plain = Transformer(cfg.replace(init="gpt2"), seed=seed).params
    factor = np.sqrt(2 * n_layers)
    for name, value in scaled.items():
        if name.endswith((".W_O", ".W_out")):
            np.testing.assert_allclose(value, plain[name] / factor, rtol=1e-14, err_msg=name)
            _assert_normal(value, 0.02 / factor, name)
        else:
            np.testing.assert_array_equal(value, plain[name], err_msg=name)


@pytest.fixture(scope="module")
def small32():
    """A float32 model of SMALL's config, and the same weights in float64."""
    model32 = Transformer(SMALL, seed=4)
    model64 = Transformer.from_params(SMALL.replace(dtype="float64"), model32.params)
    return model32, model64


def _tokens(cfg, shape=(3, 16), seed=0):
    return np.random.default_rng(seed).integers(0, cfg.vocab_size, shape)


def test_float32_forward_cache_and_stop_agree_with_float64(small32):
    model32, model64 = small32
    tokens = _tokens(SMALL)
    logits32, cache32 = model32.run_with_cache(tokens)
    logits64, cache64 = model64.run_with_cache(tokens)
    assert logits32.dtype == np.float32
    assert model32(tokens).dtype == np.float32
    scale = np.abs(logits64).max()
    np.testing.assert_allclose(logits32, logits64, rtol=1e-4, atol=1e-4 * scale)
    for name, value in cache32.items():
        assert value.dtype == np.float32, name
        finite = np.isfinite(cache64[name])  # the causal mask's -inf scores
        np.testing.assert_array_equal(np.isfinite(value), finite, err_msg=name)
        reference = cache64[name][finite]
        atol = 1e-4 * np.abs(reference).max()
        np.testing.assert_allclose(value[finite], reference, rtol=1e-3, atol=atol, err_msg=name)
    resid, _ = model32.run_with_cache(tokens, names_filter=(), stop_at_layer=2)
    assert resid.dtype == np.float32
    np.testing.assert_array_equal(resid, cache32["blocks.1.hook_resid_post"])


def test_float32_hooks_see_and_replace_float32(small32):
    model32, model64 = small32
    tokens = _tokens(SMALL)
    target = "blocks.1.mlp.hook_post"
    seen = []

    def double(activation, hook_name):
        seen.append(activation.dtype)
        return activation.astype(np.float64) * 2.0  # a float64 replacement is cast back

    with model32.hooks([(target, double)]):
        logits32, cache = model32.run_with_cache(tokens, names_filter=target)
    assert seen == [np.float32]
    assert cache[target].dtype == np.float32
    assert logits32.dtype == np.float32
    logits64 = model64.run_with_hooks(tokens, fwd_hooks=[(target, double)])
    scale = np.abs(logits64).max()
    np.testing.assert_allclose(logits32, logits64, rtol=1e-4, atol=1e-4 * scale)
    assert np.abs(logits64 - model64(tokens)).max() > 1e-2 * scale  # the hook mattered


def test_float32_loss_and_grads_agree_with_float64(small32):
    model32, model64 = small32
    tokens = _tokens(SMALL, seed=1)
    targets = np.roll(tokens, -1, axis=1)
    loss32, grads32 = model32.loss_and_grads(tokens, targets)
    loss64, grads64 = model64.loss_and_grads(tokens, targets)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    assert np.log(SMALL.vocab_size) == pytest.approx(loss64, rel=0.01)  # GPT-2's init: near uniform
    total = np.sqrt(sum(np.sum(g**2) for g in grads64.values()))
    for name, grad in grads32.items():
        assert grad.dtype == np.float32, name
        diff = np.linalg.norm(grad - grads64[name])
        assert diff <= 1e-3 * np.linalg.norm(grads64[name]) + 1e-5 * total, name


@pytest.fixture(scope="module")
def gpt2_small():
    return Transformer(GPT2_SMALL, seed=0)


def test_the_full_preset_has_gpt2s_shapes_init_and_runs_in_float32(gpt2_small):
    params = gpt2_small.params
    assert list(params) == list(param_shapes(GPT2_SMALL))
    assert sum(value.size for value in params.values()) == GPT2_SMALL_PARAMETERS
    assert params["embed.W_E"].shape == (50257, 768)
    assert params["blocks.11.attn.W_Q"].shape == (12, 768, 64)
    assert "unembed.b_U" not in params
    assert all(value.dtype == np.float32 for value in params.values())
    _assert_normal(params["blocks.0.attn.W_O"], 0.02 / np.sqrt(24), "W_O")
    _assert_normal(params["blocks.11.mlp.W_out"], 0.02 / np.sqrt(24), "W_out")
    _assert_normal(params["blocks.5.mlp.W_in"], 0.02, "W_in")
    _assert_normal(params["unembed.W_U"], 0.02, "W_U")
    tokens = _tokens(GPT2_SMALL, shape=(1, 8))
    logits, cache = gpt2_small.run_with_cache(tokens, names_filter="blocks.11.hook_resid_post")
    assert logits.dtype == np.float32
    assert logits.shape == (1, 8, 50257)
    assert np.all(np.isfinite(logits))
    resid, _ = gpt2_small.run_with_cache(tokens, names_filter=(), stop_at_layer=12)
    np.testing.assert_array_equal(resid, cache["blocks.11.hook_resid_post"])
