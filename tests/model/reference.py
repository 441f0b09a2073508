"""A naive reference transformer, written from the maths in DESIGN.md, for the model's tests.

It shares no code with `model/`: one sequence at a time, one head at a time, the causal mask as
an explicit "key j <= query i" test, softmax as exp(s - logsumexp(s)) over the visible keys only,
LayerNorm as the textbook formula with eps inside the square root, positions by the sinusoid
formula written out per entry. Slow and obvious on purpose: a test compares the model with it.

`reference_forward(cfg, params, tokens)` returns `(logits, activations)`, where activations are
keyed by the model's hook names and batched like the model's cache (scores and patterns
[batch, head, q, k]; q, k, v, z [batch, pos, head, d_head]). Everything is computed in float64.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from mechclaims.model.config import TransformerConfig

GELU_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def reference_softmax(scores: np.ndarray) -> np.ndarray:
    """exp(s - logsumexp(s)) over the last axis; -inf entries give exactly 0."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.exp(scores - logsumexp(scores, axis=-1, keepdims=True))


def reference_layer_norm(x: np.ndarray, w=None, b=None, eps: float = 1e-5) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) * w + b over the last axis, var the population variance."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    mean = x.sum(axis=-1, keepdims=True) / n
    var = ((x - mean) ** 2).sum(axis=-1, keepdims=True) / n
    xhat = (x - mean) / np.sqrt(var + eps)
    if w is None:
        return xhat
    return xhat * w + b


def reference_gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³)))."""
    return 0.5 * x * (1.0 + np.tanh(GELU_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


def reference_relu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.0)


ACTIVATIONS = {"relu": reference_relu, "gelu": reference_gelu}


def reference_sinusoidal(n_pos: int, d_model: int) -> np.ndarray:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)), entry by entry."""
    table = np.zeros((n_pos, d_model))
    for p in range(n_pos):
        for even in range(0, d_model, 2):
            angle = p / 10000.0 ** (even / d_model)
            table[p, even] = math.sin(angle)
            if even + 1 < d_model:
                table[p, even + 1] = math.cos(angle)
    return table


def reference_attention_head(q, k, v, scale: float, causal: bool):
    """One head on one sequence: q, k, v [T, dh] -> (scores [T,T], pattern [T,T], z [T,dh]).

    Scores above the diagonal are -inf under the causal mask; each pattern row is a softmax over
    the keys that query may see, written with an explicit loop over queries.
    """
    n_pos = q.shape[0]
    scores = np.full((n_pos, n_pos), -np.inf)
    pattern = np.zeros((n_pos, n_pos))
    for i in range(n_pos):
        visible = range(i + 1) if causal else range(n_pos)
        for j in visible:
            scores[i, j] = scale * float(np.dot(q[i], k[j]))
        row = scores[i, list(visible)]
        pattern[i, list(visible)] = np.exp(row - logsumexp(row))
    z = pattern @ v
    return scores, pattern, z


def reference_attention(x: np.ndarray, attn: dict, cfg: TransformerConfig) -> dict:
    """Attention on one sequence x [T, d]: per-head loop; returns its activations by hook suffix."""
    n_pos, d = x.shape
    if cfg.attention == "parameter-free":
        heads = [(x, x, x)]  # softmax(x xᵀ) x: queries, keys and values are x, no scaling
        scale = 1.0
    else:
        heads = [
            (
                x @ attn["W_Q"][h] + attn["b_Q"][h],
                x @ attn["W_K"][h] + attn["b_K"][h],
                x @ attn["W_V"][h] + attn["b_V"][h],
            )
            for h in range(cfg.n_heads)
        ]
        scale = 1.0 / math.sqrt(cfg.d_head)
    acts = {name: [] for name in ("q", "k", "v", "scores", "pattern", "z")}
    out = np.zeros((n_pos, d)) if cfg.attention == "parameter-free" else attn["b_O"] + np.zeros(d)
    for h, (q, k, v) in enumerate(heads):
        scores, pattern, z = reference_attention_head(q, k, v, scale, cfg.causal)
        out = out + (z if cfg.attention == "parameter-free" else z @ attn["W_O"][h])
        for name, value in zip(acts, (q, k, v, scores, pattern, z), strict=True):
            acts[name].append(value)
    return {
        "hook_q": np.stack(acts["q"], axis=1),  # [T,H,dh]
        "hook_k": np.stack(acts["k"], axis=1),
        "hook_v": np.stack(acts["v"], axis=1),
        "hook_attn_scores": np.stack(acts["scores"]),  # [H,T,T]
        "hook_pattern": np.stack(acts["pattern"]),
        "hook_z": np.stack(acts["z"], axis=1),  # [T,H,dh]
        "out": out,
    }


def _parts(params: dict, prefix: str) -> dict:
    return {
        name[len(prefix) :]: np.asarray(value, dtype=np.float64)
        for name, value in params.items()
        if name.startswith(prefix)
    }


def _reference_sequence(cfg: TransformerConfig, params: dict, sequence) -> dict:
    """Every activation (by hook name) and the logits of one sequence."""
    acts: dict[str, np.ndarray] = {}
    n_pos = len(sequence)
    W_E = np.asarray(params["embed.W_E"], dtype=np.float64)
    acts["hook_embed"] = np.stack([W_E[token] for token in sequence])  # [T,d]
    if cfg.pos_embed == "learned":
        acts["hook_pos_embed"] = np.asarray(params["pos_embed.W_pos"], np.float64)[:n_pos]
    else:
        acts["hook_pos_embed"] = reference_sinusoidal(n_pos, cfg.d_model)
    x = acts["hook_embed"] + acts["hook_pos_embed"]

    def norm(name: str, value: np.ndarray) -> np.ndarray:
        part = _parts(params, f"{name}.")
        out = reference_layer_norm(value, part.get("w"), part.get("b"), cfg.ln_eps)
        acts[f"{name}.hook_normalized"] = out
        return out

    for layer in range(cfg.n_layers):
        block = f"blocks.{layer}"
        attn, mlp = _parts(params, f"{block}.attn."), _parts(params, f"{block}.mlp.")
        acts[f"{block}.hook_resid_pre"] = x
        attn_in = norm(f"{block}.ln1", x) if cfg.norm == "pre" else x
        attn_acts = reference_attention(attn_in, attn, cfg)
        attn_out = attn_acts.pop("out")
        acts.update({f"{block}.attn.{name}": value for name, value in attn_acts.items()})
        acts[f"{block}.hook_attn_out"] = attn_out
        if cfg.norm == "pre":
            resid_mid = x + attn_out
            mlp_in = norm(f"{block}.ln2", resid_mid)
        else:
            resid_mid = norm(f"{block}.ln1", x + attn_out)
            mlp_in = resid_mid
        acts[f"{block}.hook_resid_mid"] = resid_mid
        pre = mlp_in @ mlp["W_in"] + mlp["b_in"]
        post = ACTIVATIONS[cfg.act_fn](pre)
        mlp_out = post @ mlp["W_out"] + mlp["b_out"]
        acts[f"{block}.mlp.hook_pre"] = pre
        acts[f"{block}.mlp.hook_post"] = post
        acts[f"{block}.hook_mlp_out"] = mlp_out
        resid_sum = resid_mid + mlp_out
        x = resid_sum if cfg.norm == "pre" else norm(f"{block}.ln2", resid_sum)
        acts[f"{block}.hook_resid_post"] = x
    if cfg.final_ln:
        x = norm("ln_final", x)
    logits = x @ np.asarray(params["unembed.W_U"], dtype=np.float64)
    if cfg.unembed_bias:
        logits = logits + np.asarray(params["unembed.b_U"], dtype=np.float64)
    acts["logits"] = logits
    return acts


def reference_forward(cfg: TransformerConfig, params: dict, tokens) -> tuple[np.ndarray, dict]:
    """(logits [B,T,V], activations by hook name), one sequence at a time."""
    per_sequence = [_reference_sequence(cfg, params, list(row)) for row in np.asarray(tokens)]
    stacked = {name: np.stack([acts[name] for acts in per_sequence]) for name in per_sequence[0]}
    return stacked.pop("logits"), stacked


def assert_close(actual, expected, rtol: float = 1e-10, err_msg: str = "") -> None:
    """Equal up to float64 rounding: rtol relative, plus an absolute floor of rtol/100 times the
    largest finite magnitude (entries far below the array's scale carry that scale's rounding).
    Infinities must match exactly (the causal mask's -inf scores)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{err_msg}: shape {actual.shape} != {expected.shape}"
    finite = np.isfinite(expected)
    scale = float(np.abs(expected[finite]).max()) if finite.any() else 0.0
    np.testing.assert_allclose(
        actual, expected, rtol=rtol, atol=rtol / 100 * max(scale, 1e-300), err_msg=err_msg
    )
