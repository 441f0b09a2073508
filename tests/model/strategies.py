"""Shared Hypothesis strategies for the model tests: small configs of every variant, tokens, models.

`configs()` draws small `TransformerConfig`s across all architectural variants; any field can be
pinned (`configs(causal=False)`) or given its own strategy (`configs(n_layers=st.just(2))`).
`tokens_for(cfg)` draws valid token arrays [batch, pos] for a config. `models()` draws a model
whose weights are either the config's own initialisation or "generic" O(1) Gaussian weights with
non-zero biases and LayerNorm gains != 1 (the default inits zero every bias, so a bug in how a
bias is added could never show with them); `generic_params` is that draw as a plain function.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from mechclaims.model.config import ACT_FNS, INITS, NORMALIZATIONS, TransformerConfig
from mechclaims.model.transformer import Transformer, param_shapes

MAX_D_MODEL = 16
MAX_LAYERS = 2
MAX_POS = 6
MAX_BATCH = 4

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def _as_strategy(value: Any) -> st.SearchStrategy:
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


@st.composite
def configs(draw, min_ctx: int = 1, **fixed: Any) -> TransformerConfig:
    """A small config (d_model <= 16, <= 2 layers, n_ctx <= 6, vocab <= 8) of any variant.

    Keyword arguments pin a field to a value or draw it from a given strategy. `n_heads` is drawn
    among the divisors of `d_model` up to 4 (always 1 for parameter-free attention); `n_ctx` is at
    least `min_ctx`, for tests that need sequences of some length.
    """
    unknown = set(fixed) - {field for field in TransformerConfig.__dataclass_fields__}
    if unknown:
        raise ValueError(f"configs() got unknown fields {sorted(unknown)}")

    def pick(name: str, default: st.SearchStrategy):
        return draw(_as_strategy(fixed[name]) if name in fixed else default)

    attention = pick("attention", st.sampled_from(["standard", "parameter-free"]))
    d_model = pick("d_model", st.integers(min_value=2, max_value=MAX_D_MODEL))
    divisors = [k for k in range(1, d_model + 1) if d_model % k == 0 and k <= 4]
    n_heads = pick(
        "n_heads", st.just(1) if attention == "parameter-free" else st.sampled_from(divisors)
    )
    norm = pick("norm", st.sampled_from(["pre", "post"]))
    pos_embed, rotary_dim = _positions(draw, pick, d_model // n_heads, attention)
    return TransformerConfig(
        vocab_size=pick("vocab_size", st.integers(min_value=2, max_value=8)),
        d_model=d_model,
        n_layers=pick("n_layers", st.integers(min_value=1, max_value=MAX_LAYERS)),
        n_heads=n_heads,
        d_mlp=pick("d_mlp", st.integers(min_value=1, max_value=2 * MAX_D_MODEL)),
        n_ctx=pick("n_ctx", st.integers(min_value=min_ctx, max_value=MAX_POS)),
        attention=attention,
        norm=norm,
        ln_affine=pick("ln_affine", st.booleans()),
        final_ln=pick("final_ln", st.booleans()),
        act_fn=pick("act_fn", st.sampled_from(ACT_FNS)),
        pos_embed=pos_embed,
        unembed_bias=pick("unembed_bias", st.booleans()),
        causal=pick("causal", st.booleans()),
        normalization=pick("normalization", st.sampled_from(NORMALIZATIONS)),
        rotary_dim=rotary_dim,
        rotary_base=pick("rotary_base", st.sampled_from([10000.0, 7.0])),
        parallel_attn_mlp=pick(
            "parallel_attn_mlp", st.booleans() if norm == "pre" else st.just(False)
        ),
        gated_mlp=pick("gated_mlp", st.booleans()),
        n_key_value_heads=pick("n_key_value_heads", _key_value_heads(attention, n_heads)),
        attn_bias=pick("attn_bias", st.booleans()),
        mlp_bias=pick("mlp_bias", st.booleans()),
        init=pick("init", st.sampled_from(INITS)),
        init_scale=pick("init_scale", st.just(1.0)),
        dtype=pick("dtype", st.just("float64")),
        ln_eps=pick("ln_eps", st.sampled_from([1e-5, 1e-3, 0.1])),
    )


def _positions(draw, pick, d_head: int, attention: str) -> tuple[str, int | None]:
    """(pos_embed, rotary_dim): rotary only with standard attention, where d_head allows an even
    number of rotated dimensions; rotary_dim None (every dimension) or fewer than d_head."""
    evens = list(range(2, d_head + 1, 2))
    rotary = evens and attention == "standard"
    allowed = ["learned", "sinusoidal", "rotary"] if rotary else ["learned", "sinusoidal"]
    pos_embed = pick("pos_embed", st.sampled_from(allowed))
    if pos_embed != "rotary":
        return pos_embed, None
    choices = [None, *evens] if d_head % 2 == 0 else evens
    return pos_embed, pick("rotary_dim", st.sampled_from(choices))


def _key_value_heads(attention: str, n_heads: int) -> st.SearchStrategy:
    if attention != "standard":
        return st.just(None)
    return st.sampled_from([None, *(k for k in range(1, n_heads + 1) if n_heads % k == 0)])


@st.composite
def tokens_for(
    draw,
    cfg: TransformerConfig,
    min_batch: int = 1,
    max_batch: int = MAX_BATCH,
    min_pos: int = 1,
    max_pos: int | None = None,
) -> np.ndarray:
    """Valid int64 tokens [batch, pos] for `cfg`: batch <= 4, pos <= min(n_ctx, 6)."""
    longest = min(cfg.n_ctx, MAX_POS if max_pos is None else max_pos)
    if min_pos > longest:
        raise ValueError(f"min_pos={min_pos} exceeds the longest allowed sequence {longest}")
    batch = draw(st.integers(min_value=min_batch, max_value=max_batch))
    n_pos = draw(st.integers(min_value=min_pos, max_value=longest))
    rng = np.random.default_rng(draw(seeds))
    return rng.integers(0, cfg.vocab_size, size=(batch, n_pos)).astype(np.int64)


def generic_params(cfg: TransformerConfig, seed: int) -> dict[str, np.ndarray]:
    """O(1) Gaussian weights for every parameter of `cfg`, biases and LayerNorm gains included.

    Each matrix is N(0, 1/fan_in) so activations stay O(1) through the layers; biases N(0, 0.5²),
    LayerNorm gains 1 + N(0, 0.3²): no entry is structurally 0 or 1, so every term of the
    forward pass shows in its output.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(cfg).items():
        kind = name.rsplit(".", 1)[-1]
        if kind == "w":
            value = 1.0 + 0.3 * rng.standard_normal(shape)
        elif kind == "b" or kind.startswith("b_"):
            value = 0.5 * rng.standard_normal(shape)
        elif kind in ("W_E", "W_pos"):
            value = rng.standard_normal(shape)
        else:
            fan_in = shape[-2] if kind != "W_O" else shape[0] * shape[1]
            value = rng.standard_normal(shape) / np.sqrt(fan_in)
        params[name] = value.astype(cfg.dtype)
    return params


@st.composite
def models(draw, cfg: TransformerConfig | st.SearchStrategy | None = None, generic: Any = None):
    """A Transformer for a drawn (or given) config; weights generic (see above) or the init's.

    `generic=True` forces generic weights, `False` the config's init, None draws either (generic
    three times in four).
    """
    cfg = draw(configs() if cfg is None else _as_strategy(cfg))
    if generic is None:
        generic = draw(st.sampled_from([True, True, True, False]))
    seed = draw(seeds)
    if generic:
        return Transformer.from_params(cfg, generic_params(cfg, seed))
    return Transformer(cfg, seed=seed)


@st.composite
def models_and_tokens(draw, cfg=None, generic: Any = None, **token_kwargs: Any):
    """(model, tokens) with tokens valid for the model's config."""
    if cfg is None:
        # Leave room for the shortest sequence asked for.
        cfg = configs(min_ctx=token_kwargs.get("min_pos", 1))
    model = draw(models(cfg, generic))
    return model, draw(tokens_for(model.cfg, **token_kwargs))
