"""The HF families we read and write, as tables: `gpt2`, `gpt_neox` (Pythia's) and `llama`.

Each `Family` says how an HF config.json becomes our TransformerConfig and back (the sizes, the
options with HF's defaults, what every model of the family is, what we refuse), and where each
of our parameters lies in HF's tensors (`Tensor`). model/pretrained.py does the files.

Layouts (HF's Linear weights are [out, in], ours [in, out]; GPT-2's Conv1D weights [in, out]):
- GPT-2: c_attn's 3d output columns are (Q|K|V, head, d_head); c_proj's rows (head, d_head).
- GPT-NeoX: query_key_value's 3d output rows are fused PER HEAD, (head, Q|K|V, d_head), as
  GPTNeoXAttention views them (`view(..., -1, 3 * head_size)`), not (Q|K|V, head, d_head).
- Llama: q_proj's rows (head, d_head), k_proj's and v_proj's (kv head, d_head); o_proj's
  columns (head, d_head); gate_proj is our W_gate, up_proj W_in, down_proj W_out.

Options are honoured or refused, never ignored: rotary positions are read from the keys that
old checkpoints state (GPT-NeoX's `rotary_pct` and `rotary_emb_base`, Llama's `rope_theta`) and
from transformers 5's `rope_parameters`; keys that disagree are refused, as are scaled rotary
positions, a rotary fraction the model cannot honour (odd or zero dimensions), sliding windows,
ALiBi, experts, normalized queries and keys, and soft-capped logits. Training-only options
(dropout, init range) and generation options do not change the function and are left alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mechclaims.model.config import TransformerConfig

# HF's activation names -> our act_fn (gelu_pytorch_tanh is the tanh form in PyTorch's code;
# swish is HF's other name of SiLU); writing uses the first HF name of each of ours.
ACT_FNS = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new",
           "relu": "relu", "silu": "silu", "swish": "silu"}  # fmt: skip
HF_ACT_FN = {ours: hf for hf, ours in reversed(ACT_FNS.items())}
DEFAULT_THETA = 10000.0  # HF's rope_theta when nothing states one
ROPE_KEYS = ("rope_type", "type", "rope_theta", "partial_rotary_factor")  # default rope's keys
# config.json options of which the model implements only the values listed (absent is fine).
UNSUPPORTED = {
    "rope_scaling": ((None,), "scaled rotary positions"),
    "sliding_window": ((None,), "sliding-window attention"),
    "use_sliding_window": ((False,), "sliding-window attention"),
    "layer_types": ((None,), "layers of different attention types"),
    "alibi": ((False,), "ALiBi positions"),
    "num_experts": ((None, 0), "a mixture of experts"),
    "num_local_experts": ((None, 0), "a mixture of experts"),
    "n_routed_experts": ((None, 0), "a mixture of experts"),
    "num_experts_per_tok": ((None, 0), "a mixture of experts"),
    "use_qk_norm": ((False,), "normalized queries and keys"),
    "qk_layernorm": ((False,), "normalized queries and keys"),
    "attn_logit_softcapping": ((None,), "soft-capped attention logits"),
    "attention_logit_softcapping": ((None,), "soft-capped attention logits"),
    "final_logit_softcapping": ((None,), "soft-capped output logits"),
    "add_cross_attention": ((False,), "cross-attention"),
}


# ---------------------------------------------------------------- tensors


@dataclass(frozen=True)
class Tensor:
    """One HF tensor (its name without the family's prefix, its shape) and the parameters of
    ours it holds. Reading reshapes it to `axes` and transposes by `perm`; several of ours (a
    fused Q|K|V) then lie along the first axis. Writing is the exact inverse."""

    name: str
    shape: tuple[int, ...]
    ours: tuple[str, ...]
    axes: tuple[int, ...]
    perm: tuple[int, ...]

    def read(self, value: np.ndarray) -> dict[str, np.ndarray]:
        moved = value.reshape(self.axes).transpose(self.perm)
        parts = moved if len(self.ours) > 1 else [moved]
        return dict(zip(self.ours, parts, strict=True))

    def write(self, params: dict[str, np.ndarray]) -> np.ndarray:
        parts = [params[name] for name in self.ours]
        moved = np.stack(parts) if len(parts) > 1 else parts[0]
        return np.ascontiguousarray(moved.transpose(np.argsort(self.perm)).reshape(self.shape))


def _same(name: str, ours: str, shape: tuple[int, ...]) -> Tensor:
    """Laid out as ours: embeddings, norm gains and biases, GPT-2's Conv1D weights."""
    return Tensor(name, shape, (ours,), shape, tuple(range(len(shape))))


def _linear(name: str, ours: str, d_out: int, d_in: int) -> Tensor:
    """An HF Linear weight [out, in] -> ours [in, out]."""
    return Tensor(name, (d_out, d_in), (ours,), (d_out, d_in), (1, 0))


def _heads_in(name: str, ours: str, heads: int, dh: int, d: int) -> Tensor:
    """A Linear into heads [heads dh, d] -> W_Q, W_K or W_V [heads, d, dh]."""
    return Tensor(name, (heads * dh, d), (ours,), (heads, dh, d), (0, 2, 1))


def _heads_out(name: str, ours: str, heads: int, dh: int, d: int) -> Tensor:
    """A Linear out of heads [d, heads dh] -> W_O [heads, dh, d]."""
    return Tensor(name, (d, heads * dh), (ours,), (d, heads, dh), (1, 2, 0))


def _conv1d_out(name: str, ours: str, heads: int, dh: int, d: int) -> Tensor:
    """GPT-2's Conv1D out of heads [heads dh, d], rows (head, dh) -> W_O [heads, dh, d]."""
    return Tensor(name, (heads * dh, d), (ours,), (heads, dh, d), (0, 1, 2))


def _head_bias(name: str, ours: str, heads: int, dh: int) -> Tensor:
    """A bias into heads [heads dh] -> [heads, dh]."""
    return Tensor(name, (heads * dh,), (ours,), (heads, dh), (0, 1))


def _norm(name: str, ours: str, cfg: TransformerConfig) -> list[Tensor]:
    """A LayerNorm's weight and bias, an RMSNorm's weight."""
    tensors = [_same(f"{name}.weight", f"{ours}.w", (cfg.d_model,))]
    if cfg.normalization == "layernorm":
        tensors.append(_same(f"{name}.bias", f"{ours}.b", (cfg.d_model,)))
    return tensors


def _qkv(name: str, block: str, kind: str, shape: tuple, axes: tuple, perm: tuple) -> Tensor:
    """Q, K and V fused in one tensor: reshaped to `axes`, transposed by `perm`, Q|K|V first."""
    ours = tuple(f"{block}.attn.{kind}_{which}" for which in "QKV")
    return Tensor(name, shape, ours, axes, perm)


def _gpt2_tensors(cfg: TransformerConfig) -> list[Tensor]:
    d, H, dh, M = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp
    tensors = [_same("wte.weight", "embed.W_E", (cfg.vocab_size, d)),
               _same("wpe.weight", "pos_embed.W_pos", (cfg.n_ctx, d))]  # fmt: skip
    for layer in range(cfg.n_layers):
        h, block = f"h.{layer}", f"blocks.{layer}"
        tensors += [
            *_norm(f"{h}.ln_1", f"{block}.ln1", cfg),
            # [d, 3d], columns (Q|K|V, head, dh) -> (Q|K|V) x [H, d, dh]
            _qkv(f"{h}.attn.c_attn.weight", block, "W", (d, 3 * d), (d, 3, H, dh), (1, 2, 0, 3)),
            _qkv(f"{h}.attn.c_attn.bias", block, "b", (3 * d,), (3, H, dh), (0, 1, 2)),
            _conv1d_out(f"{h}.attn.c_proj.weight", f"{block}.attn.W_O", H, dh, d),
            _same(f"{h}.attn.c_proj.bias", f"{block}.attn.b_O", (d,)),
            *_norm(f"{h}.ln_2", f"{block}.ln2", cfg),
            _same(f"{h}.mlp.c_fc.weight", f"{block}.mlp.W_in", (d, M)),
            _same(f"{h}.mlp.c_fc.bias", f"{block}.mlp.b_in", (M,)),
            _same(f"{h}.mlp.c_proj.weight", f"{block}.mlp.W_out", (M, d)),
            _same(f"{h}.mlp.c_proj.bias", f"{block}.mlp.b_out", (d,)),
        ]
    return tensors + _norm("ln_f", "ln_final", cfg)


def _gpt_neox_tensors(cfg: TransformerConfig) -> list[Tensor]:
    d, H, dh, M = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp
    tensors = [_same("embed_in.weight", "embed.W_E", (cfg.vocab_size, d))]
    for layer in range(cfg.n_layers):
        h, block = f"layers.{layer}", f"blocks.{layer}"
        qkv = f"{h}.attention.query_key_value"
        tensors += [
            *_norm(f"{h}.input_layernorm", f"{block}.ln1", cfg),
            # [3d, d], rows (head, Q|K|V, dh): fused per head -> (Q|K|V) x [H, d, dh]
            _qkv(f"{qkv}.weight", block, "W", (3 * d, d), (H, 3, dh, d), (1, 0, 3, 2)),
            _heads_out(f"{h}.attention.dense.weight", f"{block}.attn.W_O", H, dh, d),
        ]
        if cfg.attn_bias:
            tensors += [
                _qkv(f"{qkv}.bias", block, "b", (3 * d,), (H, 3, dh), (1, 0, 2)),
                _same(f"{h}.attention.dense.bias", f"{block}.attn.b_O", (d,)),
            ]
        tensors += [
            *_norm(f"{h}.post_attention_layernorm", f"{block}.ln2", cfg),
            _linear(f"{h}.mlp.dense_h_to_4h.weight", f"{block}.mlp.W_in", M, d),
            _same(f"{h}.mlp.dense_h_to_4h.bias", f"{block}.mlp.b_in", (M,)),
            _linear(f"{h}.mlp.dense_4h_to_h.weight", f"{block}.mlp.W_out", d, M),
            _same(f"{h}.mlp.dense_4h_to_h.bias", f"{block}.mlp.b_out", (d,)),
        ]
    return tensors + _norm("final_layer_norm", "ln_final", cfg)


def _llama_tensors(cfg: TransformerConfig) -> list[Tensor]:
    d, H, H_kv, dh, M = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_mlp
    tensors = [_same("embed_tokens.weight", "embed.W_E", (cfg.vocab_size, d))]
    for layer in range(cfg.n_layers):
        h, block = f"layers.{layer}", f"blocks.{layer}"
        attn, mlp = f"{h}.self_attn", f"{h}.mlp"
        tensors += [
            *_norm(f"{h}.input_layernorm", f"{block}.ln1", cfg),
            _heads_in(f"{attn}.q_proj.weight", f"{block}.attn.W_Q", H, dh, d),
            _heads_in(f"{attn}.k_proj.weight", f"{block}.attn.W_K", H_kv, dh, d),
            _heads_in(f"{attn}.v_proj.weight", f"{block}.attn.W_V", H_kv, dh, d),
            _heads_out(f"{attn}.o_proj.weight", f"{block}.attn.W_O", H, dh, d),
        ]
        if cfg.attn_bias:
            tensors += [
                _head_bias(f"{attn}.q_proj.bias", f"{block}.attn.b_Q", H, dh),
                _head_bias(f"{attn}.k_proj.bias", f"{block}.attn.b_K", H_kv, dh),
                _head_bias(f"{attn}.v_proj.bias", f"{block}.attn.b_V", H_kv, dh),
                _same(f"{attn}.o_proj.bias", f"{block}.attn.b_O", (d,)),
            ]
        tensors += [
            *_norm(f"{h}.post_attention_layernorm", f"{block}.ln2", cfg),
            _linear(f"{mlp}.gate_proj.weight", f"{block}.mlp.W_gate", M, d),
            _linear(f"{mlp}.up_proj.weight", f"{block}.mlp.W_in", M, d),
            _linear(f"{mlp}.down_proj.weight", f"{block}.mlp.W_out", d, M),
        ]
        if cfg.mlp_bias:
            tensors += [
                _same(f"{mlp}.gate_proj.bias", f"{block}.mlp.b_gate", (M,)),
                _same(f"{mlp}.up_proj.bias", f"{block}.mlp.b_in", (M,)),
                _same(f"{mlp}.down_proj.bias", f"{block}.mlp.b_out", (d,)),
            ]
    return tensors + _norm("norm", "ln_final", cfg)


# ---------------------------------------------------------------- config.json


def _gpt2_extra(raw: dict, path: Path, sizes: dict) -> dict[str, Any]:
    """n_inner: the MLP width, None for 4 d_model."""
    n_inner = raw.get("n_inner")
    return {"d_mlp": 4 * sizes["d_model"] if n_inner is None else n_inner}


def _gpt2_extra_json(cfg: TransformerConfig) -> dict[str, Any]:
    return {"n_inner": cfg.d_mlp}


def _gpt_neox_extra(raw: dict, path: Path, sizes: dict) -> dict[str, Any]:
    """Rotary on int(d_head * partial_rotary_factor) dimensions (HF's rounding), base theta."""
    theta, factor = _rope(raw, path, ("rotary_emb_base", "rope_theta"),
                          ("rotary_pct", "partial_rotary_factor"), default_factor=0.25)  # fmt: skip
    d_head = _head_dim(raw, path, sizes)
    number = isinstance(factor, (int, float)) and not isinstance(factor, bool)
    rotary_dim = int(d_head * factor) if number and 0 < factor <= 1 else 0
    if rotary_dim == 0 or rotary_dim % 2:
        raise ValueError(
            f"{path}: rotary fraction (rotary_pct / partial_rotary_factor) {factor!r} of "
            f"d_head={d_head} rotates {rotary_dim} dimensions; supported: an even number > 0"
        )
    return {"rotary_base": theta, "rotary_dim": None if rotary_dim == d_head else rotary_dim}


def _gpt_neox_extra_json(cfg: TransformerConfig) -> dict[str, Any]:
    """Both the keys of old checkpoints and transformers 5's rope_parameters; the fraction is
    rotary_dim / d_head, or the next float up where HF's int(d_head * fraction) would round
    that down (as (1 / 49) * 49 is below 1)."""
    factor = cfg.rotary_dims / cfg.d_head
    if int(cfg.d_head * factor) != cfg.rotary_dims:
        factor = math.nextafter(factor, 1.0)
    if int(cfg.d_head * factor) != cfg.rotary_dims:
        raise ValueError(
            f"rotary_dim={cfg.rotary_dim}: no fraction of d_head={cfg.d_head} that HF rounds to it"
        )
    return {"rotary_pct": factor, "rotary_emb_base": cfg.rotary_base,
            "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rotary_base,
                                "partial_rotary_factor": factor}}  # fmt: skip


def _llama_extra(raw: dict, path: Path, sizes: dict) -> dict[str, Any]:
    """Rotary on every dimension of a head; grouped queries; pretraining_tp, which only split
    the matmuls into slices in transformers 4 (the same sums) and is unused in 5, is accepted."""
    theta, factor = _rope(raw, path, ("rope_theta",), ("partial_rotary_factor",), None)
    if factor not in (None, 1, 1.0):
        raise ValueError(
            f"{path}: partial_rotary_factor {factor!r} is not supported (HF's Llama rotates "
            f"every dimension of a head, whatever it states)"
        )
    _head_dim(raw, path, sizes)
    kv_heads = raw.get("num_key_value_heads")
    if kv_heads == sizes["n_heads"]:
        kv_heads = None
    return {"rotary_base": theta, "n_key_value_heads": kv_heads}


def _llama_extra_json(cfg: TransformerConfig) -> dict[str, Any]:
    if cfg.rotary_dims != cfg.d_head:
        raise ValueError(
            f"rotary_dim={cfg.rotary_dim} (HF's llama rotates every dimension, d_head={cfg.d_head})"
        )
    return {"num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.d_head,
            "rope_theta": cfg.rotary_base, "pretraining_tp": 1,
            "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rotary_base}}  # fmt: skip


def _rope(raw: dict, path: Path, theta_keys: tuple[str, ...], factor_keys: tuple[str, ...],
          default_factor: float | None) -> tuple[float, Any]:  # fmt: skip
    """(theta, rotary fraction) as HF resolves them: rope_parameters first, then the older
    top-level keys, then the defaults. Keys that state different values are refused."""
    params = raw.get("rope_parameters") or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: rope_parameters must be an object, got {params!r}")
    unknown = sorted(set(params) - set(ROPE_KEYS))
    if unknown:
        raise ValueError(f"{path}: rope_parameters.{unknown[0]} is not supported")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise ValueError(
            f"{path}: rope_parameters.rope_type {rope_type!r} (scaled rotary positions) is not "
            f"supported; supported: 'default'"
        )
    theta = _agreed(raw, params, "rope_theta", theta_keys, path, DEFAULT_THETA)
    factor = _agreed(raw, params, "partial_rotary_factor", factor_keys, path, default_factor)
    return theta, factor


def _agreed(raw: dict, params: dict, name: str, keys: tuple[str, ...], path: Path, default):
    """The value of rope_parameters[name] and of the top-level `keys`, all that are stated
    agreeing; `default` when none is."""
    stated = [(f"rope_parameters.{name}", params[name])] if name in params else []
    stated += [(key, raw[key]) for key in keys if key in raw]
    for key, value in stated[1:]:
        if value != stated[0][1]:
            raise ValueError(
                f"{path}: {key}={value!r} disagrees with {stated[0][0]}={stated[0][1]!r}"
            )
    return stated[0][1] if stated else default


def _head_dim(raw: dict, path: Path, sizes: dict) -> int:
    d_head = sizes["d_model"] // sizes["n_heads"]  # sizes checked by read_config
    if raw.get("head_dim") not in (None, d_head):
        raise ValueError(
            f"{path}: head_dim={raw['head_dim']!r} is not supported; supported: hidden_size / "
            f"num_attention_heads = {d_head}"
        )
    return d_head


# ---------------------------------------------------------------- families


@dataclass(frozen=True)
class Family:
    """How one HF model_type reads and writes: see the module docstring."""

    model_type: str
    description: str
    architecture: str  # the HF class config.json names
    prefix: str  # of the base model's tensors (stripped where present)
    embedding: str  # the token embedding [V, d], which a tied unembedding equals
    heads: tuple[str, ...]  # where the unembedding [V, d] may lie; written as the first
    tied_default: bool  # tie_word_embeddings when config.json does not say
    buffers: tuple[str, ...]  # each block's tensors that are no weights ({layer}): ignored
    sizes: dict[str, str]  # HF key -> our field, stated in every config.json
    options: dict[str, tuple[str, Any]]  # HF key -> (our field, HF's default)
    activation: tuple[str, str]  # HF's key of the activation function, and its default
    fixed: dict[str, tuple[tuple, str]]  # HF key -> (values implemented, what others mean)
    constants: dict[str, Any]  # our fields every model of the family has
    extra: Callable[[dict, Path, dict], dict]  # further fields from config.json
    extra_json: Callable[[TransformerConfig], dict]  # their keys, or a ValueError
    tensors: Callable[[TransformerConfig], list[Tensor]]  # every tensor but the unembedding


_COMMON = {"attention": "standard", "norm": "pre", "ln_affine": True, "final_ln": True,
           "unembed_bias": False, "causal": True}  # fmt: skip
FAMILIES = {
    "gpt2": Family(
        model_type="gpt2", description="the GPT-2 family", architecture="GPT2LMHeadModel",
        prefix="transformer.", embedding="wte.weight", heads=("lm_head.weight",), tied_default=True,
        buffers=("h.{layer}.attn.bias", "h.{layer}.attn.masked_bias"),
        sizes={"vocab_size": "vocab_size", "n_embd": "d_model", "n_layer": "n_layers",
               "n_head": "n_heads", "n_positions": "n_ctx"},
        options={"layer_norm_epsilon": ("ln_eps", 1e-5)},
        activation=("activation_function", "gelu_new"),
        fixed={"scale_attn_weights": ((True,), "attention unscaled by 1/sqrt(d_head)"),
               "scale_attn_by_inverse_layer_idx": ((False,),
                                                   "attention scaled by 1/(layer index + 1)")},
        constants={**_COMMON, "pos_embed": "learned", "normalization": "layernorm",
                   "parallel_attn_mlp": False, "gated_mlp": False, "n_key_value_heads": None,
                   "attn_bias": True, "mlp_bias": True, "init": "gpt2-residual-scaled"},
        extra=_gpt2_extra, extra_json=_gpt2_extra_json, tensors=_gpt2_tensors,
    ),
    "gpt_neox": Family(
        model_type="gpt_neox", description="GPT-NeoX, Pythia's",
        architecture="GPTNeoXForCausalLM", prefix="gpt_neox.", embedding="embed_in.weight",
        heads=("embed_out.weight", "lm_head.weight"), tied_default=False,
        buffers=tuple(f"layers.{{layer}}.attention.{buffer}"
                      for buffer in ("bias", "masked_bias", "rotary_emb.inv_freq")),
        sizes={"vocab_size": "vocab_size", "hidden_size": "d_model",
               "num_hidden_layers": "n_layers", "num_attention_heads": "n_heads",
               "intermediate_size": "d_mlp", "max_position_embeddings": "n_ctx"},
        options={"layer_norm_eps": ("ln_eps", 1e-5),
                 "use_parallel_residual": ("parallel_attn_mlp", True),
                 "attention_bias": ("attn_bias", True)},
        activation=("hidden_act", "gelu"), fixed={},
        constants={**_COMMON, "pos_embed": "rotary", "normalization": "layernorm",
                   "gated_mlp": False, "n_key_value_heads": None, "mlp_bias": True,
                   "init": "pythia"},
        extra=_gpt_neox_extra, extra_json=_gpt_neox_extra_json, tensors=_gpt_neox_tensors,
    ),
    "llama": Family(
        model_type="llama", description="Llama", architecture="LlamaForCausalLM",
        prefix="model.", embedding="embed_tokens.weight", heads=("lm_head.weight",),
        tied_default=False,
        buffers=("layers.{layer}.self_attn.rotary_emb.inv_freq",),
        sizes={"vocab_size": "vocab_size", "hidden_size": "d_model",
               "num_hidden_layers": "n_layers", "num_attention_heads": "n_heads",
               "intermediate_size": "d_mlp", "max_position_embeddings": "n_ctx"},
        options={"rms_norm_eps": ("ln_eps", 1e-6), "attention_bias": ("attn_bias", False),
                 "mlp_bias": ("mlp_bias", False)},
        activation=("hidden_act", "silu"), fixed={},
        constants={**_COMMON, "pos_embed": "rotary", "normalization": "rmsnorm",
                   "parallel_attn_mlp": False, "gated_mlp": True, "init": "llama2c"},
        extra=_llama_extra, extra_json=_llama_extra_json, tensors=_llama_tensors,
    ),
}  # fmt: skip


def family_of_json(raw: dict, path: Path) -> Family:
    """The family config.json names by its model_type, or a ValueError listing ours."""
    model_type = raw.get("model_type")
    if model_type not in FAMILIES:
        supported = "; ".join(f"{name} ({family.description})" for name, family in FAMILIES.items())
        raise ValueError(
            f"{path}: model_type {model_type!r} (architectures {raw.get('architectures')}) is "
            f"not supported; supported: {supported}"
        )
    return FAMILIES[model_type]


def read_config(family: Family, raw: dict, path: Path, dtype: str) -> TransformerConfig:
    """Our config for the contents of an HF config.json of `family`; refuses what the model
    does not implement. `path` names the file in errors."""
    for key, (implemented, meaning) in {**UNSUPPORTED, **family.fixed}.items():
        if key in raw and raw[key] not in implemented:
            raise ValueError(f"{path}: {key}={raw[key]!r} ({meaning}) is not supported")
    act_key, act_default = family.activation
    activation = raw.get(act_key, act_default)
    if activation not in ACT_FNS:
        raise ValueError(
            f"{path}: {act_key} {activation!r} is not supported; supported: {', '.join(ACT_FNS)}"
        )
    sizes = {field: _required(raw, key, path) for key, field in family.sizes.items()}
    _checked(path, **{"d_mlp": 1, **sizes})  # before the extra options read d_head
    options = {field: raw.get(key, default) for key, (field, default) in family.options.items()}
    return _checked(path, **sizes, **options, **family.constants,
                    **family.extra(raw, path, sizes), act_fn=ACT_FNS[activation],
                    dtype=dtype)  # fmt: skip


def _checked(path: Path, **fields) -> TransformerConfig:
    """TransformerConfig(**fields), its refusal naming the file."""
    try:
        return TransformerConfig(**fields)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


def read_tied(family: Family, raw: dict, path: Path) -> bool:
    """tie_word_embeddings: the unembedding is the token embedding's transpose."""
    value = raw.get("tie_word_embeddings", family.tied_default)
    if not isinstance(value, bool):
        raise ValueError(f"{path}: tie_word_embeddings must be true or false, got {value!r}")
    return value


def _required(raw: dict, key: str, path: Path):
    if key not in raw:
        raise ValueError(f"{path}: key {key!r} missing")
    return raw[key]


def family_of(cfg: TransformerConfig) -> Family:
    """The HF family that expresses `cfg`, or a one-line ValueError naming the first field none
    does: positions and normalization pick the family, then every constant must hold."""
    by_kind = {("learned", "layernorm"): "gpt2", ("rotary", "layernorm"): "gpt_neox",
               ("rotary", "rmsnorm"): "llama"}  # fmt: skip
    name = by_kind.get((cfg.pos_embed, cfg.normalization))
    if name is None:
        field = "pos_embed" if cfg.pos_embed == "sinusoidal" else "normalization"
        raise ValueError(
            f"{field}={getattr(cfg, field)!r} with pos_embed={cfg.pos_embed!r}: no HF family "
            f"({', '.join(FAMILIES)}) has this"
        )
    family = FAMILIES[name]
    for field, value in family.constants.items():
        if field != "init" and getattr(cfg, field) != value:
            raise ValueError(f"{field}={getattr(cfg, field)!r}: HF's {name} has {field}={value!r}")
    if cfg.act_fn not in HF_ACT_FN:
        raise ValueError(f"act_fn={cfg.act_fn!r}: no HF activation of that name")
    return family


def config_json(family: Family, cfg: TransformerConfig, tie: bool, dtype: str) -> dict:
    """The config.json of `cfg` (checked by family_of) that HF reads back as `cfg`."""
    act_key, _ = family.activation
    return {
        "architectures": [family.architecture], "model_type": family.model_type,
        **{key: getattr(cfg, field) for key, field in family.sizes.items()},
        **{key: getattr(cfg, field) for key, (field, _) in family.options.items()},
        act_key: HF_ACT_FN[cfg.act_fn], **family.extra_json(cfg),
        "tie_word_embeddings": tie, "dtype": dtype,
    }  # fmt: skip
