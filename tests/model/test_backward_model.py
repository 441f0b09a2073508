"""Transformer.loss_and_grads against finite differences, and the properties its gradients obey.

The loss for finite differences is computed independently of `loss_and_grads`: logits from the
forward pass, then the masked mean of `-log_softmax(logits)[target]` with scipy. Weights are the
config's initialisation plus O(1/sqrt(fan_in)) Gaussian noise (biases non-zero, LayerNorm gains
!= 1), so that gradients are not tiny and no term hides behind a zero; the presets are also
checked at their own initial weights.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import assume, given, reject
from hypothesis import strategies as st
from scipy.special import log_softmax

from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer
from tests.model.gradcheck import KinkCrossed, assert_gradients_match, check_gradients
from tests.model.strategies import configs, seeds

# ---------------------------------------------------------------- strategies and helpers


def model_configs(**fixed) -> st.SearchStrategy[TransformerConfig]:
    """A small config of any variant with at least 2 positions; pin fields with kwargs."""
    return configs(min_ctx=2, **{"d_mlp": st.integers(1, 16), **fixed})


def generic_params(cfg: TransformerConfig, seed: int) -> dict[str, np.ndarray]:
    """The config's initial weights plus noise of the size a trained layer's weights would have."""
    params = Transformer(cfg, seed=seed).params
    rng = np.random.default_rng(seed + 1)
    noisy = {}
    for name, value in params.items():
        kind = name.rsplit(".", 1)[-1]
        if kind in ("W_E", "W_pos"):
            spread = 1.0
        elif kind in ("w", "b") or kind.startswith("b_"):  # LayerNorm gain, bias; linear biases
            spread = 0.3
        else:  # a [.., fan_in, fan_out] weight (W_O is [H, dh, d]: fan-in H*dh = d)
            fan_in = cfg.d_mlp if kind == "W_out" else cfg.d_model
            spread = 1 / np.sqrt(fan_in)
        noisy[name] = (value + spread * rng.standard_normal(value.shape)).astype(cfg.dtype)
    return noisy


@st.composite
def batches_for(draw, cfg: TransformerConfig, min_pos: int = 1):
    """(tokens, targets, loss_mask or None) for a config; the mask scores >= 1 position."""
    seed = draw(seeds)
    rng = np.random.default_rng(seed)
    batch = draw(st.integers(1, 3))
    n_pos = draw(st.integers(min(min_pos, cfg.n_ctx), min(cfg.n_ctx, 6)))
    tokens = rng.integers(0, cfg.vocab_size, (batch, n_pos))
    targets = rng.integers(0, cfg.vocab_size, (batch, n_pos))
    mask = None
    if draw(st.booleans()):
        mask = rng.random((batch, n_pos)) < 0.6
        mask.flat[rng.integers(mask.size)] = True
    return tokens, targets, mask


def cross_entropy(logits, targets, mask) -> float:
    """Mean over scored positions of -log softmax(logits)[target], via scipy."""
    logits = np.asarray(logits, dtype=np.float64)
    nll = -np.take_along_axis(log_softmax(logits, axis=-1), targets[..., None], -1)[..., 0]
    return float(nll.mean() if mask is None else nll[mask].mean())


def reference_loss(model: Transformer, tokens, targets, mask) -> float:
    return cross_entropy(model(tokens), targets, mask)


def with_params(model: Transformer, params: dict[str, np.ndarray]) -> Transformer:
    """The same model with other weights (shallow copy; faster than from_params's checks)."""
    other = copy.copy(model)
    other.params = params
    return other


def loss_function(cfg, tokens, targets, mask):
    """params -> loss, or (loss, sign pattern of every ReLU input) for ReLU models."""
    model = Transformer(cfg)

    def loss(params):
        if cfg.act_fn != "relu":
            return reference_loss(with_params(model, params), tokens, targets, mask)
        logits, cache = with_params(model, params).run_with_cache(
            tokens, names_filter=lambda name: name.endswith("mlp.hook_pre")
        )
        region = np.concatenate([(value > 0).ravel() for value in cache.values()])
        return cross_entropy(logits, targets, mask), region

    return loss


def visible_positions(mask, n_pos: int, causal: bool) -> np.ndarray:
    """[B,T] bool: the positions some scored position of the same sequence attends to.

    Sequences never mix; within one, a scored position sees every position, or with a causal
    mask only those up to itself.
    """
    scored = np.ones((1, n_pos), bool) if mask is None else np.asarray(mask)
    if not causal:
        return np.repeat(scored.any(axis=1, keepdims=True), n_pos, axis=1)
    # Position s is visible when some scored position p >= s: a reversed cumulative "or".
    return np.logical_or.accumulate(scored[:, ::-1], axis=1)[:, ::-1]


def always_has_gradient(cfg: TransformerConfig, name: str, tokens, mask) -> bool:
    """Whether a parameter's gradient is generically non-zero, whatever the weights.

    Exceptions: b_K never matters without rotary positions (it adds q.b_K to a whole row of
    scores, which softmax ignores; rotary turns it by each key's position); when the scored
    positions see a single position (one position, or causal and only position 0 scored) the
    only key takes all the attention, or (rotary) every sequence repeats one token, queries and
    keys do not matter; a ReLU MLP (or ReLU gate) may have no active unit on a small batch, which
    silences it and (pre-LN) the LayerNorm feeding it; LayerNorm over d_model <= 2 features
    outputs +-1 whatever its input, which makes all but the unembedding (almost) constant.
    """
    part, short = name.rsplit(".", 2)[-2:]
    visible = visible_positions(mask, tokens.shape[1], cfg.causal)
    one_key = not visible[:, 1:].any()
    # Under rotary positions the stream holds no position: a sequence of one repeated token has
    # the same value at every position, and then no pattern changes what attention returns.
    one_value = cfg.pos_embed == "rotary" and bool(np.all(tokens == tokens[:, :1]))
    if short == "b_K" or ((one_key or one_value) and short in ("W_Q", "W_K", "b_Q")):
        return False
    if cfg.act_fn == "relu" and (
        short in ("W_gate", "b_gate", "W_in", "b_in", "W_out")
        or (cfg.norm == "pre" and part == "ln2")
    ):
        return False
    return cfg.d_model >= 3 or part == "unembed"


def global_norm(grads: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values())))


def gradient_checks(cfg, params, tokens, targets, mask, grads, seed, **options):
    f = loss_function(cfg, tokens, targets, mask)
    rng = np.random.default_rng(seed)
    try:
        return check_gradients(f, params, grads, rng, **options)
    except KinkCrossed:
        reject()


# ---------------------------------------------------------------- finite differences


@given(data=st.data(), cfg=model_configs(), seed=seeds)
def test_model_gradients_match_finite_differences(data, cfg, seed):
    tokens, targets, mask = data.draw(batches_for(cfg))
    params = generic_params(cfg, seed)
    model = Transformer.from_params(cfg, params)
    loss, grads = model.loss_and_grads(tokens, targets, mask)

    assert list(grads) == list(params)
    for name, grad in grads.items():
        assert (grad.shape, grad.dtype) == (params[name].shape, np.float64), name
    assert loss == pytest.approx(reference_loss(model, tokens, targets, mask), rel=1e-12)
    checks = gradient_checks(cfg, params, tokens, targets, mask, grads, seed, max_elements=8)
    assert_gradients_match(checks)
    for name, grad in grads.items():
        if always_has_gradient(cfg, name, tokens, mask):
            assert np.linalg.norm(grad) > 1e-8, f"{name}: gradient vanishes, the check is vacuous"
    for name in (n for n in grads if n.endswith("b_K") and cfg.pos_embed != "rotary"):
        assert np.abs(grads[name]).max() <= 1e-12 * max(1.0, global_norm(grads)), name


PRESETS = ("seed-minigpt", "tiny-mha", "gpt2-style", "gpt2-small")


def shrunk_preset(name: str) -> TransformerConfig:
    """A preset at test size: same architecture and init, d_model <= 16, d_mlp <= 32, n_ctx <= 8,
    vocab <= 16, <= 2 layers of <= 4 heads, in float64 (finite differences need it)."""
    cfg = TransformerConfig.preset(name)
    return cfg.replace(
        d_model=min(cfg.d_model, 16), d_mlp=min(cfg.d_mlp, 32), n_ctx=min(cfg.n_ctx, 8),
        vocab_size=min(cfg.vocab_size, 16), n_layers=min(cfg.n_layers, 2),
        n_heads=min(cfg.n_heads, 4), dtype="float64",
    )  # fmt: skip


@pytest.mark.parametrize("weights", ["init", "perturbed"])
@pytest.mark.parametrize("preset", PRESETS)
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_preset_gradients_match_finite_differences(preset, weights, data, seed):
    cfg = shrunk_preset(preset)
    tokens, targets, mask = data.draw(batches_for(cfg))
    params = Transformer(cfg, seed).params if weights == "init" else generic_params(cfg, seed)
    _, grads = Transformer.from_params(cfg, params).loss_and_grads(tokens, targets, mask)

    assert list(grads) == list(params)
    assert all(grads[name].shape == params[name].shape for name in params)
    checks = gradient_checks(cfg, params, tokens, targets, mask, grads, seed, max_elements=4)
    assert_gradients_match(checks)
    for name in ("embed.W_E", "unembed.W_U", "blocks.0.mlp.W_out", "blocks.0.mlp.W_in"):
        assert np.linalg.norm(grads[name]) > 1e-6, name


# ---------------------------------------------------------------- gradient properties


@given(data=st.data(), cfg=model_configs(pos_embed="learned"), seed=seeds)
def test_parameters_the_loss_cannot_see_get_exactly_zero_gradient(data, cfg, seed):
    """W_E rows of tokens no scored position sees, and W_pos rows no one sees, get exactly 0."""
    tokens, targets, mask = data.draw(batches_for(cfg))
    rng = np.random.default_rng(seed)
    used = rng.permutation(cfg.vocab_size)[: max(1, cfg.vocab_size // 2)]
    tokens = used[tokens % len(used)]  # half of the vocabulary never appears
    params = generic_params(cfg, seed)
    _, grads = Transformer.from_params(cfg, params).loss_and_grads(tokens, targets, mask)

    visible = visible_positions(mask, tokens.shape[1], cfg.causal)
    visible = np.broadcast_to(visible, tokens.shape)
    seen = np.unique(tokens[visible])
    unseen = np.setdiff1d(np.arange(cfg.vocab_size), seen)
    assert np.all(grads["embed.W_E"][unseen] == 0)
    seen_positions = np.flatnonzero(visible.any(axis=0))
    assert np.all(grads["pos_embed.W_pos"][seen_positions.max() + 1 :] == 0)
    if cfg.d_model >= 3:  # (LayerNorm over 2 features is +-1, blind to its input)
        assert np.all(np.linalg.norm(grads["embed.W_E"][seen], axis=1) > 0)
        assert np.all(np.linalg.norm(grads["pos_embed.W_pos"][seen_positions], axis=1) > 0)


@given(data=st.data(), cfg=model_configs(causal=True), seed=seeds)
def test_causal_loss_at_position_t_ignores_later_tokens(data, cfg, seed):
    """Scoring only position t: tokens after t change nothing, and reach no parameter.

    With causal attention, position t's logits depend on tokens 0..t of its own sequence only.
    So changing any later token leaves the loss bit-for-bit unchanged and every gradient
    unchanged up to rounding (W_E's rows are sums over positions, and where the exact zeros of
    the later positions fall may regroup a pairwise or SIMD sum: a few ulps); the rows of W_E
    of tokens seen only after t (or only in unscored sequences) and the rows of W_pos after t
    get exactly zero; tokens the scored positions do see get a non-zero gradient.
    """
    tokens, targets, _ = data.draw(batches_for(cfg, min_pos=2))
    batch, n_pos = tokens.shape
    assume(n_pos >= 2)
    t = data.draw(st.integers(0, n_pos - 2), label="t")
    scored_rows = data.draw(
        st.lists(st.integers(0, batch - 1), min_size=1, unique=True), label="rows"
    )
    mask = np.zeros(tokens.shape, dtype=bool)
    mask[scored_rows, t] = True
    rng = np.random.default_rng(seed)
    later = tokens.copy()
    later[:, t + 1 :] = rng.integers(0, cfg.vocab_size, (batch, n_pos - t - 1))
    model = Transformer.from_params(cfg, generic_params(cfg, seed))

    loss, grads = model.loss_and_grads(tokens, targets, mask)
    later_loss, later_grads = model.loss_and_grads(later, targets, mask)
    assert later_loss == loss
    for name, grad in grads.items():
        ulps = 1e-13 * np.abs(grad).max()
        np.testing.assert_allclose(later_grads[name], grad, rtol=1e-12, atol=ulps, err_msg=name)

    seen = np.unique(tokens[scored_rows, : t + 1])
    unseen = np.setdiff1d(np.arange(cfg.vocab_size), seen)
    assert np.all(grads["embed.W_E"][unseen] == 0)
    if cfg.pos_embed == "learned":
        assert np.all(grads["pos_embed.W_pos"][t + 1 :] == 0)
    if cfg.d_model >= 3:  # (LayerNorm over 2 features is +-1, blind to its input)
        assert np.all(np.linalg.norm(grads["embed.W_E"][seen], axis=1) > 0)
        if cfg.pos_embed == "learned":
            assert np.all(np.linalg.norm(grads["pos_embed.W_pos"][: t + 1], axis=1) > 0)


@given(data=st.data(), cfg=model_configs(causal=False), seed=seeds)
def test_non_causal_loss_at_position_t_sees_later_tokens(data, cfg, seed):
    """The contrast that keeps the causal test honest: without the mask later tokens matter."""
    tokens, targets, _ = data.draw(batches_for(cfg, min_pos=2))
    n_pos = tokens.shape[1]
    assume(n_pos >= 2)
    t = data.draw(st.integers(0, n_pos - 2), label="t")
    mask = np.zeros(tokens.shape, dtype=bool)
    mask[:, t] = True
    later = tokens.copy()
    later[:, t + 1 :] = (later[:, t + 1 :] + 1) % cfg.vocab_size
    model = Transformer.from_params(cfg, generic_params(cfg, seed))

    _, grads = model.loss_and_grads(tokens, targets, mask)
    _, later_grads = model.loss_and_grads(later, targets, mask)
    assert not all(np.array_equal(later_grads[name], grads[name]) for name in grads)
    if cfg.d_model >= 3:  # (LayerNorm over 2 features is +-1, blind to its input)
        only_later = np.setdiff1d(tokens[:, t + 1 :], tokens[:, : t + 1])
        assert np.all(np.linalg.norm(grads["embed.W_E"][only_later], axis=1) > 0)


@given(data=st.data(), cfg=model_configs(), seed=seeds)
def test_small_step_against_the_gradient_lowers_the_loss(data, cfg, seed):
    """loss(theta - h g/|g|) = loss(theta) - h |g| + O(h²): lower, and by about h |g|."""
    tokens, targets, mask = data.draw(batches_for(cfg))
    params = generic_params(cfg, seed)
    loss, grads = Transformer.from_params(cfg, params).loss_and_grads(tokens, targets, mask)
    norm = global_norm(grads)
    assert norm > 1e-6, "the loss of a generic model is not flat"

    f = loss_function(cfg, tokens, targets, mask)
    region = f(params)[1] if cfg.act_fn == "relu" else None
    for step in (1e-3, 1e-5):
        stepped = {name: params[name] - step / norm * grads[name] for name in params}
        stepped_loss = f(stepped)
        if region is not None:
            stepped_loss, stepped_region = stepped_loss
            if not np.array_equal(stepped_region, region):
                reject()  # the step crosses a ReLU kink: the first-order prediction fails
        assert stepped_loss < loss, f"step {step}"
    # With the smallest step the second-order term is negligible: the decrease is h |g|.
    assert (loss - stepped_loss) / (step * norm) == pytest.approx(1.0, rel=0.02)


@given(data=st.data(), cfg=model_configs(), seed=seeds)
def test_unscored_positions_contribute_nothing(data, cfg, seed):
    tokens, targets, _ = data.draw(batches_for(cfg, min_pos=2))
    assume(tokens.size >= 2)
    rng = np.random.default_rng(seed)
    mask = rng.random(tokens.shape) < 0.5
    mask.flat[0], mask.flat[-1] = True, False
    other_targets = np.where(mask, targets, (targets + 1) % cfg.vocab_size)
    model = Transformer.from_params(cfg, generic_params(cfg, seed))

    loss, grads = model.loss_and_grads(tokens, targets, mask)
    other_loss, other_grads = model.loss_and_grads(tokens, other_targets, mask)
    assert other_loss == loss
    for name in grads:
        np.testing.assert_array_equal(other_grads[name], grads[name], err_msg=name)


@given(data=st.data(), cfg=model_configs(), seed=seeds)
def test_loss_is_the_mean_cross_entropy_over_scored_positions(data, cfg, seed):
    tokens, targets, mask = data.draw(batches_for(cfg))
    model = Transformer.from_params(cfg, generic_params(cfg, seed))
    logits = model(tokens)
    scored = np.ones(tokens.shape, dtype=bool) if mask is None else mask
    per_position = [
        -log_softmax(logits[b, p])[targets[b, p]] for b, p in zip(*np.nonzero(scored), strict=True)
    ]

    loss, grads = model.loss_and_grads(tokens, targets, mask)
    assert isinstance(loss, float)
    assert loss == pytest.approx(np.mean(per_position), rel=1e-12)
    # No mask and an all-True mask are the same loss, the same gradients.
    all_loss, all_grads = model.loss_and_grads(tokens, targets, np.ones(tokens.shape, bool))
    none_loss, none_grads = model.loss_and_grads(tokens, targets)
    assert all_loss == pytest.approx(none_loss, rel=1e-14)
    for name in grads:
        np.testing.assert_allclose(all_grads[name], none_grads[name], rtol=1e-12, atol=1e-15)


@given(data=st.data(), cfg=model_configs(), seed=seeds)
def test_float32_gradients_agree_with_float64(data, cfg, seed):
    tokens, targets, mask = data.draw(batches_for(cfg))
    params = generic_params(cfg, seed)
    loss64, grads64 = Transformer.from_params(cfg, params).loss_and_grads(tokens, targets, mask)
    cfg32 = cfg.replace(dtype="float32")
    model32 = Transformer.from_params(cfg32, params)
    loss32, grads32 = model32.loss_and_grads(tokens, targets, mask)

    assert list(grads32) == list(grads64)
    assert loss32 == pytest.approx(loss64, rel=1e-4, abs=1e-5)
    scale = global_norm(grads64)
    for name in grads64:
        assert grads32[name].dtype == np.float32, name
        diff = np.linalg.norm(grads32[name] - grads64[name])
        assert diff <= 1e-3 * np.linalg.norm(grads64[name]) + 1e-4 * scale, name


@given(data=st.data(), cfg=model_configs(), seed=seeds)
def test_loss_and_grads_leaves_params_unchanged(data, cfg, seed):
    tokens, targets, mask = data.draw(batches_for(cfg))
    model = Transformer.from_params(cfg, generic_params(cfg, seed))
    before = {name: value.copy() for name, value in model.params.items()}
    _, grads = model.loss_and_grads(tokens, targets, mask)

    assert list(model.params) == list(before)
    for name, value in model.params.items():
        assert value.dtype == before[name].dtype
        np.testing.assert_array_equal(value, before[name], err_msg=name)
        assert not np.shares_memory(grads[name], value), name


def small_model() -> Transformer:
    return Transformer(TransformerConfig.preset("tiny-mha").replace(n_ctx=4), seed=0)


TOKENS = np.array([[1, 2, 3], [4, 5, 6]])
GOOD_TARGETS = np.array([[2, 3, 4], [5, 6, 7]])
BAD_CALLS = {
    "targets of the wrong shape": (ValueError, GOOD_TARGETS[:, :2], None),
    "targets 1-D": (ValueError, GOOD_TARGETS.ravel(), None),
    "float targets": (TypeError, GOOD_TARGETS.astype(float), None),
    "bool targets": (TypeError, GOOD_TARGETS > 3, None),
    "negative target": (ValueError, GOOD_TARGETS - 3, None),
    "target == vocab_size": (ValueError, GOOD_TARGETS + 3, None),
    "mask of the wrong shape": (ValueError, GOOD_TARGETS, np.ones((2, 2), bool)),
    "float mask": (TypeError, GOOD_TARGETS, np.ones((2, 3))),
    "int mask": (TypeError, GOOD_TARGETS, np.ones((2, 3), int)),
    "all-False mask": (ValueError, GOOD_TARGETS, np.zeros((2, 3), bool)),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_targets_or_mask_raise(case):
    error, targets, mask = BAD_CALLS[case]
    with pytest.raises(error):
        small_model().loss_and_grads(TOKENS, targets, mask)


def test_good_call_on_the_bad_calls_model_works():
    """The model behind the bad calls accepts the good ones (the errors come from the inputs)."""
    loss, grads = small_model().loss_and_grads(TOKENS, GOOD_TARGETS, np.ones((2, 3), bool))
    assert np.isfinite(loss)
    assert set(grads) == set(small_model().params)
