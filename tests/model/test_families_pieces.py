"""The GPT-NeoX and Llama pieces against what each is meant to be, not only against the reference.

Rotary positions make attention scores depend on relative position only and turn no vector's
length; grouped-query attention is multi-head attention whose key and value heads are repeated;
RMSNorm is LayerNorm of a centred input; parallel attention and MLP both read the block's input;
the Pythia and llama2.c inits draw each matrix with its source's standard deviation.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from mechclaims.model import layers
from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer, param_shapes
from tests.model.reference import assert_close
from tests.model.strategies import configs, generic_params, seeds, tokens_for


@given(seeds, st.integers(1, 4), st.integers(0, 3), st.sampled_from([10000.0, 10.0]))
def test_rotary_scores_depend_on_relative_position_only(seed, half, extra, base):
    """One query and one key vector at every position: after rotation, q_i . k_j is a
    function of i - j (a Toeplitz matrix), and position 0 is not turned."""
    rng = np.random.default_rng(seed)
    n_pos, dh = 7, 2 * half + extra
    q, k = (np.broadcast_to(rng.standard_normal(dh), (1, n_pos, 1, dh)) for _ in range(2))
    table = layers.rotary_table(n_pos, 2 * half, base, np.float64)
    rot_q, rot_k = layers.rotary_forward(q, table), layers.rotary_forward(k, table)
    scores = np.einsum("id,jd->ij", rot_q[0, :, 0], rot_k[0, :, 0])
    for shift in range(1, n_pos):
        assert_close(np.diag(scores, shift)[1:], np.diag(scores, shift)[:-1])
        assert_close(np.diag(scores, -shift)[1:], np.diag(scores, -shift)[:-1])
    assert_close(rot_q[0, 0], q[0, 0], rtol=0)
    assert np.abs(scores[0, 1] - scores[1, 0]) > 1e-9 or half == 0  # not symmetric: turned


@given(seeds, st.integers(1, 4), st.integers(0, 3))
def test_rotary_keeps_lengths_and_leaves_the_unrotated_dimensions(seed, half, extra):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 5, 3, 2 * half + extra))
    out = layers.rotary_forward(x, layers.rotary_table(5, 2 * half, 10000.0, np.float64))
    assert_close(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1))
    assert_close(out[..., 2 * half :], x[..., 2 * half :], rtol=0)
    table = layers.rotary_table(5, 2 * half, 10000.0, np.float64)
    assert_close(layers.rotary_forward(out, table, sign=-1.0), x)


@given(
    configs(attention="standard", d_model=st.sampled_from([4, 8, 12]), n_heads=st.just(4),
            n_key_value_heads=st.sampled_from([1, 2])),
    seeds, st.data(),
)  # fmt: skip
def test_grouped_query_attention_is_attention_with_repeated_key_value_heads(cfg, seed, data):
    """The same weights with every key and value head repeated for its query heads, run as
    plain multi-head attention: the same logits and patterns."""
    params = generic_params(cfg, seed)
    group = cfg.n_heads // cfg.n_kv_heads
    full_cfg = cfg.replace(n_key_value_heads=None)
    full = {name: np.repeat(value, group, axis=0) if name.endswith(("W_K", "W_V", "b_K", "b_V"))
            else value for name, value in params.items()}  # fmt: skip
    tokens = data.draw(tokens_for(cfg))
    logits, cache = Transformer.from_params(cfg, params).run_with_cache(tokens)
    full_logits, full_cache = Transformer.from_params(full_cfg, full).run_with_cache(tokens)
    assert_close(logits, full_logits)
    for layer in range(cfg.n_layers):
        name = f"blocks.{layer}.attn.hook_pattern"
        assert_close(cache[name], full_cache[name], err_msg=name)


@given(seeds, st.integers(2, 16), st.sampled_from([1e-5, 0.1]))
def test_rms_norm_is_layer_norm_of_a_centred_input(seed, d, eps):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 4, d))
    x -= x.mean(axis=-1, keepdims=True)
    w = 1 + 0.3 * rng.standard_normal(d)
    rms, _ = layers.rms_norm_forward(x, w, eps)
    ln, _ = layers.layer_norm_forward(x, w, np.zeros(d), eps)
    assert_close(rms, ln)
    shifted, _ = layers.rms_norm_forward(x + 1.0, w, eps)
    assert np.abs(shifted - rms).max() > 1e-3  # RMSNorm does not centre: a shift shows


@given(configs(norm="pre", parallel_attn_mlp=True), seeds, st.data())
def test_parallel_blocks_add_attention_and_mlp_of_the_same_input(cfg, seed, data):
    """resid_post = resid_pre + attn_out + mlp_out, and zeroing attention's output leaves what
    the MLP computes unchanged (it does not read attention's output)."""
    model = Transformer.from_params(cfg, generic_params(cfg, seed))
    tokens = data.draw(tokens_for(cfg))
    _, cache = model.run_with_cache(tokens)
    with model.hooks([("blocks.0.hook_attn_out", lambda act, name: np.zeros_like(act))]):
        _, ablated = model.run_with_cache(tokens)
    block = "blocks.0"
    assert_close(
        cache[f"{block}.hook_resid_post"],
        cache[f"{block}.hook_resid_pre"] + cache[f"{block}.hook_attn_out"]
        + cache[f"{block}.hook_mlp_out"],
    )  # fmt: skip
    assert_close(ablated[f"{block}.hook_mlp_out"], cache[f"{block}.hook_mlp_out"], rtol=0)


def _std(params: dict, name: str) -> float:
    return float(params[name].std())


def test_pythia_init_draws_small_init_and_wang_init():
    """GPT-NeoX's small_init, sqrt(2 / (5 d)), and wang_init, 2 / (n_layers sqrt(d)), at a width
    where the sample standard deviation is within 2% of the drawn one; biases 0, gains 1."""
    cfg = TransformerConfig.preset("pythia-70m").replace(vocab_size=512, n_layers=2, d_model=256,
                                                         d_mlp=1024, dtype="float64")  # fmt: skip
    params = Transformer(cfg, seed=3).params
    small, wang = np.sqrt(2 / (5 * 256)), 2 / (2 * np.sqrt(256))
    for name in ("embed.W_E", "blocks.0.attn.W_Q", "blocks.1.attn.W_K", "blocks.0.attn.W_V",
                 "blocks.0.mlp.W_in", "unembed.W_U"):  # fmt: skip
        assert abs(_std(params, name) / small - 1) < 0.02, name
    for name in ("blocks.0.attn.W_O", "blocks.1.mlp.W_out"):
        assert abs(_std(params, name) / wang - 1) < 0.02, name
    for name in param_shapes(cfg):
        kind = name.rsplit(".", 1)[-1]
        if kind == "b" or kind.startswith("b_"):
            assert not params[name].any(), name
        if kind == "w":
            assert np.all(params[name] == 1), name


def test_llama2c_init_scales_w3_and_wo_and_ties_the_unembedding():
    """llama2.c's init: N(0, 0.02²) everywhere but its `w3` (our gated W_in) and `wo` (W_O),
    0.02 / sqrt(2 n_layers); the unembedding is the embedding's transpose."""
    cfg = TransformerConfig.preset("llama2c-stories15m").replace(vocab_size=512, n_layers=2,
                                                                 dtype="float64")  # fmt: skip
    params = Transformer(cfg, seed=4).params
    scaled = 0.02 / np.sqrt(2 * 2)
    for name in ("embed.W_E", "blocks.0.attn.W_Q", "blocks.0.mlp.W_gate", "blocks.1.mlp.W_out"):
        assert abs(_std(params, name) / 0.02 - 1) < 0.02, name
    for name in ("blocks.0.mlp.W_in", "blocks.1.attn.W_O"):
        assert abs(_std(params, name) / scaled - 1) < 0.02, name
    assert np.array_equal(params["unembed.W_U"], params["embed.W_E"].T)
    assert all(np.all(params[name] == 1) for name in params if name.endswith(".w"))
