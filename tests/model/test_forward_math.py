"""Forward maths of the model: softmax, LayerNorm, activations, positions, loss, whole forward.

Each property is chosen so that a plausible bug breaks it: a wrong axis, a missing max shift,
eps outside the square root, ddof=1, affine before normalising, a position table not added,
batch rows mixed. The whole forward is compared, activation by activation, with the naive
reference in `tests/model/reference.py`.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import logsumexp

from mechclaims.model import layers, transformer
from mechclaims.model.transformer import Transformer
from tests.model.reference import (
    assert_close,
    reference_forward,
    reference_gelu,
    reference_gelu_new,
    reference_layer_norm,
    reference_sinusoidal,
)
from tests.model.strategies import configs, generic_params, models_and_tokens, seeds, tokens_for

# Rows of softmax inputs: 1-3 leading axes, so a softmax over the wrong axis cannot pass.
score_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)


def score_arrays(bound: float) -> st.SearchStrategy:
    elements = st.floats(-bound, bound, allow_nan=False, allow_infinity=False)
    return hnp.arrays(np.float64, score_shapes, elements=elements)


def lse_softmax(x: np.ndarray) -> np.ndarray:
    return np.exp(x - logsumexp(x, axis=-1, keepdims=True))


# ---------------------------------------------------------------- softmax


@given(score_arrays(50.0))
def test_softmax_rows_are_distributions(scores):
    probs = layers.softmax(scores.copy())
    assert probs.shape == scores.shape
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-12)


@given(score_arrays(50.0), seeds)
def test_softmax_is_invariant_to_a_per_row_shift(scores, seed):
    shift = np.random.default_rng(seed).uniform(-100, 100, size=(*scores.shape[:-1], 1))
    assert_close(layers.softmax(scores + shift), layers.softmax(scores.copy()), rtol=1e-9)


@given(score_arrays(1e4))
def test_softmax_of_huge_logits_is_finite_and_matches_logsumexp(scores):
    probs = layers.softmax(scores.copy())
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs, lse_softmax(scores), rtol=1e-9, atol=1e-250)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-12)


@given(score_arrays(30.0))
def test_softmax_matches_log_sum_exp_formulation(scores):
    np.testing.assert_allclose(layers.softmax(scores.copy()), lse_softmax(scores), rtol=1e-12)


@given(score_arrays(30.0), seeds)
def test_softmax_gives_zero_to_minus_infinity(scores, seed):
    rng = np.random.default_rng(seed)
    masked = rng.random(scores.shape) < 0.5
    keep = rng.integers(0, scores.shape[-1], size=scores.shape[:-1])  # one visible entry a row
    np.put_along_axis(masked, keep[..., None], False, axis=-1)
    with_mask = np.where(masked, -np.inf, scores)
    probs = layers.softmax(with_mask.copy())
    assert np.all(probs[masked] == 0.0)
    np.testing.assert_allclose(probs, lse_softmax(with_mask), rtol=1e-12)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-12)


@given(score_arrays(30.0), seeds, st.floats(0.01, 5.0))
def test_softmax_is_monotone(scores, seed, bump):
    probs = layers.softmax(scores.copy())
    # Larger logit, larger (or equal, after rounding) probability, within each row.
    larger = scores[..., :, None] > scores[..., None, :]  # [..., i, j]: logit i > logit j
    assert np.all((probs[..., :, None] - probs[..., None, :])[larger] >= 0)
    # Raising one logit raises its probability and lowers every other one in its row.
    rng = np.random.default_rng(seed)
    index = rng.integers(0, scores.shape[-1], size=scores.shape[:-1])[..., None]
    raised = scores.copy()
    np.put_along_axis(raised, index, np.take_along_axis(scores, index, -1) + bump, axis=-1)
    new = layers.softmax(raised)
    old_target = np.take_along_axis(probs, index, -1)
    new_target = np.take_along_axis(new, index, -1)
    room = old_target < 1 - 1e-9
    assert np.all(new_target[room] > old_target[room])
    others = np.ones(scores.shape, dtype=bool)
    np.put_along_axis(others, index, False, axis=-1)
    assert np.all(new[others] <= probs[others] * (1 + 1e-12))


# ---------------------------------------------------------------- LayerNorm


@st.composite
def layer_norm_inputs(draw):
    """x = offset + spread * N(0, 1) rows over a [*, d] array: var set by `spread`, away from 0."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=7))
    rng = np.random.default_rng(draw(seeds))
    spread = 10.0 ** rng.uniform(-1.5, 2, size=(*shape[:-1], 1))
    offset = rng.uniform(-50, 50, size=(*shape[:-1], 1))
    return offset + spread * rng.standard_normal(shape)


eps_values = st.sampled_from([1e-5, 1e-3, 0.1, 1.0, 10.0])


@given(layer_norm_inputs(), eps_values)
def test_layer_norm_centres_and_scales_with_population_variance(x, eps):
    out, _ = layers.layer_norm_forward(x, None, None, eps)
    var = x.var(axis=-1)  # population variance (ddof=0)
    np.testing.assert_allclose(out.mean(axis=-1), 0.0, atol=1e-10)
    # Var(out) = var / (var + eps) exactly: accounts for eps, and ddof=1 would give a factor (n-1)/n
    np.testing.assert_allclose(out.var(axis=-1), var / (var + eps), rtol=1e-9)


@given(layer_norm_inputs(), eps_values, st.floats(0.01, 100.0), seeds)
def test_layer_norm_is_invariant_to_scale_and_shift(x, eps, scale, seed):
    """LN(c x + a) with eps c² equals LN(x) with eps, exactly: (c(x-μ)) / sqrt(c²σ² + c²eps)."""
    shift = np.random.default_rng(seed).uniform(-10, 10, size=(*x.shape[:-1], 1))
    plain, _ = layers.layer_norm_forward(x, None, None, eps)
    moved, _ = layers.layer_norm_forward(scale * x + shift, None, None, eps * scale**2)
    assert_close(moved, plain, rtol=1e-8)
    shifted, _ = layers.layer_norm_forward(x + shift, None, None, eps)
    assert_close(shifted, plain, rtol=1e-8)


@given(layer_norm_inputs(), eps_values, seeds)
def test_layer_norm_applies_affine_after_normalising(x, eps, seed):
    rng = np.random.default_rng(seed)
    w = 1 + rng.standard_normal(x.shape[-1])
    b = rng.standard_normal(x.shape[-1])
    plain, _ = layers.layer_norm_forward(x, None, None, eps)
    out, _ = layers.layer_norm_forward(x, w, b, eps)
    assert_close(out, plain * w + b, rtol=1e-13)


@given(layer_norm_inputs(), eps_values, seeds, st.floats(1e-3, 1.0))
def test_layer_norm_matches_the_formula_with_eps_inside_the_sqrt(x, eps, seed, squeeze):
    rng = np.random.default_rng(seed)
    x = x * squeeze  # smaller variances, where eps matters
    w = 1 + rng.standard_normal(x.shape[-1])
    b = rng.standard_normal(x.shape[-1])
    out, _ = layers.layer_norm_forward(x, w, b, eps)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    assert_close(out, (x - mean) / np.sqrt(var + eps) * w + b, rtol=1e-9)
    assert_close(out, reference_layer_norm(x, w, b, eps), rtol=1e-9)


# ---------------------------------------------------------------- activations, positions


@given(hnp.arrays(np.float64, score_shapes, elements=st.floats(-20, 20)))
def test_gelu_new_is_the_tanh_approximation(x):
    out, _ = layers.gelu_new_forward(x.copy())  # (out, cache), as every layer forward
    # The reference's tanh form loses digits where tanh(u) nears -1 (x << 0, out near 0): there
    # the two agree to a few eps absolute, elsewhere to 1e-13 relative.
    few_eps = 8 * np.finfo(np.float64).eps
    np.testing.assert_allclose(out, reference_gelu_new(x), rtol=1e-13, atol=few_eps)
    # Not ReLU and not exact erf GELU: gelu_new(-1) = -0.15880800939172324 with the tanh form.
    np.testing.assert_allclose(layers.gelu_new_forward(np.array([-1.0]))[0], [-0.1588080093917232])


@given(hnp.arrays(np.float64, score_shapes, elements=st.floats(-20, 20)))
def test_gelu_is_exact(x):
    out, _ = layers.gelu_forward(x.copy())
    assert_close(out, reference_gelu(x), rtol=1e-13)
    # x Φ(x) at ±1 (Φ(1) = 0.8413447460685429...), not the tanh form's -0.15880800939172324.
    np.testing.assert_allclose(
        layers.gelu_forward(np.array([-1.0, 1.0]))[0], [-0.15865525393145707, 0.8413447460685429]
    )


@pytest.mark.parametrize("act_fn", ["gelu", "gelu_new"])
@given(x=hnp.arrays(np.float64, score_shapes, elements=st.floats(-20, 20)))
def test_both_gelus_are_x_times_a_symmetric_cdf(act_fn, x):
    """gelu(x) - gelu(-x) = x, as Φ(x) + Φ(-x) = 1; float32 in, float32 out, to float32 rounding."""
    forward = layers.ACTIVATIONS[act_fn][0]
    assert_close(forward(x)[0] - forward(-x)[0], x, rtol=1e-13)
    out32, _ = forward(x.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, forward(x)[0], rtol=1e-6, atol=1e-6)


def test_the_two_gelus_differ_by_the_tanh_forms_error():
    """At most 4.8e-4 apart (largest near |x| = 2.7), and not equal: a mix-up shows."""
    x = np.linspace(-10, 10, 20001)
    gap = np.abs(layers.gelu_forward(x)[0] - layers.gelu_new_forward(x)[0])
    assert 4e-4 < gap.max() < 4.8e-4


@given(hnp.arrays(np.float64, score_shapes, elements=st.floats(-20, 20)))
def test_relu_zeroes_negatives_only(x):
    out, _ = layers.relu_forward(x)
    assert_close(out, np.where(x > 0, x, 0.0), rtol=0)


@given(st.integers(1, 40), st.integers(1, 17))
def test_sinusoidal_table_matches_formula(n_ctx, d_model):
    table = layers.sinusoidal_table(n_ctx, d_model)
    assert table.shape == (n_ctx, d_model)
    assert_close(table, reference_sinusoidal(n_ctx, d_model), rtol=1e-12)


# ---------------------------------------------------------------- loss


@given(st.integers(1, 4), st.integers(1, 6), st.integers(2, 10), seeds, st.floats(1, 1e4))
def test_cross_entropy_is_weighted_negative_log_softmax(batch, n_pos, vocab, seed, magnitude):
    rng = np.random.default_rng(seed)
    logits = magnitude * rng.standard_normal((batch, n_pos, vocab))
    targets = rng.integers(0, vocab, size=(batch, n_pos))
    nll = logsumexp(logits, axis=-1) - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    uniform = np.full((batch, n_pos), 1.0 / (batch * n_pos))
    # Each nll is a difference of logits of size `magnitude`: rounding is absolute, ~eps * that.
    atol = 1e-13 * magnitude
    loss, _ = layers.cross_entropy_forward(logits, targets, uniform)
    np.testing.assert_allclose(loss, nll.mean(), rtol=1e-10, atol=atol)
    weights = rng.random((batch, n_pos))
    weights /= weights.sum()
    loss, _ = layers.cross_entropy_forward(logits, targets, weights)
    np.testing.assert_allclose(loss, (nll * weights).sum(), rtol=1e-10, atol=atol)


# ---------------------------------------------------------------- whole forward


# One run per block layout, so each draws its own examples of the other variants.
@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("attention", ["standard", "parameter-free"])
@given(data=st.data())
def test_forward_matches_naive_reference_at_every_hook(norm, attention, data):
    model, tokens = data.draw(models_and_tokens(configs(norm=norm, attention=attention)))
    logits, cache = model.run_with_cache(tokens)
    expected_logits, expected = reference_forward(model.cfg, model.params, tokens)
    assert set(cache) == set(expected)
    for name in model.hook_names():
        assert_close(cache[name], expected[name], err_msg=name)
    assert_close(logits, expected_logits, err_msg="logits")
    # The plain call (no dispatcher) computes the same logits.
    assert_close(model(tokens), expected_logits, err_msg="model(tokens)")


@given(models_and_tokens(min_batch=2))
def test_sequences_in_a_batch_are_independent(model_and_tokens):
    model, tokens = model_and_tokens
    together = model(tokens)
    for row in range(tokens.shape[0]):
        alone = model(tokens[row : row + 1])
        assert_close(together[row : row + 1], alone, rtol=1e-10, err_msg=f"sequence {row}")
    # Reordering the batch reorders the logits and nothing else.
    order = np.arange(tokens.shape[0])[::-1]
    assert_close(model(tokens[order]), together[order], rtol=1e-10)


@given(models_and_tokens(min_batch=2), st.integers(1, 12))
def test_chunked_forward_equals_the_whole_batch(model_and_tokens, chunk_tokens):
    """A large batch runs in chunks of about CHUNK_TOKENS tokens: same logits, same cache."""
    model, tokens = model_and_tokens
    whole_logits, whole = model.run_with_cache(tokens)
    with mock.patch.object(transformer, "CHUNK_TOKENS", chunk_tokens):
        logits, cache = model.run_with_cache(tokens)
        plain = model(tokens)
        _, narrow = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    assert_close(logits, whole_logits, rtol=1e-10)
    assert_close(plain, whole_logits, rtol=1e-10)
    assert set(cache) == set(whole)
    for name in whole:
        assert_close(cache[name], whole[name], rtol=1e-10, err_msg=name)
    assert set(narrow) == {"blocks.0.hook_resid_post"}
    assert_close(narrow["blocks.0.hook_resid_post"], whole["blocks.0.hook_resid_post"], rtol=1e-10)


@given(models_and_tokens(cfg=configs(causal=True)), st.integers(1, 6))
def test_causal_prefix_gives_prefix_logits(model_and_tokens, cut):
    model, tokens = model_and_tokens
    cut = min(cut, tokens.shape[1])
    assert_close(model(tokens[:, :cut]), model(tokens)[:, :cut], rtol=1e-10)


# d_model >= 4: LayerNorm of two or three numbers that nearly coincide is ill-conditioned (the
# centred values cancel), and float32 rounding then legitimately exceeds 1e-4.
@given(configs(d_model=st.integers(4, 16)), seeds, st.data())
def test_float32_model_agrees_with_float64(cfg, seed, data):
    # The same float32-representable weights in both models: only the arithmetic differs.
    params = {
        name: value.astype(np.float32).astype(np.float64)
        for name, value in generic_params(cfg, seed).items()
    }
    tokens = data.draw(tokens_for(cfg))
    model64 = Transformer.from_params(cfg, params)
    model32 = Transformer.from_params(cfg.replace(dtype="float32"), params)
    assert all(value.dtype == np.float32 for value in model32.params.values())
    logits32, cache32 = model32.run_with_cache(tokens)
    assert logits32.dtype == np.float32
    assert model32(tokens).dtype == np.float32
    for name, value in cache32.items():
        assert value.dtype == np.float32, name
    logits64 = model64(tokens)
    scale = np.abs(logits64).max()
    np.testing.assert_allclose(logits32, logits64, rtol=1e-4, atol=1e-4 * scale)
