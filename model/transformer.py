"""The Transformer: TransformerLens-named parameters, forward with hooks, loss and gradients."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mechclaims.model import layers
from mechclaims.model.config import TransformerConfig
from mechclaims.model.hooks import (
    HookDispatcher,
    HookFn,
    hook_names,
    keep_nothing,
    names_predicate,
    registered,
)

CONFIG_KEY = "__config__"
FORMAT_KEY, FORMAT_VERSION = "__format__", 2  # .npz format; 2: act_fn names as TransformerLens's
SEED_KEY = "__seed__"  # the seed the weights were first drawn with, if known (training keeps it)
STEP_KEY = "__step__"  # the training step a model was saved at, if given (mechclaims train)
CHUNK_TOKENS = 2048  # forward passes over more tokens than this run in chunks (see run_with_cache)
KEPT_SHARE_FOR_CHUNKS = 4  # ... if they keep at most a quarter of the hook points
SCALAR_HOOKS = ("hook_scale",)  # [B,T,1]: not counted among the hook points above
RETURN_TYPES = ("logits", None)  # run_with_cache's outputs, as TransformerLens names them


# ---------------------------------------------------------------- parameters


def param_shapes(cfg: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in a fixed order (the order weights are drawn in)."""
    d = cfg.d_model
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (cfg.vocab_size, d)}
    if cfg.pos_embed == "learned":
        shapes["pos_embed.W_pos"] = (cfg.n_ctx, d)
    for layer in range(cfg.n_layers):
        block = f"blocks.{layer}"
        shapes.update(_norm_shapes(f"{block}.ln1", cfg))
        if cfg.attention == "standard":
            shapes.update(_attention_shapes(f"{block}.attn", cfg))
        shapes.update(_norm_shapes(f"{block}.ln2", cfg))
        shapes.update(_mlp_shapes(f"{block}.mlp", cfg))
    if cfg.final_ln:
        shapes.update(_norm_shapes("ln_final", cfg))
    shapes["unembed.W_U"] = (d, cfg.vocab_size)
    if cfg.unembed_bias:
        shapes["unembed.b_U"] = (cfg.vocab_size,)
    return shapes


def _attention_shapes(prefix: str, cfg: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """W_Q [H,d,dh]; W_K, W_V [H_kv,d,dh] (H_kv < H: grouped-query); W_O [H,dh,d]; biases."""
    d, H, H_kv, dh = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head
    shapes = {f"{prefix}.W_Q": (H, d, dh), f"{prefix}.W_K": (H_kv, d, dh),
              f"{prefix}.W_V": (H_kv, d, dh), f"{prefix}.W_O": (H, dh, d)}  # fmt: skip
    if cfg.attn_bias:
        shapes.update({f"{prefix}.b_Q": (H, dh), f"{prefix}.b_K": (H_kv, dh),
                       f"{prefix}.b_V": (H_kv, dh), f"{prefix}.b_O": (d,)})  # fmt: skip
    return shapes


def _mlp_shapes(prefix: str, cfg: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """W_gate [d,M] (gated only), W_in [d,M], W_out [M,d], each followed by its bias."""
    d, M = cfg.d_model, cfg.d_mlp
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape in (("gate", (d, M)), ("in", (d, M)), ("out", (M, d))):
        if name != "gate" or cfg.gated_mlp:
            shapes[f"{prefix}.W_{name}"] = shape
            if cfg.mlp_bias:
                shapes[f"{prefix}.b_{name}"] = shape[1:]
    return shapes


def _norm_shapes(prefix: str, cfg: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """LayerNorm's gain w and bias b; RMSNorm's gain w only; nothing without ln_affine."""
    if not cfg.ln_affine:
        return {}
    if cfg.normalization == "rmsnorm":
        return {f"{prefix}.w": (cfg.d_model,)}
    return {f"{prefix}.w": (cfg.d_model,), f"{prefix}.b": (cfg.d_model,)}


def init_params(cfg: TransformerConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw every parameter by `cfg.init` (see config.INITS), then multiply all by `init_scale`.
    llama2c ties the unembedding to the embedding: W_U is W_Eᵀ, not drawn."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        if cfg.init == "llama2c" and name == "unembed.W_U":
            params[name] = params["embed.W_E"].T.copy()
            continue
        value = _draw(name, shape, cfg, rng) * cfg.init_scale
        params[name] = value.astype(cfg.dtype)
    return params


def _draw(name: str, shape: tuple[int, ...], cfg: TransformerConfig, rng) -> np.ndarray:
    kind = name.rsplit(".", 1)[-1]
    if kind in ("w", "b"):  # norm gain and bias
        return np.ones(shape) if kind == "w" else np.zeros(shape)
    is_bias = kind.startswith("b_")
    if cfg.init == "pytorch":
        return _pytorch_draw(kind, shape, cfg, rng)
    if is_bias:
        return np.zeros(shape)
    return rng.normal(0.0, _weight_std(kind, cfg), shape)


def _weight_std(kind: str, cfg: TransformerConfig) -> float:
    """The standard deviation of a weight of this kind (W_E, W_Q, W_out, ...) under cfg.init.

    pythia: GPT-NeoX's `small_init_init_method(d)` and `wang_init_method(n_layers, d)`
    (EleutherAI/gpt-neox, megatron/model/init_functions.py), which Pythia's configs name as
    `init_method` and `output_layer_init_method`; its norms are torch LayerNorms (gain 1, bias 0)
    and its linear biases are zeroed (megatron/model/transformer.py). llama2c: Karpathy's
    llama2.c model.py `Transformer.__init__` (its scaled init names `w3` and `wo`)."""
    into_residual = kind in ("W_O", "W_out")
    if cfg.init in ("gpt2", "gpt2-residual-scaled"):
        scaled = cfg.init == "gpt2-residual-scaled" and into_residual
        return 0.02 / np.sqrt(2 * cfg.n_layers) if scaled else 0.02
    if cfg.init == "pythia":
        d = cfg.d_model
        return 2.0 / (cfg.n_layers * np.sqrt(d)) if into_residual else np.sqrt(2.0 / (5.0 * d))
    if cfg.init == "llama2c":
        scaled = kind == "W_O" or (kind == "W_in" and cfg.gated_mlp)  # its wo and w3
        return 0.02 / np.sqrt(2 * cfg.n_layers) if scaled else 0.02
    # seed: embeddings, positions and unembed N(0, 0.1²); other weights He-normal.
    if kind in ("W_E", "W_pos", "W_U"):
        return 0.1
    return np.sqrt(2.0 / (cfg.d_mlp if kind == "W_out" else cfg.d_model))


def _pytorch_draw(kind: str, shape: tuple[int, ...], cfg: TransformerConfig, rng) -> np.ndarray:
    """PyTorch's defaults: embeddings N(0, 1); linear weights and biases U(±1/sqrt(fan_in))."""
    if kind in ("W_E", "W_pos"):
        return rng.normal(0.0, 1.0, shape)
    bound = 1.0 / np.sqrt(cfg.d_mlp if kind in ("W_out", "b_out") else cfg.d_model)
    return rng.uniform(-bound, bound, shape)


def _part_params(params: dict[str, np.ndarray], part: str) -> dict[str, np.ndarray]:
    """The parameters under `part.` by short name: "ln_final" -> {"w": ..., "b": ...}."""
    prefix = f"{part}."
    return {name[len(prefix) :]: value for name, value in params.items()
            if name.startswith(prefix)}  # fmt: skip


def _block_params(params: dict[str, np.ndarray], layer: int) -> dict[str, dict[str, np.ndarray]]:
    """Block `layer`'s parameters grouped by part: {"ln1": {"w": ...}, "attn": {...}, ...}."""
    prefix = f"blocks.{layer}."
    parts: dict[str, dict[str, np.ndarray]] = {"ln1": {}, "attn": {}, "ln2": {}, "mlp": {}}
    for name, value in params.items():
        if name.startswith(prefix):
            part, short = name[len(prefix) :].split(".")
            parts[part][short] = value
    return parts


# ---------------------------------------------------------------- blocks


def block_forward(x: np.ndarray, parts: dict, cfg: TransformerConfig, hook, layer: int,
                  rotary=None):  # fmt: skip
    """One transformer block on the residual stream [B,T,d]: pre-LN or post-LN by `cfg.norm`;
    with `cfg.parallel_attn_mlp` attention and MLP both read LN(resid_pre) (GPT-NeoX's)."""
    block = f"blocks.{layer}"
    resid_pre = hook(f"{block}.hook_resid_pre", x)
    ln1, ln2 = _Norm(parts["ln1"], cfg, hook, f"{block}.ln1"), _Norm(parts["ln2"], cfg, hook,
                                                                     f"{block}.ln2")  # fmt: skip
    attention = _Attention(parts["attn"], cfg, hook, block, rotary)
    if cfg.parallel_attn_mlp:
        attn_out = attention(ln1(resid_pre))
        mlp_out, mlp_cache = _mlp_forward(ln2(resid_pre), parts["mlp"], cfg, hook, block)
        resid_post = hook(f"{block}.hook_resid_post", resid_pre + attn_out + mlp_out)
    elif cfg.norm == "pre":
        resid_mid = hook(f"{block}.hook_resid_mid", resid_pre + attention(ln1(resid_pre)))
        mlp_out, mlp_cache = _mlp_forward(ln2(resid_mid), parts["mlp"], cfg, hook, block)
        resid_post = hook(f"{block}.hook_resid_post", resid_mid + mlp_out)
    else:
        resid_mid = hook(f"{block}.hook_resid_mid", ln1(resid_pre + attention(resid_pre)))
        mlp_out, mlp_cache = _mlp_forward(resid_mid, parts["mlp"], cfg, hook, block)
        resid_post = hook(f"{block}.hook_resid_post", ln2(resid_mid + mlp_out))
    return resid_post, (cfg, ln1.cache, attention.cache, ln2.cache, mlp_cache)


def block_backward(dout: np.ndarray, cache):
    """Gradient of a block's output with respect to its input and parameters (short names)."""
    cfg, ln1_cache, attn_cache, ln2_cache, mlp_cache = cache
    attn_backward = (
        layers.attention_backward
        if cfg.attention == "standard"
        else layers.parameter_free_attention_backward
    )
    norm_backward = layers.NORMS[cfg.normalization][1]
    grads = {}
    if cfg.parallel_attn_mlp:
        dmlp_in, grads["mlp"] = layers.mlp_backward(dout, mlp_cache)
        dresid_ln2, grads["ln2"] = norm_backward(dmlp_in, ln2_cache)
        dattn_in, grads["attn"] = attn_backward(dout, attn_cache)
        dresid_ln1, grads["ln1"] = norm_backward(dattn_in, ln1_cache)
        dx = dout + dresid_ln1
        dx += dresid_ln2
    elif cfg.norm == "pre":
        dmlp_in, grads["mlp"] = layers.mlp_backward(dout, mlp_cache)
        dresid_ln2, grads["ln2"] = norm_backward(dmlp_in, ln2_cache)
        dresid_mid = dout + dresid_ln2
        dattn_in, grads["attn"] = attn_backward(dresid_mid, attn_cache)
        dresid_ln1, grads["ln1"] = norm_backward(dattn_in, ln1_cache)
        dx = dresid_mid + dresid_ln1
    else:
        dsum2, grads["ln2"] = norm_backward(dout, ln2_cache)  # d(resid_mid + mlp_out)
        dmlp_in, grads["mlp"] = layers.mlp_backward(dsum2, mlp_cache)
        dresid_mid = dsum2 + dmlp_in
        dsum1, grads["ln1"] = norm_backward(dresid_mid, ln1_cache)
        dattn_in, grads["attn"] = attn_backward(dsum1, attn_cache)
        dx = dsum1 + dattn_in
    return dx, grads


class _Norm:
    """A norm's hook points (hook_scale, hook_normalized); remembers its backward cache."""

    def __init__(self, params: dict, cfg: TransformerConfig, hook, name: str):
        self.params, self.cfg, self.hook, self.name = params, cfg, hook, name
        self.cache = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        scoped = _scoped(self.hook, self.name)
        out, self.cache = layers.norm_forward(
            x, self.params, self.cfg.normalization, self.cfg.ln_eps, scoped
        )
        return self.hook(f"{self.name}.hook_normalized", out)


class _Attention:
    """A block's attention and its hook_attn_out; remembers its backward cache."""

    def __init__(self, params: dict, cfg: TransformerConfig, hook, block: str, rotary):
        self.params, self.cfg, self.hook, self.block, self.rotary = params, cfg, hook, block, rotary
        self.cache = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        scoped = _scoped(self.hook, f"{self.block}.attn")
        if self.cfg.attention == "standard":
            out, self.cache = layers.attention_forward(
                x, self.params, self.cfg.causal, scoped, self.rotary
            )
        else:
            out, self.cache = layers.parameter_free_attention_forward(x, self.cfg.causal, scoped)
        return self.hook(f"{self.block}.hook_attn_out", out)


def _mlp_forward(x, params, cfg: TransformerConfig, hook, block: str):
    out, cache = layers.mlp_forward(x, params, cfg.act_fn, _scoped(hook, f"{block}.mlp"))
    return hook(f"{block}.hook_mlp_out", out), cache


def _scoped(hook, prefix: str):
    if hook is layers.no_hook:
        return hook
    return lambda name, value: hook(f"{prefix}.{name}", value)


# ---------------------------------------------------------------- the model


class Transformer:
    """A decoder-only transformer in NumPy; see DESIGN.md's model contract."""

    def __init__(self, cfg: TransformerConfig, seed: int = 0):
        if not isinstance(cfg, TransformerConfig):
            raise TypeError(f"cfg must be a TransformerConfig, got {type(cfg).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.cfg = cfg
        self.seed = int(seed)
        self.params = init_params(cfg, np.random.default_rng(self.seed))
        self._hooks: dict[str, list[HookFn]] = {}
        self._pos_table = self._fixed_positions()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: str | None = None) -> Transformer:
        """A checkpoint you already have on disk (nothing is downloaded): an HF folder of the
        GPT-2, GPT-NeoX or Llama family (config.json + model.safetensors or its shards; float32
        unless `dtype` says otherwise) or our own `.npz`. See model/pretrained.py for what is
        honoured and what is refused."""
        from mechclaims.model import pretrained  # it imports this module

        return pretrained.load(path, dtype)

    def save_pretrained(self, directory: str | os.PathLike, dtype: str = "float32") -> None:
        """Write an HF folder of the model's family (gpt2, gpt_neox or llama: config.json and
        model.safetensors, weights in `dtype`, float32 by default, "float64" exact), which
        `transformers` and `from_pretrained` read back as this model; a config no HF family
        expresses is a ValueError naming the field. See model/pretrained.py's `save`."""
        from mechclaims.model import pretrained  # it imports this module

        pretrained.save(self, directory, dtype)

    @classmethod
    def from_params(cls, cfg: TransformerConfig, params: dict[str, np.ndarray]) -> Transformer:
        """A model with the given weights; every name, shape and value is checked."""
        model = cls.__new__(cls)
        model.cfg, model.seed = cfg, None
        model.params = _checked_params(cfg, params)
        model._hooks = {}
        model._pos_table = model._fixed_positions()
        return model

    def _fixed_positions(self) -> np.ndarray | None:
        if self.cfg.pos_embed != "sinusoidal":
            return None
        return layers.sinusoidal_table(self.cfg.n_ctx, self.cfg.d_model, self.cfg.dtype)

    # ------------------------------------------------------------ running

    def __call__(self, tokens) -> np.ndarray:
        """Logits [batch, pos, vocab] for integer tokens [batch, pos]."""
        return self.run_with_cache(tokens, names_filter=())[0]

    def run_with_cache(self, tokens, names_filter=None, stop_at_layer=None, return_type="logits"):
        """(output, cache): the activations at every hook point the filter selects.

        The output is, as TransformerLens's forward returns it:
        - the logits [B,T,V] (`return_type="logits"`);
        - None with `return_type=None`: the final LayerNorm runs (its hook fires) but the
          unembedding is not computed;
        - with `stop_at_layer=n`, the residual stream after block n-1 [B,T,d] (embeddings plus
          positions for n=0), whatever `return_type`: only blocks 0..n-1 run, and neither the
          final LayerNorm nor the unembedding; hooks of later blocks do not fire, and are not in
          the cache. A negative n counts from the end (-1: every block but the last).

        A large batch that keeps few activations runs in chunks of about CHUNK_TOKENS tokens,
        concatenated: the same numbers, with temporaries small enough to stay in cache. Not
        with hooks registered (a hook sees the whole activation once), nor when most
        activations are kept (concatenating them would cost more than it saves).
        """
        tokens = self.check_tokens(tokens)
        keep = names_predicate(names_filter, self.cfg)
        n_blocks = self._blocks_to_run(stop_at_layer)
        output = _checked_return_type(return_type)
        if stop_at_layer is not None:
            output = "resid"  # TransformerLens returns the residual stream, whatever return_type
        names = [name for name in self.hook_names() if not name.endswith(SCALAR_HOOKS)]
        few_kept = sum(map(keep, names)) * KEPT_SHARE_FOR_CHUNKS <= len(names)
        whole = self._hooks or not few_kept
        chunk = tokens.shape[0] if whole else max(1, CHUNK_TOKENS // tokens.shape[1])
        results = [self._run_chunk(tokens[start : start + chunk], keep, n_blocks, output)
                   for start in range(0, tokens.shape[0], chunk)]  # fmt: skip
        if len(results) == 1:
            return results[0]
        outputs = [chunk_output for chunk_output, _ in results]
        joined = None if output is None else np.concatenate(outputs)
        kept = results[0][1]
        cache = {name: np.concatenate([part[name] for _, part in results]) for name in kept}
        return joined, cache

    def _blocks_to_run(self, stop_at_layer) -> int:
        """How many blocks a forward pass with this `stop_at_layer` runs."""
        n_layers = self.cfg.n_layers
        if stop_at_layer is None:
            return n_layers
        if isinstance(stop_at_layer, bool) or not isinstance(stop_at_layer, (int, np.integer)):
            raise TypeError(f"stop_at_layer must be an int or None, got {stop_at_layer!r}")
        if not -n_layers <= stop_at_layer <= n_layers:
            raise ValueError(
                f"stop_at_layer must lie in [-{n_layers}, {n_layers}] (n_layers={n_layers}), "
                f"got {stop_at_layer}"
            )
        return int(stop_at_layer) if stop_at_layer >= 0 else n_layers + int(stop_at_layer)

    def _run_chunk(self, tokens: np.ndarray, keep, n_blocks: int, output):
        no_cache = not self._hooks and keep is keep_nothing
        dispatch = layers.no_hook if no_cache else HookDispatcher(self._hooks, keep)
        out, _ = self._forward(tokens, dispatch, False, n_blocks, output)
        return out, ({} if no_cache else dispatch.cache)

    def run_with_hooks(self, tokens, fwd_hooks: Iterable[tuple[str, HookFn]] = ()):
        """Logits with `fn(activation, hook_name)` run at each named hook point for this call."""
        with self.hooks(fwd_hooks):
            return self(tokens)

    def hooks(self, fwd_hooks: Iterable[tuple[str, HookFn]]):
        """Context manager: the hooks apply to every forward pass inside the `with` block."""
        return registered(self._hooks, fwd_hooks, self.cfg)

    def hook_names(self) -> list[str]:
        return hook_names(self.cfg)

    def loss_and_grads(self, tokens, targets, loss_mask=None):
        """Mean cross-entropy over the scored positions, and its gradient for every parameter."""
        tokens = self.check_tokens(tokens)
        targets = self._check_targets(targets, tokens.shape)
        weights = self._loss_weights(loss_mask, tokens.shape)
        logits, caches = self._forward(tokens, layers.no_hook, keep_caches=True)
        loss, loss_cache = layers.cross_entropy_forward(logits, targets, weights)
        dlogits, _ = layers.cross_entropy_backward(1.0, loss_cache)
        return loss, self._backward(dlogits, caches)

    def _forward(self, tokens, hook, keep_caches: bool, n_blocks=None, output="logits"):
        """The forward pass through `n_blocks` blocks (default all) to `output`: "logits", None
        (no unembedding) or "resid" (the residual stream after block n_blocks - 1, no final LN).
        Returns (output, caches), caches for the backward pass when `keep_caches`."""
        cfg, params = self.cfg, self.params
        batch, n_pos = tokens.shape
        embed, embed_cache = layers.embed_forward(tokens, params["embed.W_E"])
        x, pos_cache = self._add_positions(hook("hook_embed", embed), batch, n_pos, hook)
        rotary = self._rotary(n_pos)
        block_caches = []
        for layer in range(cfg.n_layers if n_blocks is None else n_blocks):
            x, cache = block_forward(x, _block_params(params, layer), cfg, hook, layer, rotary)
            block_caches.append(cache if keep_caches else None)
        if output == "resid":
            return x, None
        final_cache = None
        if cfg.final_ln:
            final_norm = _Norm(_part_params(params, "ln_final"), cfg, hook, "ln_final")
            x, final_cache = final_norm(x), final_norm.cache
        if output is None:
            return None, None
        logits, unembed_cache = layers.unembed_forward(
            x, params["unembed.W_U"], params.get("unembed.b_U")
        )
        if not keep_caches:
            return logits, None
        return logits, (embed_cache, pos_cache, block_caches, final_cache, unembed_cache)

    def _add_positions(self, embed: np.ndarray, batch: int, n_pos: int, hook):
        """The residual stream before block 0, [B,T,d]: the embedding plus the learned or
        sinusoidal positions (hook_pos_embed); the embedding alone with rotary positions."""
        if self.cfg.pos_embed == "rotary":
            return embed, None
        table = (
            self.params["pos_embed.W_pos"] if self.cfg.pos_embed == "learned" else self._pos_table
        )
        pos, pos_cache = layers.pos_embed_forward(table, batch, n_pos)
        return embed + hook("hook_pos_embed", pos), pos_cache

    def _rotary(self, n_pos: int):
        """The rotary table of the first n_pos positions (see layers.rotary_table), or None."""
        if self.cfg.pos_embed != "rotary":
            return None
        return layers.rotary_table(n_pos, self.cfg.rotary_dims, self.cfg.rotary_base,
                                   self.cfg.dtype)  # fmt: skip

    def _backward(self, dlogits: np.ndarray, caches) -> dict[str, np.ndarray]:
        embed_cache, pos_cache, block_caches, final_cache, unembed_cache = caches
        grads: dict[str, np.ndarray] = {}
        dx, unembed_grads = layers.unembed_backward(dlogits, unembed_cache)
        _add_grads(grads, "unembed", unembed_grads)
        if final_cache is not None:
            dx, final_grads = layers.NORMS[self.cfg.normalization][1](dx, final_cache)
            _add_grads(grads, "ln_final", final_grads)
        for layer in reversed(range(self.cfg.n_layers)):
            dx, block_grads = block_backward(dx, block_caches[layer])
            for part, part_grads in block_grads.items():
                _add_grads(grads, f"blocks.{layer}.{part}", part_grads)
        _add_grads(grads, "embed", layers.embed_backward(dx, embed_cache)[1])
        if self.cfg.pos_embed == "learned":
            _add_grads(grads, "pos_embed", layers.pos_embed_backward(dx, pos_cache)[1])
        return {name: grads[name].astype(self.cfg.dtype, copy=False) for name in self.params}

    # ------------------------------------------------------------ input checks

    def check_tokens(self, tokens) -> np.ndarray:
        """Tokens as an integer array [batch, pos], or a clear TypeError/ValueError."""
        tokens = np.asarray(tokens)
        if tokens.dtype == bool or not np.issubdtype(tokens.dtype, np.integer):
            raise TypeError(f"tokens must be an integer array, got dtype {tokens.dtype}")
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be 2-D [batch, pos], got shape {tokens.shape}")
        if tokens.size == 0:
            raise ValueError(f"tokens must be non-empty, got shape {tokens.shape}")
        if tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds n_ctx={self.cfg.n_ctx}")
        low, high = tokens.min(), tokens.max()
        if low < 0 or high >= self.cfg.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(
                f"token {bad} out of range: tokens must satisfy 0 <= token < "
                f"vocab_size={self.cfg.vocab_size}"
            )
        return tokens

    def _check_targets(self, targets, shape: tuple[int, int]) -> np.ndarray:
        targets = np.asarray(targets)
        if targets.shape != shape:
            raise ValueError(f"targets must have the tokens' shape {shape}, got {targets.shape}")
        if targets.dtype == bool or not np.issubdtype(targets.dtype, np.integer):
            raise TypeError(f"targets must be an integer array, got dtype {targets.dtype}")
        if targets.min() < 0 or targets.max() >= self.cfg.vocab_size:
            raise ValueError(f"targets must lie in [0, vocab_size={self.cfg.vocab_size})")
        return targets

    def _loss_weights(self, loss_mask, shape: tuple[int, int]) -> np.ndarray:
        """Per-position weights of the mean loss: 1/n on the n scored positions, 0 elsewhere."""
        if loss_mask is None:
            mask = np.ones(shape, dtype=self.cfg.dtype)
        else:
            mask = np.asarray(loss_mask)
            if mask.shape != shape:
                raise ValueError(f"loss_mask must have the tokens' shape {shape}, got {mask.shape}")
            if mask.dtype != bool:
                raise TypeError(f"loss_mask must be a boolean array, got dtype {mask.dtype}")
            if not mask.any():
                raise ValueError("loss_mask scores no position")
            mask = mask.astype(self.cfg.dtype)
        return mask / mask.sum()

    # ------------------------------------------------------------ saving

    def save(self, path: str | os.PathLike, step: int | None = None) -> None:
        """Write the config and every parameter to one `.npz` file (atomically), with the
        training `step` it was saved at if given (a snapshot's; STEP_KEY)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            config = np.array(json.dumps(self.cfg.to_dict()))
            header = {CONFIG_KEY: config, FORMAT_KEY: np.array(FORMAT_VERSION)}
            if self.seed is not None:
                header[SEED_KEY] = np.array(self.seed)
            if step is not None:
                header[STEP_KEY] = np.array(step)
            np.savez(handle, **header, **self.params)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Transformer:
        """A model written by `save`; a file that is not one is a one-line ValueError naming it.
        Its `seed` is the seed its weights were first drawn with when the file records it (a
        model trained by mechclaims does), else None.

        Files of format 1 (no FORMAT_KEY: before the GELU names followed TransformerLens and
        HF) called GPT-2's tanh GELU "gelu": they load with act_fn "gelu_new", the same function.
        """
        if Path(path).is_file() and not zipfile.is_zipfile(path):
            raise ValueError(f"{path}: truncated or not an .npz file (no zip archive)")
        try:
            with np.load(path, allow_pickle=False) as data:
                if CONFIG_KEY not in data.files:
                    raise ValueError(f"holds no model config (key {CONFIG_KEY!r} missing)")
                config = json.loads(str(data[CONFIG_KEY]))
                if FORMAT_KEY not in data.files and config.get("act_fn") == "gelu":
                    config["act_fn"] = "gelu_new"
                header = (CONFIG_KEY, FORMAT_KEY, SEED_KEY, STEP_KEY)
                params = {name: data[name] for name in data.files if name not in header}
                seed = int(data[SEED_KEY]) if SEED_KEY in data.files else None
            model = cls.from_params(TransformerConfig(**config), params)
            model.seed = seed
            return model
        except FileNotFoundError:
            raise
        except zipfile.BadZipFile as error:
            raise ValueError(f"{path}: truncated or not an .npz file ({error})") from None
        except (OSError, EOFError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: {error}") from None


def _checked_return_type(return_type):
    if return_type not in RETURN_TYPES:
        allowed = ", ".join(map(repr, RETURN_TYPES))
        raise ValueError(f"return_type must be one of {allowed}; got {return_type!r}")
    return return_type


def _add_grads(grads: dict, prefix: str, part_grads: dict) -> None:
    for short, value in part_grads.items():
        grads[f"{prefix}.{short}"] = value


def _checked_params(cfg: TransformerConfig, params: dict) -> dict[str, np.ndarray]:
    expected = param_shapes(cfg)
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    if missing or extra:
        raise ValueError(
            f"parameters do not match the config: missing {missing}, unexpected {extra}"
        )
    checked = {}
    for name, shape in expected.items():
        value = np.asarray(params[name])
        if value.shape != shape:
            raise ValueError(f"parameter {name!r} has shape {value.shape}, expected {shape}")
        if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            raise TypeError(f"parameter {name!r} must be numeric, got dtype {value.dtype}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"parameter {name!r} has non-finite values")
        checked[name] = value.astype(cfg.dtype, order="C", copy=True)
    return checked
