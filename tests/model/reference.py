"""A naive reference transformer, written from the maths in DESIGN.md, for the model's tests.

It shares no code with `model/`: one sequence at a time, one head at a time, the causal mask as
an explicit "key j <= query i" test, softmax as exp(s - logsumexp(s)) over the visible keys only,
LayerNorm as the textbook formula with eps inside the square root, RMSNorm row by row, positions
by the sinusoid formula written out per entry, rotary positions as complex multiplication, each
query head reading its key head by index (grouped-query attention). Slow and obvious on purpose:
a test compares the model with it.

`reference_forward(cfg, params, tokens, added)` returns `(logits, activations)`, where activations
are keyed by the model's hook names and batched like the model's cache (scores and patterns
[batch, head, q, k]; q, k, v, z [batch, pos, head, d_head]); `added` perturbs the activation at
chosen hook points, as a hook that replaces a value would. Everything is computed in float64.
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


def reference_layer_norm(x: np.ndarray, w=None, b=None, eps: float = 1e-5,
                         edit_scale=lambda scale: scale) -> np.ndarray:  # fmt: skip
    """(x - mean) / sqrt(var + eps) * w + b over the last axis, var the population variance;
    `edit_scale` sees (and may replace) the divisor sqrt(var + eps)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    mean = x.sum(axis=-1, keepdims=True) / n
    var = ((x - mean) ** 2).sum(axis=-1, keepdims=True) / n
    xhat = (x - mean) / edit_scale(np.sqrt(var + eps))
    if w is None:
        return xhat
    return xhat * w + b


def reference_rms_norm(x: np.ndarray, w=None, eps: float = 1e-5,
                       edit_scale=lambda scale: scale) -> np.ndarray:  # fmt: skip
    """x / sqrt(mean(x²) + eps) * w over the last axis, entry by entry of each row."""
    x = np.asarray(x, dtype=np.float64)
    rows = x.reshape(-1, x.shape[-1])
    scale = np.array([[math.sqrt(sum(v * v for v in row) / len(row) + eps)] for row in rows])
    xhat = rows / edit_scale(scale.reshape(*x.shape[:-1], 1)).reshape(-1, 1)
    xhat = xhat.reshape(x.shape)
    return xhat if w is None else xhat * w


def reference_rotary(x: np.ndarray, rotary_dim: int, base: float) -> np.ndarray:
    """Rotary positions, by complex multiplication: at position p, the pair of dimensions
    (i, i + rd/2) of each head, read as the complex number x_i + j x_(i+rd/2), is multiplied by
    exp(j p base^(-2i/rd)). x [T,H,dh]; dimensions from rd on are left alone."""
    out = np.array(x, dtype=np.float64)
    half = rotary_dim // 2
    for p in range(x.shape[0]):
        for i in range(half):
            turned = (x[p, :, i] + 1j * x[p, :, i + half]) * np.exp(
                1j * p * base ** (-2 * i / rotary_dim)
            )
            out[p, :, i], out[p, :, i + half] = turned.real, turned.imag
    return out


def reference_silu(x: np.ndarray) -> np.ndarray:
    """x / (1 + exp(-x)), entry by entry with math.exp (guarded for large -x)."""
    x = np.asarray(x, dtype=np.float64)
    out = [v / (1.0 + math.exp(-v)) if v > -700 else 0.0 for v in x.ravel()]
    return np.array(out).reshape(x.shape)


def reference_gelu_new(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³)))."""
    return 0.5 * x * (1.0 + np.tanh(GELU_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


def reference_gelu(x: np.ndarray) -> np.ndarray:
    """GELU, exact: x Φ(x), Φ the standard normal CDF, entry by entry with math.erf."""
    x = np.asarray(x, dtype=np.float64)
    cdf = np.array([0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.ravel()])
    return x * cdf.reshape(x.shape)


def reference_relu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.0)


ACTIVATIONS = {"relu": reference_relu, "gelu": reference_gelu, "gelu_new": reference_gelu_new,
               "silu": reference_silu}  # fmt: skip


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


def reference_scores(q, k, scale: float, causal: bool) -> np.ndarray:
    """One head's scores [T,T]: scale <q_i, k_j> where key j is visible to query i, else -inf."""
    n_pos = q.shape[0]
    scores = np.full((n_pos, n_pos), -np.inf)
    for i in range(n_pos):
        for j in _visible(i, n_pos, causal):
            scores[i, j] = scale * float(np.dot(q[i], k[j]))
    return scores


def reference_pattern(scores, causal: bool) -> np.ndarray:
    """Each row a softmax over the keys that query may see, with an explicit loop over queries."""
    n_pos = scores.shape[0]
    pattern = np.zeros((n_pos, n_pos))
    for i in range(n_pos):
        visible = list(_visible(i, n_pos, causal))
        row = scores[i, visible]
        top = row.max()
        log_total = top + math.log(sum(math.exp(score - top) for score in row))
        pattern[i, visible] = np.exp(row - log_total)
    return pattern


def _visible(i: int, n_pos: int, causal: bool) -> range:
    return range(i + 1) if causal else range(n_pos)


def reference_attention_head(q, k, v, scale: float, causal: bool):
    """One head on one sequence: q, k, v [T, dh] -> (scores [T,T], pattern [T,T], z [T,dh]).

    Scores above the diagonal are -inf under the causal mask."""
    scores = reference_scores(q, k, scale, causal)
    pattern = reference_pattern(scores, causal)
    return scores, pattern, pattern @ v


def reference_attention(x: np.ndarray, attn: dict, cfg: TransformerConfig, edit) -> np.ndarray:
    """Attention on one sequence x [T, d], head by head; `edit(short hook name, value)` sees
    (and may replace) each activation: q, k, v, z [T,H,dh] (k and v [T,H_kv,dh]), scores and
    pattern [H,T,T]. Query head h reads key and value head h // (H / H_kv)."""
    if cfg.attention == "parameter-free":  # softmax(x xᵀ) x: q, k and v are x, no scaling
        q, k, v = (edit(f"hook_{short}", x[:, None, :]) for short in "qkv")  # [T,1,d]
        scale = 1.0
    else:
        q, k, v = (edit(f"hook_{short.lower()}", _projection(x, attn, short)) for short in "QKV")
        scale = 1.0 / math.sqrt(cfg.d_head)
    if cfg.pos_embed == "rotary":
        q = edit("hook_rot_q", reference_rotary(q, cfg.rotary_dims, cfg.rotary_base))
        k = edit("hook_rot_k", reference_rotary(k, cfg.rotary_dims, cfg.rotary_base))
    heads = range(q.shape[1])
    group = q.shape[1] // k.shape[1]
    scores = edit(
        "hook_attn_scores",
        np.stack([reference_scores(q[:, h], k[:, h // group], scale, cfg.causal) for h in heads]),
    )
    pattern = edit(
        "hook_pattern", np.stack([reference_pattern(scores[h], cfg.causal) for h in heads])
    )
    z = edit("hook_z", np.stack([pattern[h] @ v[:, h // group] for h in heads], axis=1))
    if cfg.attention == "parameter-free":
        return z[:, 0]
    return attn.get("b_O", 0.0) + sum(z[:, h] @ attn["W_O"][h] for h in heads)


def _projection(x: np.ndarray, attn: dict, short: str) -> np.ndarray:
    """x W_Q[h] + b_Q[h] (or K, V) of every head h, stacked: [T,d] -> [T,H,dh]."""
    heads = range(attn[f"W_{short}"].shape[0])
    bias = attn.get(f"b_{short}")
    return np.stack([x @ attn[f"W_{short}"][h] + (0.0 if bias is None else bias[h])
                     for h in heads], axis=1)  # fmt: skip


def reference_mlp(x: np.ndarray, mlp: dict, cfg: TransformerConfig, at, block: str):
    """The MLP on [T,d], recording hook_pre (the gate's pre-activation when gated),
    hook_pre_linear (gated) and hook_post through `at(name, value)`."""
    pre = at(f"{block}.mlp.hook_pre", x @ mlp[_first(cfg)] + mlp.get(_first(cfg, "b"), 0.0))
    post = ACTIVATIONS[cfg.act_fn](pre)
    if cfg.gated_mlp:
        linear = at(f"{block}.mlp.hook_pre_linear", x @ mlp["W_in"] + mlp.get("b_in", 0.0))
        post = post * linear
    post = at(f"{block}.mlp.hook_post", post)
    return post @ mlp["W_out"] + mlp.get("b_out", 0.0)


def _first(cfg: TransformerConfig, kind: str = "W") -> str:
    """The MLP's first matrix (or bias): the gate's when gated, else W_in's."""
    return f"{kind}_gate" if cfg.gated_mlp else f"{kind}_in"


def _parts(params: dict) -> dict[str, dict[str, np.ndarray]]:
    """Parameters in float64 grouped by part: {"blocks.0.attn": {"W_Q": ...}, "ln_final": ...}."""
    parts: dict[str, dict[str, np.ndarray]] = {}
    for name, value in params.items():
        part, short = name.rsplit(".", 1)
        parts.setdefault(part, {})[short] = np.asarray(value, dtype=np.float64)
    return parts


def _reference_sequence(cfg: TransformerConfig, parts: dict, sequence, edit) -> dict:
    """Every activation (by hook name) and the logits of one sequence. `edit(name, value)`
    returns the value the computation goes on with at each hook point (and records)."""
    acts: dict[str, np.ndarray] = {}

    def at(name: str, value: np.ndarray) -> np.ndarray:
        acts[name] = edit(name, value)
        return acts[name]

    n_pos = len(sequence)
    W_E = parts["embed"]["W_E"]
    x = at("hook_embed", np.stack([W_E[token] for token in sequence]))  # [T,d]
    if cfg.pos_embed == "learned":
        x = x + at("hook_pos_embed", parts["pos_embed"]["W_pos"][:n_pos])
    elif cfg.pos_embed == "sinusoidal":
        x = x + at("hook_pos_embed", reference_sinusoidal(n_pos, cfg.d_model))

    def norm(name: str, value: np.ndarray) -> np.ndarray:
        part = parts.get(name, {})

        def edit_scale(scale):
            return at(f"{name}.hook_scale", scale)

        if cfg.normalization == "rmsnorm":
            out = reference_rms_norm(value, part.get("w"), cfg.ln_eps, edit_scale)
        else:
            out = reference_layer_norm(value, part.get("w"), part.get("b"), cfg.ln_eps, edit_scale)
        return at(f"{name}.hook_normalized", out)

    for layer in range(cfg.n_layers):
        block = f"blocks.{layer}"
        attn, mlp = parts.get(f"{block}.attn", {}), parts[f"{block}.mlp"]
        x = at(f"{block}.hook_resid_pre", x)

        def attention(value, block=block, attn=attn):
            out = reference_attention(
                value, attn, cfg, lambda name, v: at(f"{block}.attn.{name}", v)
            )
            return at(f"{block}.hook_attn_out", out)

        def feed_forward(value, block=block, mlp=mlp):
            return at(f"{block}.hook_mlp_out", reference_mlp(value, mlp, cfg, at, block))

        if cfg.parallel_attn_mlp:
            attn_out = attention(norm(f"{block}.ln1", x))
            x = x + attn_out + feed_forward(norm(f"{block}.ln2", x))
        elif cfg.norm == "pre":
            resid_mid = at(f"{block}.hook_resid_mid", x + attention(norm(f"{block}.ln1", x)))
            x = resid_mid + feed_forward(norm(f"{block}.ln2", resid_mid))
        else:
            resid_mid = at(f"{block}.hook_resid_mid", norm(f"{block}.ln1", x + attention(x)))
            x = norm(f"{block}.ln2", resid_mid + feed_forward(resid_mid))
        x = at(f"{block}.hook_resid_post", x)
    if cfg.final_ln:
        x = norm("ln_final", x)
    logits = x @ parts["unembed"]["W_U"]
    if cfg.unembed_bias:
        logits = logits + parts["unembed"]["b_U"]
    acts["logits"] = logits
    return acts


def reference_forward(
    cfg: TransformerConfig, params: dict, tokens, added: dict | None = None
) -> tuple[np.ndarray, dict]:
    """(logits [B,T,V], activations by hook name), one sequence at a time.

    `added` maps hook names to arrays of the model's batched activation shape: at that hook
    point the computation goes on with the activation plus the array (a hook's replacement).
    """
    added, parts = added or {}, _parts(params)
    per_sequence = []
    for row, sequence in enumerate(np.asarray(tokens)):

        def edit(name, value, row=row):
            return value + added[name][row] if name in added else value

        per_sequence.append(_reference_sequence(cfg, parts, list(sequence), edit))
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
    atol = rtol / 100 * max(scale, 1e-300)
    gap = np.abs(actual[finite] - expected[finite])
    if np.array_equal(actual[~finite], expected[~finite], equal_nan=True) and np.all(
        gap <= atol + rtol * np.abs(expected[finite])
    ):
        return  # the fast path of the common case; numpy's check below words a failure
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=err_msg)
