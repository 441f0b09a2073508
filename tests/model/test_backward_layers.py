"""Every layer's backward pass against central finite differences of its forward pass (float64).

Each test draws shapes and a seed, builds random inputs and parameters (biases non-zero, LayerNorm
gains != 1, so that no term is hidden by a zero or a one), and checks the vector-Jacobian product:
the gradient of `sum(forward(...) * dout)` for a random `dout` with respect to the input and to
every parameter, element by element for small arrays and along random directions for all.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, reject
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import log_softmax

from mechclaims.model import layers, transformer
from mechclaims.model.config import ACT_FNS, TransformerConfig
from tests.model.gradcheck import (
    EPS,
    KinkCrossed,
    assert_gradients_match,
    check_gradients,
    vjp_scalar,
)
from tests.model.strategies import configs, generic_params

seeds = st.integers(min_value=0, max_value=2**32 - 1)
batches = st.integers(min_value=1, max_value=3)
positions = st.integers(min_value=1, max_value=6)
widths = st.integers(min_value=2, max_value=16)
heads = st.integers(min_value=1, max_value=3)
head_widths = st.integers(min_value=1, max_value=4)
# Attention scales: 1 (the seed's unscaled attention, which skips the multiply) and others.
scales = st.one_of(st.just(1.0), st.floats(min_value=0.2, max_value=2.0))


def gradient_checks(f, arrays, grads, rng, **options):
    """check_gradients, rejecting the example when a finite-difference step crosses a kink."""
    try:
        return check_gradients(f, arrays, grads, rng, **options)
    except KinkCrossed:
        reject()


# ---------------------------------------------------------------- embeddings


@given(seed=seeds, batch=batches, n_pos=positions, vocab=st.integers(1, 6), d=widths)
def test_embed_backward(seed, batch, n_pos, vocab, d):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, size=(batch, n_pos))  # small vocab: repeated tokens are common
    arrays = {"W_E": rng.standard_normal((vocab, d))}
    dout = rng.standard_normal((batch, n_pos, d))
    _, cache = layers.embed_forward(tokens, arrays["W_E"])
    dx, grads = layers.embed_backward(dout, cache)

    assert dx is None
    assert set(grads) == {"W_E"}
    f = vjp_scalar(lambda a: layers.embed_forward(tokens, a["W_E"])[0], dout)
    assert_gradients_match(gradient_checks(f, arrays, grads, rng, max_elements=96))
    # A repeated token sums the gradients of all its positions; an absent one gets exactly zero.
    for token in range(vocab):
        expected = dout[tokens == token].sum(axis=0)
        np.testing.assert_allclose(grads["W_E"][token], expected, rtol=1e-12, atol=1e-12)
    absent = np.setdiff1d(np.arange(vocab), tokens)
    assert np.all(grads["W_E"][absent] == 0)


@given(seed=seeds, batch=batches, n_pos=positions, extra=st.integers(0, 4), d=widths)
def test_pos_embed_backward(seed, batch, n_pos, extra, d):
    rng = np.random.default_rng(seed)
    n_ctx = n_pos + extra
    arrays = {"W_pos": rng.standard_normal((n_ctx, d))}
    dout = rng.standard_normal((batch, n_pos, d))
    out, cache = layers.pos_embed_forward(arrays["W_pos"], batch, n_pos)
    dx, grads = layers.pos_embed_backward(dout, cache)

    assert out.shape == (batch, n_pos, d)
    assert dx is None
    assert set(grads) == {"W_pos"}
    f = vjp_scalar(lambda a: layers.pos_embed_forward(a["W_pos"], batch, n_pos)[0], dout)
    assert_gradients_match(gradient_checks(f, arrays, grads, rng, max_elements=96))
    assert np.all(grads["W_pos"][n_pos:] == 0), "positions >= T cannot affect the output"


# ---------------------------------------------------------------- LayerNorm


@given(
    seed=seeds,
    batch=batches,
    n_pos=positions,
    d=widths,
    affine=st.booleans(),
    ln_eps=st.sampled_from([1e-5, 1e-2, 0.5]),
)
def test_layer_norm_backward(seed, batch, n_pos, d, affine, ln_eps):
    rng = np.random.default_rng(seed)
    spread = rng.uniform(0.3, 3.0)
    arrays = {"x": rng.normal(rng.normal(), spread, (batch, n_pos, d))}
    if affine:
        arrays["w"] = 1 + 0.5 * rng.standard_normal(d)
        arrays["b"] = rng.standard_normal(d)
    dout = rng.standard_normal((batch, n_pos, d))

    def forward(a):
        return layers.layer_norm_forward(a["x"], a.get("w"), a.get("b"), ln_eps)[0]

    _, cache = layers.layer_norm_forward(arrays["x"], arrays.get("w"), arrays.get("b"), ln_eps)
    dx, grads = layers.layer_norm_backward(dout, cache)
    assert set(grads) == ({"w", "b"} if affine else set())

    checks = gradient_checks(vjp_scalar(forward, dout), arrays, {"x": dx, **grads}, rng)
    assert_gradients_match(checks)
    # The input gradient is orthogonal to the constant and to xhat in each row: LN output does
    # not change when x is shifted, and (eps -> 0) nor when it is scaled.
    np.testing.assert_allclose(dx.sum(axis=-1), 0, atol=1e-10 * (1 + np.abs(dx).max()))


@given(seed=seeds, batch=batches, n_pos=positions, d=widths, affine=st.booleans(),
       eps=st.sampled_from([1e-5, 1e-2, 0.5]))  # fmt: skip
def test_rms_norm_backward(seed, batch, n_pos, d, affine, eps):
    rng = np.random.default_rng(seed)
    arrays = {"x": rng.normal(rng.normal(), rng.uniform(0.3, 3.0), (batch, n_pos, d))}
    if affine:
        arrays["w"] = 1 + 0.5 * rng.standard_normal(d)
    dout = rng.standard_normal((batch, n_pos, d))

    def forward(a):
        return layers.rms_norm_forward(a["x"], a.get("w"), eps)[0]

    _, cache = layers.rms_norm_forward(arrays["x"], arrays.get("w"), eps)
    dx, grads = layers.rms_norm_backward(dout, cache)
    assert set(grads) == ({"w"} if affine else set())
    checks = gradient_checks(vjp_scalar(forward, dout), arrays, {"x": dx, **grads}, rng)
    assert_gradients_match(checks)


@given(seed=seeds, batch=batches, n_pos=positions, n_heads=heads, half=st.integers(1, 3),
       extra=st.integers(0, 3), base=st.sampled_from([10000.0, 3.0]))  # fmt: skip
def test_rotary_backward_is_the_rotation_back(seed, batch, n_pos, n_heads, half, extra, base):
    """The rotation's vector-Jacobian product is the inverse rotation (sign -1)."""
    rng = np.random.default_rng(seed)
    table = layers.rotary_table(n_pos, 2 * half, base, np.float64)
    arrays = {"x": rng.standard_normal((batch, n_pos, n_heads, 2 * half + extra))}
    dout = rng.standard_normal(arrays["x"].shape)
    dx = layers.rotary_forward(dout, table, sign=-1.0)
    checks = gradient_checks(vjp_scalar(lambda a: layers.rotary_forward(a["x"], table), dout),
                             arrays, {"x": dx}, rng)  # fmt: skip
    assert_gradients_match(checks)


# ---------------------------------------------------------------- softmax and attention core


@given(
    seed=seeds,
    batch=batches,
    n_heads=heads,
    n_pos=positions,
    masked=st.booleans(),
    sharpness=st.floats(0.1, 4.0),
)
def test_softmax_backward(seed, batch, n_heads, n_pos, masked, sharpness):
    rng = np.random.default_rng(seed)
    scores = sharpness * rng.standard_normal((batch, n_heads, n_pos, n_pos))
    if masked:
        scores = scores + layers.causal_mask(n_pos, scores.dtype)
    dout = rng.standard_normal(scores.shape)
    probs = layers.softmax(scores)
    dscores = layers.softmax_backward(dout, probs)

    f = vjp_scalar(lambda a: layers.softmax(a["scores"]), dout)
    checks = gradient_checks(f, {"scores": scores}, {"scores": dscores}, rng, max_elements=96)
    assert_gradients_match(checks)
    if masked:
        assert np.all(dscores[..., np.isinf(scores[0, 0])] == 0)
    np.testing.assert_allclose(dscores.sum(axis=-1), 0, atol=1e-12 * (1 + np.abs(dout).max()))


@given(
    seed=seeds,
    batch=batches,
    n_pos=positions,
    n_heads=heads,
    d_head=head_widths,
    causal=st.booleans(),
    scale=scales,
)
def test_attend_backward(seed, batch, n_pos, n_heads, d_head, causal, scale):
    rng = np.random.default_rng(seed)
    shape = (batch, n_pos, n_heads, d_head)
    arrays = {name: rng.standard_normal(shape) for name in ("q", "k", "v")}
    dz = rng.standard_normal(shape)

    def forward(a):
        return layers.attend_forward(a["q"], a["k"], a["v"], scale, causal, layers.no_hook)[0]

    _, cache = layers.attend_forward(*arrays.values(), scale, causal, layers.no_hook)
    dq, dk, dv = layers.attend_backward(dz, cache)
    grads = {"q": dq, "k": dk, "v": dv}

    assert_gradients_match(gradient_checks(vjp_scalar(forward, dz), arrays, grads, rng))
    if causal:  # the first query sees only the first key: no gradient reaches a later one
        first_only = np.zeros_like(dz)
        first_only[:, 0] = dz[:, 0]
        _, dk_first, dv_first = layers.attend_backward(first_only, cache)
        assert np.all(dk_first[:, 1:] == 0)
        assert np.all(dv_first[:, 1:] == 0)


def attention_params(rng, d_model, n_heads, d_head, n_kv_heads=None, bias=True):
    """Standard attention weights ~ 1/sqrt(d) (keys and values of n_kv_heads heads, default
    n_heads) and, with `bias`, non-zero biases."""
    n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
    heads = {"Q": n_heads, "K": n_kv_heads, "V": n_kv_heads}
    scale = 1 / np.sqrt(d_model)
    params = {f"W_{name}": scale * rng.standard_normal((count, d_model, d_head))
              for name, count in heads.items()}  # fmt: skip
    params["W_O"] = scale * rng.standard_normal((n_heads, d_head, d_model))
    if bias:
        params.update({f"b_{name}": 0.5 * rng.standard_normal((count, d_head))
                       for name, count in heads.items()})  # fmt: skip
        params["b_O"] = 0.5 * rng.standard_normal(d_model)
    return params


@given(
    seed=seeds,
    batch=batches,
    n_pos=positions,
    n_kv_heads=heads,
    group=st.integers(1, 2),
    d_head=st.sampled_from([1, 2, 4]),
    causal=st.booleans(),
    rotary=st.booleans(),
    bias=st.booleans(),
)
def test_attention_backward(seed, batch, n_pos, n_kv_heads, group, d_head, causal, rotary, bias):
    """With grouped queries (group query heads per key head), rotary positions, biases or not."""
    rng = np.random.default_rng(seed)
    n_heads = n_kv_heads * group
    d = n_heads * d_head
    params = attention_params(rng, d, n_heads, d_head, n_kv_heads, bias)
    arrays = {"x": 1.5 * rng.standard_normal((batch, n_pos, d)), **params}
    dout = rng.standard_normal((batch, n_pos, d))
    table = None
    if rotary and d_head >= 2:
        table = layers.rotary_table(n_pos, 2 * (d_head // 2), 10000.0, np.float64)

    def forward(a):
        weights = {name: a[name] for name in params}
        return layers.attention_forward(a["x"], weights, causal, layers.no_hook, table)[0]

    _, cache = layers.attention_forward(arrays["x"], params, causal, layers.no_hook, table)
    dx, grads = layers.attention_backward(dout, cache)
    assert set(grads) == set(params)

    checks = gradient_checks(vjp_scalar(forward, dout), arrays, {"x": dx, **grads}, rng)
    assert_gradients_match(checks)
    if bias and table is None:  # b_K adds q.b_K to a whole row of scores, which softmax ignores
        # (rotary turns b_K by the key's position: then it is not the same along the row)
        assert np.abs(grads["b_K"]).max() <= 1e-12 * (1 + np.abs(grads["b_Q"]).max())
    # Not vacuous: every other parameter does receive a gradient.
    for name in ("W_V", "W_O", "b_V", "b_O"):
        if name in params:
            assert np.linalg.norm(grads[name]) > 1e-6, name
    if n_pos > 1:
        for name in ("W_Q", "W_K", "b_Q"):
            if name in params:
                assert np.linalg.norm(grads[name]) > 1e-9, name


@given(seed=seeds, batch=batches, n_pos=positions, d=widths, causal=st.booleans())
def test_parameter_free_attention_backward(seed, batch, n_pos, d, causal):
    rng = np.random.default_rng(seed)
    arrays = {"x": rng.normal(0, 1 / d**0.25, (batch, n_pos, d))}  # scores x.x stay O(1)
    dout = rng.standard_normal((batch, n_pos, d))

    def forward(a):
        return layers.parameter_free_attention_forward(a["x"], causal, layers.no_hook)[0]

    _, cache = layers.parameter_free_attention_forward(arrays["x"], causal, layers.no_hook)
    dx, grads = layers.parameter_free_attention_backward(dout, cache)
    assert grads == {}
    checks = gradient_checks(vjp_scalar(forward, dout), arrays, {"x": dx}, rng, max_elements=96)
    assert_gradients_match(checks)


# ---------------------------------------------------------------- MLP and activations


@given(
    x=hnp.arrays(
        np.float64,
        hnp.array_shapes(max_dims=3, max_side=5),
        elements=st.floats(-10, 10).filter(lambda v: abs(v) > 1e-3),
    ),
    seed=seeds,
)
def test_activation_backward_is_the_derivative_of_forward(x, seed):
    """backward(dout, cache) is dout times the slope of forward, for both GELUs, ReLU and SiLU.

    Each activation's forward returns `(out, cache)` and its backward takes that cache.
    """
    dout = np.random.default_rng(seed).standard_normal(x.shape)
    pairs = {
        "gelu": (layers.gelu_forward, layers.gelu_backward),
        "gelu_new": (layers.gelu_new_forward, layers.gelu_new_backward),
        "relu": (layers.relu_forward, layers.relu_backward),
        "silu": (layers.silu_forward, layers.silu_backward),
    }
    pairs.update({f"ACTIVATIONS[{name!r}]": pair for name, pair in layers.ACTIVATIONS.items()})
    for name, (forward, backward) in pairs.items():
        _, cache = forward(x.copy())
        numeric = (forward(x + EPS)[0] - forward(x - EPS)[0]) / (2 * EPS)  # elementwise
        analytic = backward(dout, cache)
        assert analytic.shape == x.shape
        np.testing.assert_allclose(analytic, dout * numeric, rtol=1e-7, atol=1e-8, err_msg=name)


def test_gelu_new_backward_known_slopes():
    x = np.array([0.0, -30.0, 30.0, 1.0])
    _, cache = layers.gelu_new_forward(x)
    slope = layers.gelu_new_backward(np.ones_like(x), cache)
    # d/dx at 1 of 0.5 x (1 + tanh(c (x + a x³))): 0.5 (1 + t) + 0.5 (1 - t²) c (1 + 3a).
    c, a = np.sqrt(2 / np.pi), 0.044715
    t = np.tanh(c * (1 + a))
    expected_at_1 = 0.5 * (1 + t) + 0.5 * (1 - t * t) * c * (1 + 3 * a)
    np.testing.assert_allclose(slope, [0.5, 0.0, 1.0, expected_at_1], rtol=1e-12, atol=1e-12)


def test_gelu_backward_known_slopes():
    x = np.array([0.0, -30.0, 30.0, 1.0, -1.0])
    _, cache = layers.gelu_forward(x)
    slope = layers.gelu_backward(np.ones_like(x), cache)
    # d/dx of x Φ(x) is Φ(x) + x φ(x): at ±1, Φ(±1) ± φ(1), written with math.erf and math.exp.
    phi_1 = math.exp(-0.5) / math.sqrt(2 * math.pi)
    cdf_1 = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    expected = [0.5, 0.0, 1.0, cdf_1 + phi_1, 1 - cdf_1 - phi_1]
    np.testing.assert_allclose(slope, expected, rtol=1e-12, atol=1e-12)


@given(
    seed=seeds,
    batch=batches,
    n_pos=positions,
    d=widths,
    d_mlp=st.integers(1, 16),
    act_fn=st.sampled_from(ACT_FNS),
    gated=st.booleans(),
    bias=st.booleans(),
)
def test_mlp_backward(seed, batch, n_pos, d, d_mlp, act_fn, gated, bias):
    rng = np.random.default_rng(seed)
    inputs = ("gate", "in") if gated else ("in",)
    params = {f"W_{name}": rng.standard_normal((d, d_mlp)) / np.sqrt(d) for name in inputs}
    params["W_out"] = rng.standard_normal((d_mlp, d)) / np.sqrt(d_mlp)
    if bias:
        params.update({f"b_{name}": 0.5 * rng.standard_normal(d_mlp) for name in inputs})
        params["b_out"] = 0.5 * rng.standard_normal(d)
    arrays = {"x": rng.standard_normal((batch, n_pos, d)), **params}
    dout = rng.standard_normal((batch, n_pos, d))

    def forward(a):
        weights = {name: a[name] for name in params}
        out = layers.mlp_forward(a["x"], weights, act_fn, layers.no_hook)[0]
        if act_fn != "relu":
            return out
        first = a["x"] @ a[f"W_{inputs[0]}"] + a.get(f"b_{inputs[0]}", 0.0)
        return out, first > 0  # ReLU: which units are active

    _, cache = layers.mlp_forward(arrays["x"], params, act_fn, layers.no_hook)
    dx, grads = layers.mlp_backward(dout, cache)
    assert set(grads) == set(params)

    checks = gradient_checks(vjp_scalar(forward, dout), arrays, {"x": dx, **grads}, rng)
    assert_gradients_match(checks)


# ---------------------------------------------------------------- unembed and loss


@given(
    seed=seeds,
    batch=batches,
    n_pos=positions,
    d=widths,
    vocab=st.integers(2, 10),
    bias=st.booleans(),
)
def test_unembed_backward(seed, batch, n_pos, d, vocab, bias):
    rng = np.random.default_rng(seed)
    arrays = {"x": rng.standard_normal((batch, n_pos, d)), "W_U": rng.standard_normal((d, vocab))}
    if bias:
        arrays["b_U"] = rng.standard_normal(vocab)
    dout = rng.standard_normal((batch, n_pos, vocab))

    def forward(a):
        return layers.unembed_forward(a["x"], a["W_U"], a.get("b_U"))[0]

    _, cache = layers.unembed_forward(arrays["x"], arrays["W_U"], arrays.get("b_U"))
    dx, grads = layers.unembed_backward(dout, cache)
    assert set(grads) == ({"W_U", "b_U"} if bias else {"W_U"})
    checks = gradient_checks(vjp_scalar(forward, dout), arrays, {"x": dx, **grads}, rng)
    assert_gradients_match(checks)


@given(
    seed=seeds,
    batch=batches,
    n_pos=positions,
    vocab=st.integers(2, 10),
    sharpness=st.floats(0.1, 5.0),
    dloss=st.floats(0.25, 4.0) | st.floats(-4.0, -0.25),
)
def test_cross_entropy_backward(seed, batch, n_pos, vocab, sharpness, dloss):
    rng = np.random.default_rng(seed)
    logits = sharpness * rng.standard_normal((batch, n_pos, vocab))
    targets = rng.integers(0, vocab, (batch, n_pos))
    # Non-uniform weights summing to 1, some exactly 0 (a loss mask scales and zeroes positions).
    weights = rng.uniform(0.1, 2.0, (batch, n_pos)) * (rng.random((batch, n_pos)) < 0.7)
    weights.flat[rng.integers(weights.size)] = 1.0
    weights /= weights.sum()

    loss, cache = layers.cross_entropy_forward(logits, targets, weights)
    dlogits, grads = layers.cross_entropy_backward(dloss, cache)
    assert grads == {}

    expected = -(np.take_along_axis(log_softmax(logits, axis=-1), targets[..., None], -1)[..., 0])
    assert loss == pytest.approx(float((expected * weights).sum()), rel=1e-12, abs=1e-14)

    def f(a):
        return dloss * layers.cross_entropy_forward(a["logits"], targets, weights)[0]

    checks = gradient_checks(f, {"logits": logits}, {"logits": dlogits}, rng, max_elements=200)
    assert_gradients_match(checks)
    assert np.all(dlogits[weights == 0] == 0), "an unscored position gets no gradient"
    np.testing.assert_allclose(dlogits.sum(axis=-1), 0, atol=1e-12 * abs(dloss))


# ---------------------------------------------------------------- transformer blocks


def block_configs() -> st.SearchStrategy[TransformerConfig]:
    """One-block configs of every variant (norms, rotary, grouped-query, gated, parallel)."""
    return configs(n_layers=1, vocab_size=4, n_ctx=6, d_mlp=st.integers(1, 16),
                   ln_eps=st.sampled_from([1e-5, 1e-2]))  # fmt: skip


def block_params(cfg: TransformerConfig, seed: int) -> dict[str, np.ndarray]:
    """Flat `part.name` parameters of block 0: O(1/sqrt(fan_in)) weights, non-zero biases."""
    prefix = "blocks.0."
    return {name[len(prefix) :]: value for name, value in generic_params(cfg, seed).items()
            if name.startswith(prefix)}  # fmt: skip


def nested(flat: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    parts: dict[str, dict[str, np.ndarray]] = {"ln1": {}, "attn": {}, "ln2": {}, "mlp": {}}
    for name, value in flat.items():
        part, short = name.split(".")
        parts[part][short] = value
    return parts


@given(cfg=block_configs(), seed=seeds, batch=batches, n_pos=positions)
def test_block_backward(cfg, seed, batch, n_pos):
    rng = np.random.default_rng(seed)
    flat = block_params(cfg, seed)
    rotary = None
    if cfg.pos_embed == "rotary":
        rotary = layers.rotary_table(n_pos, cfg.rotary_dims, cfg.rotary_base, cfg.dtype)
    arrays = {"x": rng.normal(rng.normal(), 1.5, (batch, n_pos, cfg.d_model)), **flat}
    dout = rng.standard_normal((batch, n_pos, cfg.d_model))

    def forward(a):
        params = nested({name: a[name] for name in flat})
        return transformer.block_forward(a["x"], params, cfg, layers.no_hook, 0, rotary)

    def forward_with_region(a):
        if cfg.act_fn != "relu":
            return forward(a)[0]
        seen = {}

        def record(name, value):
            seen[name] = value
            return value

        params = nested({name: a[name] for name in flat})
        out, _ = transformer.block_forward(a["x"], params, cfg, record, 0, rotary)
        return out, seen["blocks.0.mlp.hook_pre"] > 0  # ReLU: which units are active

    _, cache = forward(arrays)
    dx, grads = transformer.block_backward(dout, cache)
    flat_grads = {f"{part}.{name}": g for part, gs in grads.items() for name, g in gs.items()}
    assert set(flat_grads) == set(flat)

    f = vjp_scalar(forward_with_region, dout)
    checks = gradient_checks(f, arrays, {"x": dx, **flat_grads}, rng, max_elements=16)
    assert_gradients_match(checks)
    # Not vacuous: the input does receive a gradient (unless a post-LN over d <= 2 features,
    # whose output is +-1 whatever the input, makes the block all but constant).
    if cfg.norm == "pre" or cfg.d_model >= 3:
        assert np.linalg.norm(dx) > 1e-3 * np.linalg.norm(dout)
