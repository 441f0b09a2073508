"""The same transformer in PyTorch eager, on the same weights: the speed yardstick of `bench/`.

Only the benchmarks import this (PyTorch is the optional `bench` extra). It mirrors
`mechclaims.model.transformer` op for op so both sides do the same arithmetic: every variant a
`TransformerConfig` names (LayerNorm or RMSNorm, learned, sinusoidal or rotary positions,
grouped-query attention, gated MLPs, parallel attention and MLP, optional biases), written as
PyTorch eager code writes it (HF's GPT-NeoX and Llama for the rotary and the repeated heads).
bench/test_twin.py checks that it computes our model's function.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mechclaims.model.config import TransformerConfig
from mechclaims.model.layers import sinusoidal_table

ACTIVATIONS = {
    "relu": torch.relu,
    "gelu": F.gelu,  # exact, erf
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


def torch_params(params: dict[str, np.ndarray], requires_grad: bool = False) -> dict:
    return {
        name: torch.tensor(value, requires_grad=requires_grad) for name, value in params.items()
    }


def forward(
    cfg: TransformerConfig, params: dict, tokens: torch.Tensor, resid_posts: list | None = None
) -> torch.Tensor:
    """Logits [B,T,V]; the activations a full cache would hold are all computed on the way.
    `resid_posts`, if given, receives each block's output (a cache of every hook_resid_post)."""
    n_pos = tokens.shape[1]
    x = params["embed.W_E"][tokens]  # [B,T,d]
    if cfg.pos_embed == "learned":
        x = x + params["pos_embed.W_pos"][:n_pos]
    elif cfg.pos_embed == "sinusoidal":
        x = x + torch.tensor(sinusoidal_table(cfg.n_ctx, cfg.d_model, cfg.dtype)[:n_pos])
    rotary = _rotary_table(cfg, n_pos, x.dtype) if cfg.pos_embed == "rotary" else None
    mask = torch.triu(torch.full((n_pos, n_pos), -math.inf, dtype=x.dtype), 1)
    for layer in range(cfg.n_layers):
        x = _block(cfg, params, f"blocks.{layer}", x, mask, rotary)
        if resid_posts is not None:
            resid_posts.append(x)
    if cfg.final_ln:
        x = _norm(cfg, params, "ln_final", x)
    logits = x @ params["unembed.W_U"]
    if cfg.unembed_bias:
        logits = logits + params["unembed.b_U"]
    return logits


def loss(cfg: TransformerConfig, params: dict, tokens, targets) -> torch.Tensor:
    logits = forward(cfg, params, tokens)
    return F.cross_entropy(logits.reshape(-1, cfg.vocab_size), targets.reshape(-1))


def _block(cfg, params, block, x, mask, rotary):
    def attention(x):
        return _attention(cfg, params, block, x, mask, rotary)

    if cfg.parallel_attn_mlp:
        ln1, ln2 = _norm(cfg, params, f"{block}.ln1", x), _norm(cfg, params, f"{block}.ln2", x)
        return x + attention(ln1) + _mlp(cfg, params, block, ln2)
    if cfg.norm == "pre":
        x = x + attention(_norm(cfg, params, f"{block}.ln1", x))
        return x + _mlp(cfg, params, block, _norm(cfg, params, f"{block}.ln2", x))
    x = _norm(cfg, params, f"{block}.ln1", x + attention(x))
    return _norm(cfg, params, f"{block}.ln2", x + _mlp(cfg, params, block, x))


def _norm(cfg, params, name, x):
    weight, bias = params.get(f"{name}.w"), params.get(f"{name}.b")
    if cfg.normalization == "rmsnorm":
        return F.rms_norm(x, (cfg.d_model,), weight, cfg.ln_eps)
    return F.layer_norm(x, (cfg.d_model,), weight, bias, cfg.ln_eps)


def _rotary_table(cfg, n_pos: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """HF's cos and sin, each [T, rotary_dim]: the angles p θ_i, θ_i = base^(-2i / rd), twice."""
    rd = cfg.rotary_dims
    inv_freq = cfg.rotary_base ** (-torch.arange(0, rd, 2, dtype=torch.float64) / rd)  # [rd/2]
    angles = torch.arange(n_pos, dtype=torch.float64)[:, None] * inv_freq  # [T,rd/2]
    angles = torch.cat((angles, angles), dim=-1)  # [T,rd]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate(x: torch.Tensor, table) -> torch.Tensor:
    """GPT-NeoX's (and HF Llama's) rotary on [B,H,T,dh]: rotate-half on the first rd dims."""
    cos, sin = table  # [T,rd]
    rd = cos.shape[-1]
    x_rot, x_pass = x[..., :rd], x[..., rd:]
    half = rd // 2
    rotated = x_rot * cos + torch.cat((-x_rot[..., half:], x_rot[..., :half]), dim=-1) * sin
    return rotated if rd == x.shape[-1] else torch.cat((rotated, x_pass), dim=-1)


def _attention(cfg, params, block, x, mask, rotary):
    B, T, d = x.shape
    if cfg.attention == "parameter-free":
        scores = x @ x.transpose(1, 2)
        pattern = torch.softmax(scores + mask if cfg.causal else scores, dim=-1)
        return pattern @ x
    H, H_kv, dh = cfg.n_heads, cfg.n_kv_heads, cfg.d_head
    a = f"{block}.attn"
    W_qkv = torch.cat([params[f"{a}.W_{n}"].permute(1, 0, 2).reshape(d, -1) for n in "QKV"], 1)
    qkv = x @ W_qkv  # [B,T,(H+2*H_kv)*dh]
    if cfg.attn_bias:
        qkv = qkv + torch.cat([params[f"{a}.b_{n}"].reshape(-1) for n in "QKV"])
    qkv = qkv.reshape(B, T, H + 2 * H_kv, dh).transpose(1, 2)  # [B,H+2*H_kv,T,dh]
    q, k, v = qkv.split([H, H_kv, H_kv], dim=1)
    if rotary is not None:
        q, k = _rotate(q, rotary), _rotate(k, rotary)
    if H_kv != H:
        k, v = k.repeat_interleave(H // H_kv, dim=1), v.repeat_interleave(H // H_kv, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # [B,H,T,T]
    pattern = torch.softmax(scores + mask if cfg.causal else scores, dim=-1)
    z = (pattern @ v).transpose(1, 2).reshape(B, T, H * dh)
    out = z @ params[f"{a}.W_O"].reshape(H * dh, d)
    return out + params[f"{a}.b_O"] if cfg.attn_bias else out


def _mlp(cfg, params, block, x):
    m = f"{block}.mlp"
    if cfg.gated_mlp:  # one GEMM for gate and input, as ours
        both = x @ torch.cat([params[f"{m}.W_gate"], params[f"{m}.W_in"]], 1)  # [B,T,2M]
        if cfg.mlp_bias:
            both = both + torch.cat([params[f"{m}.b_gate"], params[f"{m}.b_in"]])
        gate, linear = both.chunk(2, dim=-1)
        post = ACTIVATIONS[cfg.act_fn](gate) * linear
    else:
        pre = x @ params[f"{m}.W_in"]
        post = ACTIVATIONS[cfg.act_fn](pre + params[f"{m}.b_in"] if cfg.mlp_bias else pre)
    out = post @ params[f"{m}.W_out"]
    return out + params[f"{m}.b_out"] if cfg.mlp_bias else out
