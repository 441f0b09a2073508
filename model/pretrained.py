"""Checkpoints of other libraries as a Transformer: HF GPT-2-family directories, and our .npz.

An HF directory holds `config.json` and `model.safetensors`, with the keys as `save_pretrained`
writes them (`transformer.h.0.attn.c_attn.weight`, ...; `lm_head.weight` left out when tied to
the token embedding) or as the hub's original `gpt2` files have them (no `transformer.` prefix,
plus the attention-mask buffers `h.{l}.attn.bias` and `h.{l}.attn.masked_bias`, ignored).
Nothing is ever downloaded: the directory is one you already have.

The weights become TransformerLens's names as its `convert_gpt2_weights` lays them out. HF's
Conv1D weights are [in, out]; c_attn's 3d output columns are Q, K, V side by side, each split
into heads of dh columns; c_proj's rows are heads of dh rows.

config.json is honoured or refused, never ignored: `activation_function` becomes our act_fn
("gelu" exact, "gelu_new" and "gelu_pytorch_tanh" the tanh form, "relu"), `layer_norm_epsilon`
ln_eps, `n_positions` n_ctx, `n_inner` d_mlp (None: 4 d_model), `tie_word_embeddings` whether
the unembedding is the embedding's transpose. `reorder_and_upcast_attn` only reorders and
upcasts fp16 arithmetic, the same function in float32 and float64, so it is accepted. Unscaled
attention (`scale_attn_weights: false`), `scale_attn_by_inverse_layer_idx` and cross-attention
are refused, as is any other architecture (GPT-J, Llama, ...). Missing options take HF's
GPT2Config defaults; the sizes must be given.

Everything is read and checked before a model exists: a bad file is a one-line ValueError
naming the file and the tensor or key, never a half-loaded model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_TYPES = ("gpt2",)
ACT_FNS = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "relu": "relu"}
MASK_BUFFERS = ("attn.bias", "attn.masked_bias")  # per block; not weights
# config.json options of which the model implements one value (HF's default where missing).
FIXED_OPTIONS = {
    "scale_attn_weights": (True, "attention unscaled by 1/sqrt(d_head)"),
    "scale_attn_by_inverse_layer_idx": (False, "attention scaled by 1/(layer index + 1)"),
    "add_cross_attention": (False, "cross-attention"),
}


def load(path: str | os.PathLike, dtype: str | None = None) -> Transformer:
    """A model from an HF GPT-2-family directory (float32 unless `dtype` says otherwise), or from
    our own `.npz` (in its saved dtype unless `dtype` says otherwise)."""
    path = Path(path)
    if path.is_dir():
        config = _read_json(path / CONFIG_FILE)
        cfg = hf_config(config, path / CONFIG_FILE, dtype or "float32")
        tied = config.get("tie_word_embeddings", True)
        return Transformer.from_params(cfg, hf_params(path / WEIGHTS_FILE, cfg, tied))
    if path.suffix == ".npz" and path.is_file():
        model = Transformer.load(path)
        return (
            model
            if dtype is None
            else Transformer.from_params(model.cfg.replace(dtype=dtype), model.params)
        )
    raise ValueError(
        f"{path}: not a checkpoint (expected a directory with {CONFIG_FILE} and {WEIGHTS_FILE}, "
        f"or a .npz file written by Transformer.save)"
    )


# ---------------------------------------------------------------- config.json


def hf_config(raw: dict, path: Path, dtype: str) -> TransformerConfig:
    """Our config for an HF GPT-2 config.json's contents; refuses what the model does not
    implement. `path` names the file in errors."""
    model_type = raw.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"{path}: model_type {model_type!r} (architectures {raw.get('architectures')}) is "
            f"not supported; supported: {', '.join(MODEL_TYPES)} (the GPT-2 family)"
        )
    for key, (implemented, meaning) in FIXED_OPTIONS.items():
        if raw.get(key, implemented) != implemented:
            raise ValueError(f"{path}: {key}={raw[key]!r} ({meaning}) is not supported")
    activation = raw.get("activation_function", "gelu_new")
    if activation not in ACT_FNS:
        raise ValueError(
            f"{path}: activation_function {activation!r} is not supported; "
            f"supported: {', '.join(ACT_FNS)}"
        )
    sizes = {key: _required(raw, key, path) for key in ("vocab_size", "n_embd", "n_layer",
                                                        "n_head", "n_positions")}  # fmt: skip
    n_inner = raw.get("n_inner")
    try:
        return TransformerConfig(
            vocab_size=sizes["vocab_size"], d_model=sizes["n_embd"], n_layers=sizes["n_layer"],
            n_heads=sizes["n_head"], n_ctx=sizes["n_positions"],
            d_mlp=4 * sizes["n_embd"] if n_inner is None else n_inner,
            attention="standard", norm="pre", ln_affine=True, final_ln=True,
            act_fn=ACT_FNS[activation], pos_embed="learned", unembed_bias=False, causal=True,
            init="gpt2-residual-scaled", dtype=dtype,
            ln_eps=raw.get("layer_norm_epsilon", 1e-5),
        )  # fmt: skip
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


def _read_json(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (an HF model directory needs one)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return raw


def _required(raw: dict, key: str, path: Path):
    if key not in raw:
        raise ValueError(f"{path}: key {key!r} missing")
    return raw[key]


# ---------------------------------------------------------------- model.safetensors


def hf_params(path: Path, cfg: TransformerConfig, tied: bool) -> dict[str, np.ndarray]:
    """TransformerLens-named parameters from an HF GPT-2 safetensors file, every tensor checked;
    `tied`: the unembedding is the token embedding's transpose (tie_word_embeddings)."""
    tensors = _WeightFile(path, read_tensors(path))
    d, H, dh, M = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp
    params = {
        "embed.W_E": tensors.take("wte.weight", (cfg.vocab_size, d)),
        "pos_embed.W_pos": tensors.take("wpe.weight", (cfg.n_ctx, d)),
    }
    for layer in range(cfg.n_layers):
        h, block = f"h.{layer}", f"blocks.{layer}"
        for ours, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
            params[f"{block}.{ours}.w"] = tensors.take(f"{h}.{theirs}.weight", (d,))
            params[f"{block}.{ours}.b"] = tensors.take(f"{h}.{theirs}.bias", (d,))
        W_qkv = tensors.take(f"{h}.attn.c_attn.weight", (d, 3 * d)).reshape(d, 3, H, dh)
        b_qkv = tensors.take(f"{h}.attn.c_attn.bias", (3 * d,)).reshape(3, H, dh)
        for index, name in enumerate("QKV"):
            params[f"{block}.attn.W_{name}"] = W_qkv[:, index].transpose(1, 0, 2)  # [H,d,dh]
            params[f"{block}.attn.b_{name}"] = b_qkv[index]  # [H,dh]
        W_O = tensors.take(f"{h}.attn.c_proj.weight", (d, d))
        params[f"{block}.attn.W_O"] = W_O.reshape(H, dh, d)  # [d,d] -> [H,dh,d]
        params[f"{block}.attn.b_O"] = tensors.take(f"{h}.attn.c_proj.bias", (d,))
        params[f"{block}.mlp.W_in"] = tensors.take(f"{h}.mlp.c_fc.weight", (d, M))
        params[f"{block}.mlp.b_in"] = tensors.take(f"{h}.mlp.c_fc.bias", (M,))
        params[f"{block}.mlp.W_out"] = tensors.take(f"{h}.mlp.c_proj.weight", (M, d))
        params[f"{block}.mlp.b_out"] = tensors.take(f"{h}.mlp.c_proj.bias", (d,))
        tensors.drop(*(f"{h}.{buffer}" for buffer in MASK_BUFFERS))
    params["ln_final.w"] = tensors.take("ln_f.weight", (d,))
    params["ln_final.b"] = tensors.take("ln_f.bias", (d,))
    params["unembed.W_U"] = _unembedding(tensors, params["embed.W_E"], tied)  # [d,V]
    tensors.check_all_used()
    return params


def _unembedding(tensors: _WeightFile, W_E: np.ndarray, tied: bool) -> np.ndarray:
    """lm_head.weight [V,d] transposed; the embedding's transpose when tied (HF's default)."""
    if not tied:
        return tensors.take("lm_head.weight", W_E.shape).T
    if tensors.has("lm_head.weight") and not np.array_equal(
        tensors.take("lm_head.weight", W_E.shape), W_E
    ):
        raise ValueError(
            f"{tensors.path}: tensor 'lm_head.weight' differs from 'wte.weight', but config.json "
            f"ties them (tie_word_embeddings)"
        )
    return W_E.T


def read_tensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a NumPy array, or a ValueError naming the file (and
    the tensor a truncated file cuts off)."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file (an HF model directory needs one)")
    try:
        with safe_open(path, framework="np") as handle:
            keys = list(handle.keys())
            tensors = {}
            for key in keys:
                try:
                    tensors[key] = handle.get_tensor(key)
                except (SafetensorError, TypeError, ValueError) as error:
                    raise ValueError(f"{path}: tensor {key!r} cannot be read ({error})") from None
            return tensors
    except SafetensorError as error:
        cut = _cut_tensor(path)
        where = f"tensor {cut!r} runs past the end of the file; " if cut else ""
        raise ValueError(f"{path}: truncated or not a safetensors file ({where}{error})") from None


def _cut_tensor(path: Path) -> str | None:
    """The first tensor whose bytes lie past the end of a truncated safetensors file: the format
    is an 8-byte little-endian header length, a JSON header {name: {data_offsets}}, the data."""
    try:
        with open(path, "rb") as handle:
            header_length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_length))
        data_bytes = path.stat().st_size - 8 - header_length
        ends = [(spec["data_offsets"][1], name) for name, spec in header.items()
                if name != "__metadata__" and spec["data_offsets"][1] > data_bytes]  # fmt: skip
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
    return min(ends)[1] if ends else None


class _WeightFile:
    """The tensors of one file by HF name (the `transformer.` prefix removed): taken one by one
    with their shape, dtype and values checked; what is left over at the end is an error."""

    PREFIX = "transformer."

    def __init__(self, path: Path, tensors: dict[str, np.ndarray]):
        self.path = path
        self.names = {key.removeprefix(self.PREFIX): key for key in tensors}
        self.tensors = {key.removeprefix(self.PREFIX): value for key, value in tensors.items()}

    def has(self, name: str) -> bool:
        return name in self.tensors

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self.tensors:
            raise ValueError(f"{self.path}: tensor {name!r} missing (expected shape {shape})")
        value, where = self.tensors.pop(name), f"{self.path}: tensor {self.names[name]!r}"
        if value.shape != shape:
            raise ValueError(f"{where} has shape {value.shape}, expected {shape}")
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"{where} has dtype {value.dtype}, expected floats")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{where} has non-finite values (NaN or inf)")
        return value

    def drop(self, *names: str) -> None:
        for name in names:
            self.tensors.pop(name, None)

    def check_all_used(self) -> None:
        if self.tensors:
            unknown = sorted(self.names[name] for name in self.tensors)
            raise ValueError(
                f"{self.path}: unexpected tensor {unknown[0]!r} ({len(unknown)} unexpected in "
                f"all): not part of a GPT-2 language model"
            )
