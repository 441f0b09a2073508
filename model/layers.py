"""Pure forward/backward pairs for every layer of the transformer (llm.c style).

Each `*_forward` returns `(out, cache)`; the matching `*_backward(dout, cache)` returns
`(dx, dparams)`, where `dparams` maps the layer's short parameter names (`W_in`, `b_in`, ...)
to gradients of the same shape. Layers with hook points take `hook(name, value) -> value`,
which may record or replace an activation; the backward pass uses whatever the hook returned.

Shapes: B batch, T positions, d d_model, H heads, dh d_head, M d_mlp, V vocab.

Besides NumPy, model/ imports `scipy.special.erf` for the exact GELU (scipy is a core dependency).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.special import erf

Hook = Callable[[str, np.ndarray], np.ndarray]
# Python floats, not NumPy scalars: a float64 NumPy scalar would turn float32 arrays float64.
GELU_C = math.sqrt(2.0 / math.pi)
GELU_CUBIC = 0.044715
SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def no_hook(name: str, value: np.ndarray) -> np.ndarray:
    return value


# ---------------------------------------------------------------- embeddings


def embed_forward(tokens: np.ndarray, W_E: np.ndarray):
    out = W_E[tokens]  # [B,T] -> [B,T,d]
    return out, (tokens, W_E.shape)


def embed_backward(dout: np.ndarray, cache):
    """Sum the rows of `dout` per token: sorted once, then one reduceat (3x faster than add.at)."""
    tokens, shape = cache
    flat = tokens.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_tokens = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_tokens[1:] != sorted_tokens[:-1]])  # [distinct]
    dW_E = np.zeros(shape, dtype=dout.dtype)
    dW_E[sorted_tokens[starts]] = np.add.reduceat(dout.reshape(-1, shape[1])[order], starts)
    return None, {"W_E": dW_E}


def pos_embed_forward(W_pos: np.ndarray, batch: int, n_pos: int):
    # [T,d] -> [B,T,d], a real array: a hook may edit it in place
    out = np.broadcast_to(W_pos[:n_pos], (batch, n_pos, W_pos.shape[1])).copy()
    return out, (W_pos.shape, n_pos)


def pos_embed_backward(dout: np.ndarray, cache):
    shape, n_pos = cache
    dW_pos = np.zeros(shape, dtype=dout.dtype)
    dW_pos[:n_pos] = dout.sum(axis=0)  # [B,T,d] -> [T,d]; rows >= T get no gradient
    return None, {"W_pos": dW_pos}


def sinusoidal_table(n_ctx: int, d_model: int, dtype=np.float64) -> np.ndarray:
    """Vaswani et al.'s fixed positions: sin on even dims, cos on odd dims, [n_ctx, d_model]."""
    positions = np.arange(n_ctx)[:, None]  # [n_ctx,1]
    rates = 10000.0 ** (-np.arange(0, d_model, 2) / d_model)  # [ceil(d/2)]
    angles = positions * rates  # [n_ctx,ceil(d/2)]
    table = np.empty((n_ctx, d_model))
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, : d_model // 2])
    return table.astype(dtype)


# ---------------------------------------------------------------- LayerNorm


def layer_norm_forward(x, w: np.ndarray | None, b: np.ndarray | None, eps: float,
                       hook: Hook = no_hook):  # fmt: skip
    """LayerNorm over the last axis with population variance; `w`, `b` None means no affine.
    The divisor sqrt(var + eps) [...,1] passes hook point `hook_scale` (TransformerLens's)."""
    xhat = x - row_mean(x)
    variance = np.einsum("...i,...i->...", xhat, xhat)[..., None] / x.shape[-1]  # [...,1]
    variance += eps
    rstd = 1.0 / hook("hook_scale", np.sqrt(variance, out=variance))
    xhat *= rstd
    if w is None:
        return xhat, (xhat, rstd, w)
    out = xhat * w
    out += b
    return out, (xhat, rstd, w)


def layer_norm_backward(dout: np.ndarray, cache):
    xhat, rstd, w = cache
    d = dout.shape[-1]
    dxhat = dout if w is None else dout * w
    mean_dxhat = row_mean(dxhat)
    mean_dxhat_xhat = np.einsum("...i,...i->...", dxhat, xhat)[..., None] / d
    dx = xhat * -mean_dxhat_xhat  # rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    dx += dxhat
    dx -= mean_dxhat
    dx *= rstd
    if w is None:
        return dx, {}
    dout2, xhat2 = dout.reshape(-1, d), xhat.reshape(-1, d)
    return dx, {"w": np.einsum("ni,ni->i", dout2, xhat2), "b": dout2.sum(axis=0)}


def rms_norm_forward(x: np.ndarray, w: np.ndarray | None, eps: float, hook: Hook = no_hook):
    """RMSNorm over the last axis: x / sqrt(mean(x²) + eps) * w (no centring, no bias); the
    divisor [...,1] passes hook point `hook_scale`. `w` None means no gain."""
    mean_square = np.einsum("...i,...i->...", x, x)[..., None] / x.shape[-1]  # [...,1]
    mean_square += eps
    rrms = 1.0 / hook("hook_scale", np.sqrt(mean_square, out=mean_square))
    xhat = x * rrms
    out = xhat if w is None else xhat * w
    return out, (xhat, rrms, w)


def rms_norm_backward(dout: np.ndarray, cache):
    """dx = r (g - xhat mean(g xhat)), g = dout * w, xhat = x r; dw = sum(dout * xhat)."""
    xhat, rrms, w = cache
    d = dout.shape[-1]
    dxhat = dout if w is None else dout * w
    mean_dxhat_xhat = np.einsum("...i,...i->...", dxhat, xhat)[..., None] / d
    dx = xhat * -mean_dxhat_xhat
    dx += dxhat
    dx *= rrms
    if w is None:
        return dx, {}
    return dx, {"w": np.einsum("ni,ni->i", dout.reshape(-1, d), xhat.reshape(-1, d))}


NORMS = {
    "layernorm": (layer_norm_forward, layer_norm_backward),
    "rmsnorm": (rms_norm_forward, rms_norm_backward),
}


def norm_forward(x: np.ndarray, params: dict, kind: str, eps: float, hook: Hook = no_hook):
    """The config's norm (`normalization`) with its parameters {"w", "b"} (any absent)."""
    if kind == "rmsnorm":
        return rms_norm_forward(x, params.get("w"), eps, hook)
    return layer_norm_forward(x, params.get("w"), params.get("b"), eps, hook)


# ---------------------------------------------------------------- rotary


def rotary_table(n_pos: int, rotary_dim: int, base: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of the angles p θ_i, θ_i = base^(-2i / rotary_dim): each [T, rotary_dim / 2]."""
    inv_freq = base ** (-np.arange(0, rotary_dim, 2) / rotary_dim)  # [rd/2]
    angles = np.arange(n_pos)[:, None] * inv_freq  # [T,rd/2]
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


def rotary_forward(x: np.ndarray, table, sign: float = 1.0) -> np.ndarray:
    """Rotate each head's first rotary_dim dimensions by its position, in GPT-NeoX's (and HF
    Llama's) rotate-half layout: the pairs are (i, i + rd/2), not adjacent dimensions.
    x [B,T,H,dh] -> [B,T,H,dh]; dimensions from rd on pass through. `sign` -1 rotates back
    (the transpose: the backward pass)."""
    cos, sin = table  # [T,rd/2]
    half = cos.shape[1]
    cos, sin = cos[:, None, :], sin[:, None, :] * sign  # [T,1,rd/2]
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    out = np.empty(x.shape, x.dtype)  # written once: no copy of x, no temporary but one
    out1, out2 = out[..., :half], out[..., half : 2 * half]
    np.multiply(x1, cos, out=out1)
    product = x2 * sin  # [B,T,H,rd/2]
    out1 -= product
    np.multiply(x2, cos, out=out2)
    np.multiply(x1, sin, out=product)
    out2 += product
    out[..., 2 * half :] = x[..., 2 * half :]
    return out


# ---------------------------------------------------------------- softmax


def softmax(scores: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Softmax over the last axis; masked entries may be -inf (each row needs one finite entry).
    `out` (may be `scores` itself) receives it. Long rows take their max by np.fmax, which
    skips NaN where np.max returns it, and runs 1.6x faster: a row with a NaN comes out all NaN
    either way (its sum is NaN), and every other row gets the same max."""
    long_rows = scores.shape[-1] > SHORT_ROW
    top = np.fmax.reduce(scores, axis=-1, keepdims=True) if long_rows else row_max(scores)
    out = np.subtract(scores, top, out=out)
    np.exp(out, out=out)
    out /= row_sum(out)
    return out


# NumPy reduces a short last axis row by row, slowly: np.sum(axis=-1) of rows of 4 costs 4x
# einsum's, and np.max 15x the max over the leading axis of the transposed copy.
SHORT_ROW = 16


def row_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis, kept as a length-1 axis: [..., n] -> [..., 1]."""
    return np.einsum("...i->...", a)[..., None]


def row_mean(a: np.ndarray) -> np.ndarray:
    return row_sum(a) / a.shape[-1]


def row_max(a: np.ndarray) -> np.ndarray:
    """Max over the last axis, kept as a length-1 axis: [..., n] -> [..., 1]."""
    if a.shape[-1] > SHORT_ROW:
        return a.max(axis=-1, keepdims=True)
    return np.ascontiguousarray(np.moveaxis(a, -1, 0)).max(axis=0)[..., None]


def softmax_backward(dout: np.ndarray, probs: np.ndarray) -> np.ndarray:
    inner = np.einsum("...i,...i->...", dout, probs)[..., None]  # <dout, probs> per row
    grad = dout - inner
    grad *= probs
    return grad


# ---------------------------------------------------------------- attention


def causal_mask(n_pos: int, dtype) -> np.ndarray:
    """0 on and below the diagonal, -inf above: added to scores so a query sees no later key."""
    return np.triu(np.full((n_pos, n_pos), -np.inf, dtype=dtype), k=1)  # [T,T]


def attend_forward(q, k, v, scale: float, causal: bool, hook: Hook):
    """Scaled dot-product attention on [B,T,H,dh] queries, keys, values; returns z [B,T,H,dh]."""
    q_t = q.transpose(0, 2, 1, 3)  # [B,H,T,dh]
    k_t = k.transpose(0, 2, 3, 1)  # [B,H,dh,T]
    v_t = v.transpose(0, 2, 1, 3)  # [B,H,T,dh]
    scores = q_t @ k_t  # [B,H,T,T]
    if scale != 1.0:
        scores *= scale
    if causal:
        scores += causal_mask(q.shape[1], scores.dtype)
    scores = hook("hook_attn_scores", scores)
    in_place = scores if hook is no_hook else None  # no hook may hold the scores: reuse them
    pattern = hook("hook_pattern", softmax(scores, out=in_place))  # [B,H,Tq,Tk]
    z = hook("hook_z", (pattern @ v_t).transpose(0, 2, 1, 3))  # [B,H,T,dh] -> [B,T,H,dh]
    return z, (q_t, k_t, v_t, pattern, scale)


def attend_backward(dz: np.ndarray, cache):
    """Gradients of z with respect to q, k, v, each [B,T,H,dh]."""
    q_t, k_t, v_t, pattern, scale = cache
    dz_t = dz.transpose(0, 2, 1, 3)  # [B,H,T,dh]
    dv_t = pattern.transpose(0, 1, 3, 2) @ dz_t  # [B,H,Tk,dh]
    dscores = softmax_backward(dz_t @ v_t.transpose(0, 1, 3, 2), pattern)  # [B,H,Tq,Tk]
    if scale != 1.0:
        dscores *= scale
    dq_t = dscores @ k_t.transpose(0, 1, 3, 2)  # [B,H,Tq,dh]
    dk_t = dscores.transpose(0, 1, 3, 2) @ q_t  # [B,H,Tk,dh]
    return tuple(g.transpose(0, 2, 1, 3) for g in (dq_t, dk_t, dv_t))


def attention_forward(x: np.ndarray, params: dict, causal: bool, hook: Hook, rotary=None):
    """Multi-head attention with Q, K, V, O projections (biases if present), scaled by
    1/sqrt(dh). Keys and values may have fewer heads than queries (grouped-query attention:
    W_K, W_V [H_kv,d,dh]; query head h reads key head h // (H / H_kv)). `rotary`, a
    `rotary_table`, rotates queries and keys after hook_q / hook_k (hook_rot_q, hook_rot_k)."""
    B, T, d = x.shape
    H, _, dh = params["W_Q"].shape
    H_kv = params["W_K"].shape[0]
    x2 = x.reshape(B * T, d)
    W_qkv = _stack_qkv(params)  # [d,(H+2*H_kv)*dh]
    qkv = x2 @ W_qkv  # [B*T,(H+2*H_kv)*dh]
    if "b_Q" in params:
        qkv += np.concatenate([params["b_Q"], params["b_K"], params["b_V"]]).reshape(-1)
    qkv = qkv.reshape(B, T, H + 2 * H_kv, dh)
    q = hook("hook_q", qkv[:, :, :H])  # [B,T,H,dh]
    k = hook("hook_k", qkv[:, :, H : H + H_kv])  # [B,T,H_kv,dh]
    v = hook("hook_v", qkv[:, :, H + H_kv :])
    if rotary is not None:
        q = hook("hook_rot_q", rotary_forward(q, rotary))
        k = hook("hook_rot_k", rotary_forward(k, rotary))
    group = H // H_kv
    z, attend_cache = attend_forward(q, _repeat_heads(k, group), _repeat_heads(v, group),
                                     1.0 / np.sqrt(dh), causal, hook)  # fmt: skip
    z2 = z.reshape(B * T, H * dh)
    out = z2 @ params["W_O"].reshape(H * dh, d)  # [B*T,d]
    if "b_O" in params:
        out += params["b_O"]
    cache = (x2, W_qkv, z2, attend_cache, params["W_O"], H_kv, rotary, "b_Q" in params)
    return out.reshape(B, T, d), cache


def attention_backward(dout: np.ndarray, cache):
    x2, W_qkv, z2, attend_cache, W_O, H_kv, rotary, has_bias = cache
    B, T, d = dout.shape
    H, dh, _ = W_O.shape
    dout2 = dout.reshape(B * T, d)
    grads = {"W_O": (z2.T @ dout2).reshape(H, dh, d)}
    dz = (dout2 @ W_O.reshape(H * dh, d).T).reshape(B, T, H, dh)
    dq, dk, dv = attend_backward(dz, attend_cache)
    dk, dv = _sum_heads(dk, H // H_kv), _sum_heads(dv, H // H_kv)  # [B,T,H_kv,dh]
    if rotary is not None:
        dq, dk = rotary_forward(dq, rotary, sign=-1.0), rotary_forward(dk, rotary, sign=-1.0)
    dqkv = np.concatenate([dq, dk, dv], axis=2).reshape(B * T, -1)  # [B*T,(H+2*H_kv)*dh]
    dW_qkv = (x2.T @ dqkv).reshape(d, H + 2 * H_kv, dh)  # [d,H+2*H_kv,dh]
    dx = (dqkv @ W_qkv.T).reshape(B, T, d)
    grads["W_Q"] = dW_qkv[:, :H].transpose(1, 0, 2)  # [H,d,dh]
    grads["W_K"] = dW_qkv[:, H : H + H_kv].transpose(1, 0, 2)  # [H_kv,d,dh]
    grads["W_V"] = dW_qkv[:, H + H_kv :].transpose(1, 0, 2)
    if has_bias:
        db_qkv = dqkv.sum(axis=0).reshape(H + 2 * H_kv, dh)
        grads.update(b_Q=db_qkv[:H], b_K=db_qkv[H : H + H_kv], b_V=db_qkv[H + H_kv :])
        grads["b_O"] = dout2.sum(axis=0)
    return dx, grads


def _repeat_heads(a: np.ndarray, group: int) -> np.ndarray:
    """[B,T,H_kv,dh] -> [B,T,H_kv*group,dh], each head repeated `group` times in a row."""
    return a if group == 1 else np.repeat(a, group, axis=2)


def _sum_heads(a: np.ndarray, group: int) -> np.ndarray:
    """The transpose of _repeat_heads: [B,T,H_kv*group,dh] -> [B,T,H_kv,dh]."""
    if group == 1:
        return a
    B, T, H, dh = a.shape
    return a.reshape(B, T, H // group, group, dh).sum(axis=3)


def _stack_qkv(params: dict) -> np.ndarray:
    """W_Q [H,d,dh], W_K and W_V [H_kv,d,dh] side by side as one [d, (H+2*H_kv)*dh] matrix: one
    GEMM for all three."""
    W = np.concatenate([params["W_Q"], params["W_K"], params["W_V"]])  # [H+2*H_kv,d,dh]
    heads, d, dh = W.shape
    return W.transpose(1, 0, 2).reshape(d, heads * dh)


def parameter_free_attention_forward(x: np.ndarray, causal: bool, hook: Hook):
    """The seed's attention: softmax(x xᵀ) x with no weights and no scaling (one head, dh = d)."""
    B, T, d = x.shape
    heads = x.reshape(B, T, 1, d)  # [B,T,1,d]: queries, keys and values are the input itself
    # A hook may edit its activation in place: it then gets a copy, not the shared input.
    own = heads.copy if hook is not no_hook else lambda: heads
    q, k, v = hook("hook_q", own()), hook("hook_k", own()), hook("hook_v", own())
    z, attend_cache = attend_forward(q, k, v, 1.0, causal, hook)
    return z.reshape(B, T, d), attend_cache


def parameter_free_attention_backward(dout: np.ndarray, cache):
    B, T, d = dout.shape
    dq, dk, dv = attend_backward(dout.reshape(B, T, 1, d), cache)
    return (dq + dk + dv).reshape(B, T, d), {}


# ---------------------------------------------------------------- MLP


def relu_forward(x: np.ndarray):
    return np.maximum(x, 0), x


def relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    return dout * (x > 0)


def gelu_forward(x: np.ndarray):
    """GELU, exact ("gelu" in TransformerLens, HF and PyTorch): x Φ(x) = 0.5 x (1 + erf(x / √2)).

    The erf is kept for the backward pass: (out, (x, erf))."""
    erf_term = x * SQRT_HALF
    erf(erf_term, out=erf_term)
    out = erf_term + 1
    out *= x
    out *= 0.5
    return out, (x, erf_term)


def gelu_backward(dout: np.ndarray, cache) -> np.ndarray:
    """dout * [Φ(x) + x φ(x)] = dout * [0.5 (1 + erf(x / √2)) + x exp(-x² / 2) / √(2π)]."""
    x, erf_term = cache
    density = x * x
    density *= -0.5
    np.exp(density, out=density)
    density *= x
    density *= INV_SQRT_2PI
    grad = erf_term + 1
    grad *= 0.5
    grad += density
    grad *= dout
    return grad


def gelu_new_forward(x: np.ndarray):
    """GELU, tanh approximation (GPT-2's; "gelu_new" in TransformerLens and HF):
    0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x³), computed as x σ(2u) with the logistic
    σ(z) = 1 / (1 + exp(-z)), the same function (0.5 (1 + tanh(u)) = σ(2u)): NumPy's exp is
    vectorized and its tanh is not, so this form runs 2x faster, and it loses no digits where
    tanh(u) nears -1.

    σ(2u) is kept for the backward pass: (out, (x, σ(2u)))."""
    sigma = x * x
    sigma *= -2 * GELU_CUBIC * GELU_C
    sigma -= 2 * GELU_C
    sigma *= x  # -2u
    with np.errstate(over="ignore"):  # exp(-2u) = inf for u << 0: σ = 0, as it should be
        np.exp(sigma, out=sigma)
    sigma += 1
    np.reciprocal(sigma, out=sigma)
    return x * sigma, (x, sigma)


def gelu_new_backward(dout: np.ndarray, cache) -> np.ndarray:
    """dout * [0.5 (1 + t) + 0.5 x (1 - t²) sqrt(2/pi) (1 + 3 * 0.044715 x²)], t = tanh(u);
    with s = σ(2u) = 0.5 (1 + t) and 1 - t² = 4 s (1 - s): dout * [s + 2 x s (1 - s) u'(x)]."""
    x, sigma = cache
    grad = x * x
    grad *= 3 * GELU_CUBIC
    grad += 1
    grad *= 2 * GELU_C  # 2 u'(x)
    grad *= x
    grad *= sigma
    grad *= 1 - sigma
    grad += sigma
    grad *= dout
    return grad


def silu_forward(x: np.ndarray):
    """SiLU (Llama's): x σ(x), σ(x) = 1 / (1 + exp(-x)); σ(x) is kept for the backward pass."""
    sigma = np.negative(x)
    with np.errstate(over="ignore"):  # exp(-x) = inf for x << 0: σ = 0, as it should be
        np.exp(sigma, out=sigma)
    sigma += 1
    np.reciprocal(sigma, out=sigma)
    return x * sigma, (x, sigma)


def silu_backward(dout: np.ndarray, cache) -> np.ndarray:
    """dout * [σ(x) + x σ(x) (1 - σ(x))]."""
    x, sigma = cache
    grad = 1 - sigma
    grad *= x
    grad += 1
    grad *= sigma
    grad *= dout
    return grad


ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "gelu": (gelu_forward, gelu_backward),
    "gelu_new": (gelu_new_forward, gelu_new_backward),
    "silu": (silu_forward, silu_backward),
}


def mlp_forward(x: np.ndarray, params: dict, act_fn: str, hook: Hook):
    """act(x W_in + b_in) W_out + b_out; gated (W_gate present, Llama's SwiGLU):
    (act(x W_gate + b_gate) * (x W_in + b_in)) W_out + b_out. Biases only if present."""
    if "W_gate" in params:
        return _gated_mlp_forward(x, params, act_fn, hook)
    B, T, d = x.shape
    x2 = x.reshape(B * T, d)
    pre = x2 @ params["W_in"]  # [B*T,M]
    if "b_in" in params:
        pre += params["b_in"]
    pre = hook("hook_pre", pre.reshape(B, T, -1))
    post, act_cache = ACTIVATIONS[act_fn][0](pre)
    post2 = hook("hook_post", post).reshape(B * T, -1)
    return _mlp_out(post2, params, (B, T, d)), (x2, act_cache, post2, params, act_fn, None)


def _gated_mlp_forward(x: np.ndarray, params: dict, act_fn: str, hook: Hook):
    B, T, d = x.shape
    M = params["W_in"].shape[1]
    x2 = x.reshape(B * T, d)
    both = x2 @ np.concatenate([params["W_gate"], params["W_in"]], axis=1)  # [B*T,2M]
    if "b_in" in params:
        both += np.concatenate([params["b_gate"], params["b_in"]])
    both = both.reshape(B, T, 2 * M)
    pre = hook("hook_pre", both[..., :M])  # [B,T,M]
    linear = hook("hook_pre_linear", both[..., M:])
    act, act_cache = ACTIVATIONS[act_fn][0](pre)
    post2 = hook("hook_post", act * linear).reshape(B * T, -1)
    cache = (x2, act_cache, post2, params, act_fn, (act, linear))
    return _mlp_out(post2, params, (B, T, d)), cache


def _mlp_out(post2: np.ndarray, params: dict, shape: tuple[int, int, int]) -> np.ndarray:
    out = post2 @ params["W_out"]  # [B*T,d]
    if "b_out" in params:
        out += params["b_out"]
    return out.reshape(shape)


def mlp_backward(dout: np.ndarray, cache):
    x2, act_cache, post2, params, act_fn, gate = cache
    B, T, d = dout.shape
    dout2 = dout.reshape(B * T, d)
    dpost = (dout2 @ params["W_out"].T).reshape(B, T, -1)  # [B,T,M]
    grads = {"W_out": post2.T @ dout2}
    if gate is None:
        inputs = {"in": ACTIVATIONS[act_fn][1](dpost, act_cache).reshape(B * T, -1)}
    else:
        act, linear = gate
        dpre = ACTIVATIONS[act_fn][1](dpost * linear, act_cache)
        inputs = {"gate": dpre.reshape(B * T, -1), "in": (dpost * act).reshape(B * T, -1)}
    dx = None
    for name, dpre2 in inputs.items():  # dpre2 [B*T,M]
        grads[f"W_{name}"] = x2.T @ dpre2
        part = dpre2 @ params[f"W_{name}"].T  # [B*T,d]
        dx = part if dx is None else np.add(dx, part, out=dx)
        if "b_in" in params:
            grads[f"b_{name}"] = dpre2.sum(axis=0)
    if "b_out" in params:
        grads["b_out"] = dout2.sum(axis=0)
    return dx.reshape(B, T, d), grads


# ---------------------------------------------------------------- unembed and loss


def unembed_forward(x: np.ndarray, W_U: np.ndarray, b_U: np.ndarray | None):
    B, T, d = x.shape
    x2 = x.reshape(B * T, d)
    logits = x2 @ W_U  # [B*T,V]
    if b_U is not None:
        logits += b_U
    return logits.reshape(B, T, -1), (x2, W_U, b_U is not None)


def unembed_backward(dout: np.ndarray, cache):
    x2, W_U, has_bias = cache
    B, T, V = dout.shape
    dout2 = dout.reshape(B * T, V)
    grads = {"W_U": x2.T @ dout2}
    if has_bias:
        grads["b_U"] = dout2.sum(axis=0)
    return (dout2 @ W_U.T).reshape(B, T, -1), grads


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, by log-sum-exp: [..., V] -> [..., V]."""
    shifted = logits - row_max(logits)
    shifted -= np.log(row_sum(np.exp(shifted)))
    return shifted


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray, weights: np.ndarray):
    """Weighted mean of -log softmax(logits)[target]; `weights` [B,T] sum to 1."""
    log_probs = log_softmax(logits)  # [B,T,V]
    target_log_prob = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]  # [B,T]
    loss = -float((target_log_prob * weights).sum())
    return loss, (log_probs, targets, weights)


def cross_entropy_backward(dloss: float, cache):
    log_probs, targets, weights = cache
    dlogits = np.exp(log_probs)  # softmax, [B,T,V]
    np.put_along_axis(
        dlogits, targets[..., None], np.take_along_axis(dlogits, targets[..., None], -1) - 1, -1
    )
    dlogits *= (dloss * weights)[..., None]
    return dlogits, {}
