"""The same transformer in PyTorch eager, on the same weights: the speed yardstick of `bench/`.

Only the benchmarks import this (PyTorch is the optional `bench` extra). It mirrors
`mechclaims.model.transformer` op for op so both sides do the same arithmetic.
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
    if cfg.pos_embed == "learned":
        pos = params["pos_embed.W_pos"][:n_pos]
    else:
        pos = torch.tensor(sinusoidal_table(cfg.n_ctx, cfg.d_model, cfg.dtype)[:n_pos])
    x = params["embed.W_E"][tokens] + pos
    mask = torch.triu(torch.full((n_pos, n_pos), -math.inf, dtype=x.dtype), 1)
    for layer in range(cfg.n_layers):
        x = _block(cfg, params, f"blocks.{layer}", x, mask)
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


def _block(cfg, params, block, x, mask):
    if cfg.norm == "pre":
        x = x + _attention(cfg, params, block, _norm(cfg, params, f"{block}.ln1", x), mask)
        return x + _mlp(cfg, params, block, _norm(cfg, params, f"{block}.ln2", x))
    x = _norm(cfg, params, f"{block}.ln1", x + _attention(cfg, params, block, x, mask))
    return _norm(cfg, params, f"{block}.ln2", x + _mlp(cfg, params, block, x))


def _norm(cfg, params, name, x):
    weight, bias = params.get(f"{name}.w"), params.get(f"{name}.b")
    return F.layer_norm(x, (cfg.d_model,), weight, bias, cfg.ln_eps)


def _attention(cfg, params, block, x, mask):
    B, T, d = x.shape
    if cfg.attention == "parameter-free":
        scores = x @ x.transpose(1, 2)
        pattern = torch.softmax(scores + mask if cfg.causal else scores, dim=-1)
        return pattern @ x
    H, dh = cfg.n_heads, cfg.d_head
    a = f"{block}.attn"
    W_qkv = torch.cat([params[f"{a}.W_{n}"].permute(1, 0, 2).reshape(d, H * dh) for n in "QKV"], 1)
    b_qkv = torch.cat([params[f"{a}.b_{n}"].reshape(-1) for n in "QKV"])
    qkv = (x @ W_qkv + b_qkv).reshape(B, T, 3, H, dh).permute(2, 0, 3, 1, 4)  # [3,B,H,T,dh]
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
    pattern = torch.softmax(scores + mask if cfg.causal else scores, dim=-1)
    z = (pattern @ v).transpose(1, 2).reshape(B, T, H * dh)
    return z @ params[f"{a}.W_O"].reshape(H * dh, d) + params[f"{a}.b_O"]


def _mlp(cfg, params, block, x):
    m = f"{block}.mlp"
    pre = x @ params[f"{m}.W_in"] + params[f"{m}.b_in"]
    post = ACTIVATIONS[cfg.act_fn](pre)
    return post @ params[f"{m}.W_out"] + params[f"{m}.b_out"]
