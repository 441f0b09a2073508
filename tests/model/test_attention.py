"""Attention: patterns, the causal mask, causality of the whole model, and symmetries.

The layer functions are compared with per-head loops written from the formula
softmax(q kᵀ / sqrt(dh) + mask) v W_O (standard) and softmax(mask(x xᵀ)) x (parameter-free).
Causality is checked on every cached activation, and its failure without the mask is asserted
too, so a mask that is always on (or never on) cannot pass.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp

from mechclaims.model import layers
from mechclaims.model.transformer import Transformer
from tests.model.reference import assert_close, reference_attention_head
from tests.model.strategies import configs, generic_params, models_and_tokens, seeds, tokens_for

PAIR_HOOKS = ("hook_attn_scores", "hook_pattern")  # [batch, head, q, k]; the rest [batch, pos, ...]


def patterns(cache: dict) -> dict:
    return {name: value for name, value in cache.items() if name.endswith("hook_pattern")}


def random_attention_params(rng, d_model: int, n_heads: int) -> dict:
    d_head = d_model // n_heads
    return {
        "W_Q": rng.standard_normal((n_heads, d_model, d_head)),
        "W_K": rng.standard_normal((n_heads, d_model, d_head)),
        "W_V": rng.standard_normal((n_heads, d_model, d_head)),
        "b_Q": rng.standard_normal((n_heads, d_head)),
        "b_K": rng.standard_normal((n_heads, d_head)),
        "b_V": rng.standard_normal((n_heads, d_head)),
        "W_O": rng.standard_normal((n_heads, d_head, d_model)),
        "b_O": rng.standard_normal(d_model),
    }


def recorder(store: dict):
    def hook(name: str, value: np.ndarray) -> np.ndarray:
        store[name] = value.copy()
        return value

    return hook


@st.composite
def attention_inputs(draw, head_counts=(1, 2, 3, 4)):
    """(x [B,T,d], params, n_heads) with O(1) entries; d = heads * d_head, d_head != d."""
    n_heads = draw(st.sampled_from(head_counts))
    d_head = draw(st.integers(1, 4))
    batch, n_pos = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(seeds))
    d_model = n_heads * d_head
    x = rng.standard_normal((batch, n_pos, d_model))
    params = random_attention_params(rng, d_model, n_heads)
    params = {name: value / np.sqrt(d_model) if name.startswith("W_") else value
              for name, value in params.items()}  # fmt: skip
    return x, params, n_heads


# ---------------------------------------------------------------- patterns in the model


@given(models_and_tokens())
def test_pattern_rows_are_distributions(model_and_tokens):
    model, tokens = model_and_tokens
    _, cache = model.run_with_cache(tokens)
    for name, pattern in patterns(cache).items():
        assert pattern.shape == (
            tokens.shape[0],
            model.cfg.n_heads,
            tokens.shape[1],
            tokens.shape[1],
        )
        assert np.all(pattern >= 0), name
        np.testing.assert_allclose(pattern.sum(axis=-1), 1.0, rtol=1e-12, err_msg=name)


@given(models_and_tokens(generic=True))
def test_pattern_is_zero_exactly_above_the_diagonal_iff_causal(model_and_tokens):
    model, tokens = model_and_tokens
    _, cache = model.run_with_cache(tokens)
    n_pos = tokens.shape[1]
    above = np.triu(np.ones((n_pos, n_pos), dtype=bool), k=1)
    for name, pattern in patterns(cache).items():
        scores = cache[name.replace("hook_pattern", "hook_attn_scores")]
        # On and below the diagonal every key is seen: generic scores give positive weights.
        assert np.all(pattern[..., ~above] > 0), name
        if model.cfg.causal:
            assert np.all(pattern[..., above] == 0.0), name
            assert np.all(scores[..., above] == -np.inf), name
            assert np.all(np.isfinite(scores[..., ~above])), name
        else:
            assert np.all(pattern[..., above] > 0), name
            assert np.all(np.isfinite(scores)), name


# ---------------------------------------------------------------- causality of the whole model


def _changed_suffix(model, tokens, t: int, seed: int) -> np.ndarray:
    """The same tokens up to position t; every later token replaced by a different one."""
    rng = np.random.default_rng(seed)
    changed = tokens.copy()
    later = changed[:, t + 1 :]
    later[...] = (later + rng.integers(1, model.cfg.vocab_size, size=later.shape)) % (
        model.cfg.vocab_size
    )
    return changed


def _prefix(name: str, value: np.ndarray, t: int) -> np.ndarray:
    """The part of an activation at positions <= t: the q<=t, k<=t block for [B,H,q,k]."""
    if name.endswith(PAIR_HOOKS):
        return value[:, :, : t + 1, : t + 1]
    return value[:, : t + 1]


@given(models_and_tokens(cfg=configs(causal=True, min_ctx=2), min_pos=2), st.data())
def test_causal_model_activations_up_to_t_ignore_later_tokens(model_and_tokens, data):
    model, tokens = model_and_tokens
    t = data.draw(st.integers(0, tokens.shape[1] - 2), label="t")
    changed = _changed_suffix(model, tokens, t, data.draw(seeds))
    logits, cache = model.run_with_cache(tokens)
    new_logits, new_cache = model.run_with_cache(changed)
    for name in model.hook_names():
        assert_close(_prefix(name, new_cache[name], t), _prefix(name, cache[name], t), rtol=1e-12,
                     err_msg=name)  # fmt: skip
    assert_close(new_logits[:, : t + 1], logits[:, : t + 1], rtol=1e-12)


@given(models_and_tokens(cfg=configs(causal=False, min_ctx=2), generic=True, min_pos=2), st.data())
def test_non_causal_model_activations_up_to_t_see_later_tokens(model_and_tokens, data):
    """Without the mask, queries <= t score every later key, and (standard attention) the first
    block's output at every position <= t moves with the later tokens. (Parameter-free attention
    is nearly one-hot on the diagonal, x·x >> x·y, so its output may move by less than rounding.)
    """
    model, tokens = model_and_tokens
    t = data.draw(st.integers(0, tokens.shape[1] - 2), label="t")
    changed = _changed_suffix(model, tokens, t, data.draw(seeds))
    names = ["blocks.0.attn.hook_attn_scores", "blocks.0.hook_attn_out"]
    _, cache = model.run_with_cache(tokens, names_filter=names)
    _, new_cache = model.run_with_cache(changed, names_filter=names)
    scores, new_scores = cache[names[0]], new_cache[names[0]]
    assert np.all(np.isfinite(new_scores[:, :, : t + 1, t + 1 :]))
    assert np.all(new_scores[:, :, : t + 1, t + 1 :] != scores[:, :, : t + 1, t + 1 :])
    if model.cfg.attention == "standard":
        moved = np.abs(new_cache[names[1]][:, : t + 1] - cache[names[1]][:, : t + 1])
        assert np.all(moved.max(axis=-1) > 1e-12)


# ---------------------------------------------------------------- the layers against loops


@given(attention_inputs(), st.booleans())
def test_standard_attention_matches_per_head_loop(inputs, causal):
    x, params, n_heads = inputs
    seen: dict = {}
    out, _ = layers.attention_forward(x, params, causal, recorder(seen))
    d_head = x.shape[-1] // n_heads
    for b in range(x.shape[0]):
        expected = params["b_O"].copy()
        for h in range(n_heads):
            q = x[b] @ params["W_Q"][h] + params["b_Q"][h]
            k = x[b] @ params["W_K"][h] + params["b_K"][h]
            v = x[b] @ params["W_V"][h] + params["b_V"][h]
            scores, pattern, z = reference_attention_head(q, k, v, 1 / np.sqrt(d_head), causal)
            expected = expected + z @ params["W_O"][h]
            assert_close(seen["hook_q"][b, :, h], q)
            assert_close(seen["hook_k"][b, :, h], k)
            assert_close(seen["hook_v"][b, :, h], v)
            assert_close(seen["hook_attn_scores"][b, h], scores)
            assert_close(seen["hook_pattern"][b, h], pattern)
            assert_close(seen["hook_z"][b, :, h], z)
        assert_close(out[b], expected, err_msg=f"sequence {b}")


@given(attention_inputs(head_counts=(1,)), st.booleans(), st.floats(0.1, 3.0))
def test_parameter_free_attention_is_softmax_of_masked_x_xt_times_x(inputs, causal, gain):
    x = inputs[0] * gain  # larger inputs: the pattern depends strongly on any scaling
    seen: dict = {}
    out, _ = layers.parameter_free_attention_forward(x, causal, recorder(seen))
    n_pos = x.shape[1]
    for b in range(x.shape[0]):
        scores = x[b] @ x[b].T  # no weights, no 1/sqrt(d)
        if causal:
            scores[np.triu_indices(n_pos, k=1)] = -np.inf
        pattern = np.exp(scores - logsumexp(scores, axis=-1, keepdims=True))
        assert_close(seen["hook_pattern"][b, 0], pattern)
        assert_close(out[b], pattern @ x[b])


@given(attention_inputs(), seeds)
def test_non_causal_attention_is_permutation_equivariant(inputs, seed):
    x, params, _ = inputs
    perm = np.random.default_rng(seed).permutation(x.shape[1])
    out, _ = layers.attention_forward(x, params, False, layers.no_hook)
    permuted, _ = layers.attention_forward(x[:, perm], params, False, layers.no_hook)
    assert_close(permuted, out[:, perm])
    free, _ = layers.parameter_free_attention_forward(x, False, layers.no_hook)
    free_permuted, _ = layers.parameter_free_attention_forward(x[:, perm], False, layers.no_hook)
    assert_close(free_permuted, free[:, perm])


@given(configs(causal=False, pos_embed="learned", min_ctx=2), seeds, st.data())
def test_model_without_positions_or_mask_is_permutation_equivariant(cfg, seed, data):
    """With zero position rows and no mask, permuting the tokens permutes every activation."""
    params = generic_params(cfg, seed)
    params["pos_embed.W_pos"] = np.zeros_like(params["pos_embed.W_pos"])
    model = Transformer.from_params(cfg, params)
    tokens = data.draw(tokens_for(cfg, min_pos=2))
    perm = data.draw(st.permutations(range(tokens.shape[1])), label="perm")
    logits, cache = model.run_with_cache(tokens)
    new_logits, new_cache = model.run_with_cache(tokens[:, perm])
    assert_close(new_logits, logits[:, perm], rtol=1e-9)
    for name in model.hook_names():
        expected = cache[name]
        if name.endswith(PAIR_HOOKS):
            expected = expected[:, :, perm][:, :, :, perm]
        elif name != "hook_pos_embed":
            expected = expected[:, perm]
        assert_close(new_cache[name], expected, rtol=1e-9, err_msg=name)


@given(
    configs(attention="standard", d_model=st.sampled_from([4, 8, 12, 16]),
            n_heads=st.sampled_from([2, 4])),
    seeds, st.data(),
)  # fmt: skip
def test_permuting_heads_consistently_leaves_the_output_unchanged(cfg, seed, data):
    """Key-value heads permuted, and the query heads of each group moved with their key head
    (and permuted within it): the same function, every head's activations permuted alike."""
    params = generic_params(cfg, seed)
    tokens = data.draw(tokens_for(cfg))
    group = cfg.n_heads // cfg.n_kv_heads
    kv_perm = np.array(data.draw(st.permutations(range(cfg.n_kv_heads)), label="kv_perm"))
    within = data.draw(st.permutations(range(group)), label="within")
    perm = np.array([kv * group + j for kv in kv_perm for j in within])  # query heads
    permuted = dict(params)
    for layer in range(cfg.n_layers):
        for short, order in (("W_Q", perm), ("b_Q", perm), ("W_O", perm), ("W_K", kv_perm),
                             ("b_K", kv_perm), ("W_V", kv_perm), ("b_V", kv_perm)):  # fmt: skip
            name = f"blocks.{layer}.attn.{short}"
            if name in params:
                permuted[name] = params[name][order]
    logits, cache = Transformer.from_params(cfg, params).run_with_cache(tokens)
    new_logits, new_cache = Transformer.from_params(cfg, permuted).run_with_cache(tokens)
    assert_close(new_logits, logits, rtol=1e-9)
    for name in cache:
        short = name.rsplit(".", 1)[-1]
        if short in ("hook_pattern", "hook_attn_scores"):
            assert_close(new_cache[name], cache[name][:, perm], rtol=1e-9, err_msg=name)
        elif short in ("hook_q", "hook_rot_q", "hook_z"):
            assert_close(new_cache[name], cache[name][:, :, perm], rtol=1e-9, err_msg=name)
        elif short in ("hook_k", "hook_rot_k", "hook_v"):
            assert_close(new_cache[name], cache[name][:, :, kv_perm], rtol=1e-9, err_msg=name)


@given(attention_inputs(), st.booleans(), st.floats(0.25, 4.0))
def test_attention_scores_scale_with_one_over_sqrt_d_head(inputs, causal, factor):
    """Scores are q·k / sqrt(dh): scaling W_Q and b_Q by c scales every finite score by c."""
    x, params, _ = inputs
    seen, scaled_seen = {}, {}
    layers.attention_forward(x, params, causal, recorder(seen))
    scaled = dict(params, W_Q=params["W_Q"] * factor, b_Q=params["b_Q"] * factor)
    layers.attention_forward(x, scaled, causal, recorder(scaled_seen))
    q, k = seen["hook_q"], seen["hook_k"]
    d_head = q.shape[-1]
    dots = np.einsum("bqhd,bkhd->bhqk", q, k)
    scores = seen["hook_attn_scores"]
    finite = np.isfinite(scores)
    assert_close(scores[finite], dots[finite] / np.sqrt(d_head))
    assert_close(scaled_seen["hook_attn_scores"][finite], factor * scores[finite])
