"""Hooks and the activation cache: what a hook sees, what it changes, and that it goes away.

The cache is checked against itself: each activation is recomputed from the cached activations
before it and the parameters (resid_mid = resid_pre + attn_out, pattern = softmax(scores), ...),
so a cache holding a stale, mutated or pre-hook value shows up.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mechclaims.model import transformer
from mechclaims.model.config import PRESETS, TransformerConfig
from mechclaims.model.hooks import HookDispatcher
from mechclaims.model.transformer import Transformer
from tests.model.reference import (
    ACTIVATIONS,
    assert_close,
    reference_forward,
    reference_layer_norm,
    reference_rms_norm,
    reference_rotary,
    reference_sinusoidal,
    reference_softmax,
)
from tests.model.strategies import configs, generic_params, models_and_tokens, tokens_for

PAIR_HOOKS = ("hook_attn_scores", "hook_pattern")
# PLAIN_CALL_ROUNDING: exact comparisons (rtol=0) compare calls that take the same path. Without
# hooks or a cache, model(tokens) runs with no dispatcher, and parameter-free attention then
# hands one array to q and k (with a dispatcher, each gets its own copy, which a hook may edit):
# NumPy's matmul takes BLAS's syrk for x xᵀ of one array, which rounds unlike gemm, so the two
# paths may differ in the last bit. (test_forward_math checks both against the reference.)


class HookError(Exception):
    """Raised by a test hook to abandon a forward pass half-way."""


def _norm(cache, params, prefix, cfg, value):
    """The norm `prefix` of `value` as the reference computes it, its divisor checked against
    the cache's hook_scale."""
    seen = {}

    def keep(scale):
        seen["scale"] = scale
        return scale

    w, b = params.get(f"{prefix}.w"), params.get(f"{prefix}.b")
    if cfg.normalization == "rmsnorm":
        out = reference_rms_norm(value, w, cfg.ln_eps, keep)
    else:
        out = reference_layer_norm(value, w, b, cfg.ln_eps, keep)
    assert_close(cache[f"{prefix}.hook_scale"], seen["scale"], err_msg=f"{prefix}.hook_scale")
    assert_close(cache[f"{prefix}.hook_normalized"], out, err_msg=f"{prefix}.hook_normalized")
    return cache[f"{prefix}.hook_normalized"]


def _rotated(x, cfg):
    """Rotary positions of [B,T,H,dh], sequence by sequence (the reference's)."""
    return np.stack([reference_rotary(row, cfg.rotary_dims, cfg.rotary_base) for row in x])


def _attention_from_cache(get, params, block, cfg, attn_in, n_pos):
    """Check q, k, v from the attention input, then scores, pattern, z and the output from the
    cached q, k, v (rotated, when rotary); returns hook_attn_out."""
    if cfg.attention == "standard":
        for short in ("q", "k", "v"):
            W = params[f"{block}.attn.W_{short.upper()}"]
            b = params.get(f"{block}.attn.b_{short.upper()}", 0.0)
            assert_close(get(f"attn.hook_{short}"),
                         np.einsum("btd,hde->bthe", attn_in, W) + b, err_msg=short)  # fmt: skip
        scale = 1 / np.sqrt(cfg.d_head)
    else:
        for short in ("q", "k", "v"):
            assert_close(get(f"attn.hook_{short}"), attn_in[:, :, None, :], err_msg=short)
        scale = 1.0
    q, k = get("attn.hook_q"), get("attn.hook_k")
    if cfg.pos_embed == "rotary":
        assert_close(get("attn.hook_rot_q"), _rotated(q, cfg), err_msg="rot_q")
        assert_close(get("attn.hook_rot_k"), _rotated(k, cfg), err_msg="rot_k")
        q, k = get("attn.hook_rot_q"), get("attn.hook_rot_k")
    group = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, group, axis=2), np.repeat(get("attn.hook_v"), group, axis=2)
    scores = scale * np.einsum("bqhe,bkhe->bhqk", q, k)
    if cfg.causal:
        scores[..., np.triu_indices(n_pos, k=1)[0], np.triu_indices(n_pos, k=1)[1]] = -np.inf
    assert_close(get("attn.hook_attn_scores"), scores, err_msg="scores")
    assert_close(get("attn.hook_pattern"), reference_softmax(get("attn.hook_attn_scores")))
    z = np.einsum("bhqk,bkhe->bqhe", get("attn.hook_pattern"), v)
    assert_close(get("attn.hook_z"), z, err_msg="z")
    if cfg.attention == "standard":
        attn_out = np.einsum("bqhe,hed->bqd", get("attn.hook_z"), params[f"{block}.attn.W_O"])
        attn_out = attn_out + params.get(f"{block}.attn.b_O", 0.0)
    else:
        attn_out = get("attn.hook_z")[:, :, 0, :]
    assert_close(get("hook_attn_out"), attn_out, err_msg="attn_out")
    return get("hook_attn_out")


def _mlp_from_cache(get, params, block, cfg, mlp_in):
    """Check the MLP's hooks from its input, each from the one before; returns hook_mlp_out."""
    mlp = {short: params.get(f"{block}.mlp.{short}", 0.0)
           for short in ("W_gate", "b_gate", "W_in", "b_in", "W_out", "b_out")}  # fmt: skip
    first = "gate" if cfg.gated_mlp else "in"
    assert_close(get("mlp.hook_pre"), mlp_in @ mlp[f"W_{first}"] + mlp[f"b_{first}"])
    post = ACTIVATIONS[cfg.act_fn](get("mlp.hook_pre"))
    if cfg.gated_mlp:
        assert_close(get("mlp.hook_pre_linear"), mlp_in @ mlp["W_in"] + mlp["b_in"])
        post = post * get("mlp.hook_pre_linear")
    assert_close(get("mlp.hook_post"), post, err_msg="post")
    assert_close(get("hook_mlp_out"), get("mlp.hook_post") @ mlp["W_out"] + mlp["b_out"])
    return get("hook_mlp_out")


# ---------------------------------------------------------------- the cache explains itself


# One run per block layout, so each draws its own examples of the other variants.
@pytest.mark.parametrize("layout", ["pre", "post", "parallel"])
@pytest.mark.parametrize("attention", ["standard", "parameter-free"])
@given(data=st.data())
def test_cache_entries_recompute_from_earlier_entries(layout, attention, data):
    norm, parallel = ("pre", True) if layout == "parallel" else (layout, False)
    cfg = configs(norm=norm, attention=attention, parallel_attn_mlp=parallel)
    model, tokens = data.draw(models_and_tokens(cfg))
    cfg, params = model.cfg, model.params
    logits, cache = model.run_with_cache(tokens)
    n_pos = tokens.shape[1]
    assert_close(cache["hook_embed"], params["embed.W_E"][tokens])
    resid = cache["hook_embed"]
    if cfg.pos_embed != "rotary":
        positions = (
            params["pos_embed.W_pos"][:n_pos]
            if cfg.pos_embed == "learned"
            else reference_sinusoidal(n_pos, cfg.d_model)
        )
        assert_close(cache["hook_pos_embed"], np.broadcast_to(positions, resid.shape))
        resid = resid + cache["hook_pos_embed"]
    for layer in range(cfg.n_layers):
        block = f"blocks.{layer}"

        def get(name, block=block):
            return cache[f"{block}.{name}"]

        def norm_of(part, value, block=block):
            return _norm(cache, params, f"{block}.{part}", cfg, value)

        assert_close(get("hook_resid_pre"), resid, err_msg=f"{block}.hook_resid_pre")
        resid_pre = get("hook_resid_pre")
        if cfg.parallel_attn_mlp:
            attn_out = _attention_from_cache(get, params, block, cfg, norm_of("ln1", resid_pre),
                                             n_pos)  # fmt: skip
            mlp_out = _mlp_from_cache(get, params, block, cfg, norm_of("ln2", resid_pre))
            assert_close(get("hook_resid_post"), resid_pre + attn_out + mlp_out)
        elif cfg.norm == "pre":
            attn_out = _attention_from_cache(get, params, block, cfg, norm_of("ln1", resid_pre),
                                             n_pos)  # fmt: skip
            assert_close(get("hook_resid_mid"), resid_pre + attn_out, err_msg="resid_mid")
            mlp_out = _mlp_from_cache(get, params, block, cfg,
                                      norm_of("ln2", get("hook_resid_mid")))  # fmt: skip
            assert_close(get("hook_resid_post"), get("hook_resid_mid") + mlp_out)
        else:
            attn_out = _attention_from_cache(get, params, block, cfg, resid_pre, n_pos)
            assert_close(get("hook_resid_mid"), norm_of("ln1", resid_pre + attn_out))
            mlp_out = _mlp_from_cache(get, params, block, cfg, get("hook_resid_mid"))
            assert_close(get("hook_resid_post"), norm_of("ln2", get("hook_resid_mid") + mlp_out))
        resid = get("hook_resid_post")
    if cfg.final_ln:
        resid = _norm(cache, params, "ln_final", cfg, resid)
    expected_logits = resid @ params["unembed.W_U"] + params.get("unembed.b_U", 0.0)
    assert_close(logits, expected_logits, err_msg="logits")


@given(models_and_tokens(), st.data())
def test_cache_is_fresh_on_every_call(model_and_tokens, data):
    """A second call caches the second input's values, and only what its filter asks for."""
    model, tokens = model_and_tokens
    other = data.draw(tokens_for(model.cfg), label="other")
    model.run_with_cache(tokens)
    logits, cache = model.run_with_cache(other)
    fresh = Transformer.from_params(model.cfg, model.params)
    fresh_logits, fresh_cache = fresh.run_with_cache(other)
    assert_close(logits, fresh_logits)
    assert set(cache) == set(fresh_cache)
    for name in cache:
        assert_close(cache[name], fresh_cache[name], err_msg=name)
    _, narrow = model.run_with_cache(tokens, names_filter="hook_embed")
    assert set(narrow) == {"hook_embed"}


# ---------------------------------------------------------------- names and filters


@given(models_and_tokens(), st.data())
def test_names_filter_returns_exactly_the_requested_keys(model_and_tokens, data):
    model, tokens = model_and_tokens
    names = model.hook_names()
    logits, full = model.run_with_cache(tokens)
    # None: every hook point. (Compared as sets: hook_names() does not list pre-LN's
    # ln1/ln2.hook_normalized in the order the forward pass reaches them.)
    assert set(full) == set(names)
    assert len(set(names)) == len(names)
    one = data.draw(st.sampled_from(names), label="one")
    _, cache = model.run_with_cache(tokens, names_filter=one)
    assert set(cache) == {one}
    assert_close(cache[one], full[one])
    some = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True), label="some")
    _, cache = model.run_with_cache(tokens, names_filter=some)
    assert set(cache) == set(some)
    for name in some:
        assert_close(cache[name], full[name], err_msg=name)
    suffix = data.draw(st.sampled_from(["hook_pattern", "hook_resid_post", "mlp.hook_pre"]))
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith(suffix))
    assert set(cache) == {name for name in names if name.endswith(suffix)}
    _, cache = model.run_with_cache(tokens, names_filter=[])
    assert cache == {}
    assert_close(logits, model(tokens))


@given(configs())
def test_hook_names_match_the_documented_list(cfg):
    names = Transformer(cfg).hook_names()
    expected = {"hook_embed"} if cfg.pos_embed == "rotary" else {"hook_embed", "hook_pos_embed"}
    for layer in range(cfg.n_layers):
        block = f"blocks.{layer}"
        expected |= {f"{block}.{short}" for short in (
            "hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post",
            "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_attn_scores",
            "attn.hook_pattern", "attn.hook_z", "mlp.hook_pre", "mlp.hook_post",
            "ln1.hook_scale", "ln1.hook_normalized", "ln2.hook_scale", "ln2.hook_normalized",
        )}  # fmt: skip
        if not cfg.parallel_attn_mlp:
            expected.add(f"{block}.hook_resid_mid")
        if cfg.pos_embed == "rotary":
            expected |= {f"{block}.attn.hook_rot_q", f"{block}.attn.hook_rot_k"}
        if cfg.gated_mlp:
            expected.add(f"{block}.mlp.hook_pre_linear")
    if cfg.final_ln:
        expected |= {"ln_final.hook_scale", "ln_final.hook_normalized"}
    assert set(names) == expected


@given(models_and_tokens())
def test_hook_names_come_in_the_order_the_forward_pass_reaches_them(model_and_tokens):
    model, tokens = model_and_tokens
    reached = []
    with model.hooks(
        [(name, lambda value, name: reached.append(name)) for name in model.hook_names()]
    ):
        model(tokens)
    assert reached == model.hook_names()


@pytest.mark.parametrize(
    ("typo", "near"),
    [
        ("blocks.0.attn.hook_patern", "blocks.0.attn.hook_pattern"),
        ("blocks.1.hook_mlp_ot", "blocks.1.hook_mlp_out"),
        ("hook_embedding", "hook_embed"),
        ("blocks.0.hook_resid_postt", "blocks.0.hook_resid_post"),
    ],
)
def test_unknown_hook_names_raise_with_near_matches(typo, near):
    model = Transformer(TransformerConfig.preset("gpt2-style"))
    tokens = np.array([[1, 2, 3]])
    with pytest.raises(ValueError, match="unknown hook name") as excinfo:
        model.run_with_hooks(tokens, fwd_hooks=[(typo, lambda act, name: None)])
    assert near in str(excinfo.value)
    assert typo in str(excinfo.value)
    with pytest.raises(ValueError, match="unknown hook name") as excinfo:
        model.run_with_cache(tokens, names_filter=[typo])
    assert near in str(excinfo.value)
    with pytest.raises(ValueError, match="unknown hook name"):
        model.run_with_cache(tokens, names_filter=typo)
    assert model._hooks == {}


# ---------------------------------------------------------------- what hooks see and change


@given(models_and_tokens())
def test_hooks_see_documented_shapes_and_their_name(model_and_tokens):
    model, tokens = model_and_tokens
    cfg = model.cfg
    B, T = tokens.shape
    H, dh, d, M = cfg.n_heads, cfg.d_head, cfg.d_model, cfg.d_mlp
    seen = {}

    def look(activation, hook_name):
        seen[hook_name] = activation.shape

    model.run_with_hooks(tokens, fwd_hooks=[(name, look) for name in model.hook_names()])
    assert set(seen) == set(model.hook_names())
    for name, shape in seen.items():
        if name.endswith(("hook_q", "hook_rot_q", "hook_z")):
            assert shape == (B, T, H, dh), name
        elif name.endswith(("hook_k", "hook_v", "hook_rot_k")):
            assert shape == (B, T, cfg.n_kv_heads, dh), name
        elif name.endswith(PAIR_HOOKS):
            assert shape == (B, H, T, T), name
        elif name.endswith(("mlp.hook_pre", "mlp.hook_pre_linear", "mlp.hook_post")):
            assert shape == (B, T, M), name
        elif name.endswith("hook_scale"):
            assert shape == (B, T, 1), name
        else:
            assert shape == (B, T, d), name


@given(models_and_tokens(), st.booleans())
def test_identity_hooks_change_nothing(model_and_tokens, return_it):
    model, tokens = model_and_tokens
    logits, cache = model.run_with_cache(tokens)

    def identity(activation, hook_name):
        return activation.copy() if return_it else None

    hooks = [(name, identity) for name in model.hook_names()]
    assert_close(model.run_with_hooks(tokens, fwd_hooks=hooks), logits, rtol=0)
    with model.hooks(hooks):
        hooked_logits, hooked_cache = model.run_with_cache(tokens)
    assert_close(hooked_logits, logits, rtol=0)
    for name in cache:
        assert_close(hooked_cache[name], cache[name], rtol=0, err_msg=name)


def _unchanged_before(cache, new_cache, target):
    """Every activation the forward pass reached before `target` (the cache is in that order)."""
    names = list(cache)
    for name in names[: names.index(target)]:
        assert_close(new_cache[name], cache[name], rtol=0, err_msg=name)


# d_model >= 3: a LayerNorm of 2 numbers is saturated (±1), so a change may not reach the logits;
# mlp_bias: b_out keeps mlp_out non-zero (without it a ReLU MLP's output may be exactly 0).
@given(models_and_tokens(configs(d_model=st.integers(3, 16), mlp_bias=True), generic=True),
       st.data())  # fmt: skip
def test_zero_ablating_mlp_out_changes_exactly_what_follows(model_and_tokens, data):
    model, tokens = model_and_tokens
    layer = data.draw(st.integers(0, model.cfg.n_layers - 1), label="layer")
    target = f"blocks.{layer}.hook_mlp_out"
    logits, cache = model.run_with_cache(tokens)
    with model.hooks([(target, lambda activation, hook_name: np.zeros_like(activation))]):
        new_logits, new_cache = model.run_with_cache(tokens)
    _unchanged_before(cache, new_cache, target)  # earlier blocks, and this block's attn
    assert np.all(new_cache[target] == 0)  # the cache holds what the hook returned
    resid_post = f"blocks.{layer}.hook_resid_post"
    if model.cfg.parallel_attn_mlp:
        resid_mid = cache[f"blocks.{layer}.hook_resid_pre"] + cache[f"blocks.{layer}.hook_attn_out"]
        assert_close(new_cache[resid_post], resid_mid)
    elif model.cfg.norm == "pre":
        assert_close(new_cache[resid_post], cache[f"blocks.{layer}.hook_resid_mid"], rtol=0)
    assert np.abs(new_cache[resid_post] - cache[resid_post]).max(axis=-1).min() > 1e-12
    assert np.abs(new_logits - logits).max(axis=-1).min() > 1e-12


# Positions in the residual stream: under rotary, values carry no position, so equal tokens have
# equal values and a re-weighted pattern row may leave z where it was.
PLACED = st.sampled_from(["learned", "sinusoidal"])


@given(
    models_and_tokens(configs(d_model=st.integers(3, 16), min_ctx=2, pos_embed=PLACED),
                      generic=True, min_pos=2),
    st.data(),
)  # fmt: skip
def test_patching_one_pattern_row_changes_only_what_reads_it(model_and_tokens, data):
    """Row t of a layer's pattern set to one-hot on key 0: in that layer only position t moves;
    under the causal mask, positions before t never move, in any later layer either."""
    model, tokens = model_and_tokens
    cfg = model.cfg
    layer = data.draw(st.integers(0, cfg.n_layers - 1), label="layer")
    t = data.draw(st.integers(1, tokens.shape[1] - 1), label="t")
    target = f"blocks.{layer}.attn.hook_pattern"

    def patch(pattern, hook_name):
        assert hook_name == target
        pattern = pattern.copy()
        pattern[:, :, t, :] = 0.0
        pattern[:, :, t, 0] = 1.0
        return pattern

    logits, cache = model.run_with_cache(tokens)
    with model.hooks([(target, patch)]):
        new_logits, new_cache = model.run_with_cache(tokens)
    _unchanged_before(cache, new_cache, target)
    names = list(cache)  # forward order
    others = [p for p in range(tokens.shape[1]) if p != t]
    z = f"blocks.{layer}.attn.hook_z"
    assert np.abs(new_cache[z][:, t] - cache[z][:, t]).max(axis=(-2, -1)).min() > 1e-12
    block_end = names.index(f"blocks.{layer}.hook_resid_post")
    for name in names[names.index(target) : block_end + 1]:
        if name.endswith(PAIR_HOOKS):
            assert_close(new_cache[name][:, :, others], cache[name][:, :, others], err_msg=name)
        else:
            assert_close(new_cache[name][:, others], cache[name][:, others], err_msg=name)
    if cfg.causal:
        for name in names[block_end:]:
            if name.endswith(PAIR_HOOKS):
                assert_close(new_cache[name][:, :, :t, :t], cache[name][:, :, :t, :t])
            else:
                assert_close(new_cache[name][:, :t], cache[name][:, :t], err_msg=name)
        assert_close(new_logits[:, :t], logits[:, :t])
    assert np.abs(new_logits[:, t] - logits[:, t]).max(axis=-1).min() > 1e-12


# ---------------------------------------------------------------- every hook point honours a hook


class IgnoresReplacementAt(HookDispatcher):
    """A dispatcher whose forward pass ignores what the hook at `target` returns: the mutant a
    test of hook replacement must catch."""

    def __init__(self, hooks, keep, target: str):
        super().__init__(hooks, keep)
        self.target = target

    def __call__(self, name: str, value: np.ndarray) -> np.ndarray:
        replaced = super().__call__(name, value)
        return value if name == self.target else replaced


def replacement_model(preset: str) -> Transformer:
    """The preset with generic weights in float64; the real-sized ones (gpt2-small, pythia-70m,
    llama2c-stories15m) at toy widths but with all their blocks and every architectural choice,
    so every one of their hook names."""
    cfg = TransformerConfig.preset(preset).replace(dtype="float64")
    if cfg.vocab_size > 100:
        rotary = {"rotary_dim": 2} if cfg.rotary_dim else {}
        cfg = cfg.replace(vocab_size=11, d_model=16, n_heads=4, d_mlp=32, n_ctx=8, **rotary)
    return Transformer.from_params(cfg, generic_params(cfg, seed=7))


def _run_with_replacement(model, tokens, target, delta, names):
    """Logits, and what a recording hook at every other point saw, with `target` += delta."""
    seen = {}

    def replace(activation, hook_name):
        return activation + delta  # a new array: only the return value carries the change

    def record(activation, hook_name):
        seen[hook_name] = activation.copy()

    others = [(name, record) for name in names if name != target]
    with model.hooks([(target, replace), *others]):
        logits = model(tokens)
    return logits, seen


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_hook_point_honours_a_hook_that_replaces_its_value(preset):
    """At each hook point in turn, a hook returns the activation plus a random perturbation.
    The logits and what recording hooks see at every other point must equal the naive
    reference computed with the same perturbation at that point (the reference shares no
    code with the model). Not vacuous: a forward that ignored this hook's return value (the
    mutant dispatcher) must fail the same comparison."""
    model = replacement_model(preset)
    rng = np.random.default_rng(11)
    tokens = rng.integers(0, model.cfg.vocab_size, (2, 4))
    names = model.hook_names()
    _, cache = model.run_with_cache(tokens)
    for target in names:
        delta = 0.5 * rng.standard_normal(cache[target].shape)
        expected_logits, expected = reference_forward(
            model.cfg, model.params, tokens, added={target: delta}
        )
        logits, seen = _run_with_replacement(model, tokens, target, delta, names)
        assert_close(logits, expected_logits, err_msg=f"logits, {target} replaced")
        for name in names[names.index(target) + 1 :]:  # (those before: see _unchanged_before)
            assert_close(seen[name], expected[name], err_msg=f"{name}, {target} replaced")

        def ignoring(hooks, keep, target=target):
            return IgnoresReplacementAt(hooks, keep, target)

        with mock.patch.object(transformer, "HookDispatcher", ignoring):
            mutant_logits, _ = _run_with_replacement(model, tokens, target, delta, names)
        with pytest.raises(AssertionError):
            assert_close(mutant_logits, expected_logits, err_msg=f"mutant at {target}")


# ---------------------------------------------------------------- hooks are scoped


@given(models_and_tokens(), st.data())
def test_hooks_are_removed_after_the_call_and_after_an_exception(model_and_tokens, data):
    model, tokens = model_and_tokens
    names = model.hook_names()
    logits = model(tokens)
    cached_logits = model.run_with_cache(tokens)[0]  # see PLAIN_CALL_ROUNDING
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=4), label="hooks")

    def scale(activation, hook_name):
        return activation * 2.0

    model.run_with_hooks(tokens, fwd_hooks=[(name, scale) for name in chosen])
    assert model._hooks == {}
    assert_close(model(tokens), logits, rtol=0)

    def fail(activation, hook_name):
        raise HookError(hook_name)

    failing = data.draw(st.sampled_from(names), label="failing")
    fwd_hooks = [(name, scale) for name in chosen] + [(failing, fail)]
    with pytest.raises(HookError, match=failing):
        model.run_with_hooks(tokens, fwd_hooks=fwd_hooks)
    assert model._hooks == {}
    assert_close(model(tokens), logits, rtol=0)
    with pytest.raises(HookError), model.hooks(fwd_hooks):
        model.run_with_cache(tokens)
    assert model._hooks == {}
    assert_close(model.run_with_cache(tokens)[0], cached_logits, rtol=0)


@given(models_and_tokens(), st.data())
def test_hook_returning_a_wrong_shape_raises(model_and_tokens, data):
    model, tokens = model_and_tokens
    logits = model(tokens)
    name = data.draw(st.sampled_from(model.hook_names()), label="name")
    with pytest.raises(ValueError, match="shape"):
        model.run_with_hooks(tokens, fwd_hooks=[(name, lambda act, hook_name: act[..., :-1])])
    with pytest.raises(ValueError, match="shape"):
        model.run_with_hooks(tokens, fwd_hooks=[(name, lambda act, hook_name: act[None])])
    assert model._hooks == {}
    assert_close(model(tokens), logits, rtol=0)


@given(models_and_tokens())
def test_run_with_hooks_without_hooks_equals_plain_call(model_and_tokens):
    model, tokens = model_and_tokens
    assert_close(model.run_with_hooks(tokens), model(tokens), rtol=0)
    assert_close(model.run_with_hooks(tokens, fwd_hooks=[]), model(tokens), rtol=0)


@given(models_and_tokens(generic=True), st.data())
def test_nested_hooks_compose_in_order_and_unwind_one_level_at_a_time(model_and_tokens, data):
    """An outer `model.hooks(...)` block stays active after an inner call on the same hook point
    returns; two hooks on one point both run, the second on the first's output."""
    model, tokens = model_and_tokens
    name = data.draw(st.sampled_from(model.hook_names()), label="name")
    seen = []

    def outer(activation, hook_name):
        return activation + 1.0

    def inner(activation, hook_name):
        seen.append(activation.copy())
        return activation * 3.0

    plain_logits, plain = model.run_with_cache(tokens, names_filter=name)
    with model.hooks([(name, outer)]):
        outer_logits, outer_cache = model.run_with_cache(tokens, names_filter=name)
        with model.hooks([(name, inner)]):
            _, both = model.run_with_cache(tokens, names_filter=name)
        assert_close(seen[0], plain[name] + 1.0)  # inner ran after outer, on its output
        assert_close(both[name], (plain[name] + 1.0) * 3.0)
        assert_close(model(tokens), outer_logits, rtol=0)  # inner gone, outer still on
        assert set(model._hooks) == {name}
    assert model._hooks == {}
    assert_close(outer_cache[name], plain[name] + 1.0)
    assert_close(model.run_with_cache(tokens, names_filter=name)[0], plain_logits, rtol=0)


@given(models_and_tokens(min_batch=2), st.data())
def test_a_hook_sees_the_whole_batch_once_even_when_chunking_is_on(model_and_tokens, data):
    model, tokens = model_and_tokens
    name = data.draw(st.sampled_from(model.hook_names()), label="name")
    calls = []

    def count(activation, hook_name):
        calls.append(activation.shape[0])

    with mock.patch.object(transformer, "CHUNK_TOKENS", 1):
        model.run_with_hooks(tokens, fwd_hooks=[(name, count)])
    assert calls == [tokens.shape[0]]
