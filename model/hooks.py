"""Hook names (TransformerLens's) and the dispatcher that records or replaces activations.

A forward pass calls `dispatch(name, value)` at every hook point; the dispatcher runs the hooks
registered for that name (each `fn(activation, hook_name)` may return a replacement or None),
then keeps the value in the cache if the names filter asks for it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import numpy as np

from mechclaims.model.config import TransformerConfig

HookFn = Callable[[np.ndarray, str], "np.ndarray | None"]


def hook_names(cfg: TransformerConfig) -> list[str]:
    """Every hook point of a model with this config, in the order the forward pass reaches them."""
    names = ["hook_embed"] if cfg.pos_embed == "rotary" else ["hook_embed", "hook_pos_embed"]
    for layer in range(cfg.n_layers):
        block = f"blocks.{layer}"
        attention = [*_attention_hooks(f"{block}.attn", cfg), f"{block}.hook_attn_out"]
        gated = ("hook_pre", "hook_pre_linear", "hook_post")
        mlp = [f"{block}.mlp.{name}" for name in (gated if cfg.gated_mlp else gated[::2])]
        mlp.append(f"{block}.hook_mlp_out")
        ln1, ln2 = _norm_hooks(f"{block}.ln1"), _norm_hooks(f"{block}.ln2")
        mid, post = f"{block}.hook_resid_mid", f"{block}.hook_resid_post"
        names.append(f"{block}.hook_resid_pre")
        if cfg.parallel_attn_mlp:  # both sublayers read resid_pre: no resid_mid
            names += [*ln1, *attention, *ln2, *mlp, post]
        elif cfg.norm == "pre":  # LN on the way into each sublayer
            names += [*ln1, *attention, mid, *ln2, *mlp, post]
        else:  # LN of each residual sum, which is then the stream
            names += [*attention, *ln1, mid, *mlp, *ln2, post]
    if cfg.final_ln:
        names += _norm_hooks("ln_final")
    return names


def _attention_hooks(prefix: str, cfg: TransformerConfig) -> list[str]:
    rotary = ["hook_rot_q", "hook_rot_k"] if cfg.pos_embed == "rotary" else []
    names = ["hook_q", "hook_k", "hook_v", *rotary, "hook_attn_scores", "hook_pattern", "hook_z"]
    return [f"{prefix}.{name}" for name in names]


def _norm_hooks(prefix: str) -> list[str]:
    """A norm's divisor sqrt(var + eps) [B,T,1] (TransformerLens's hook_scale), then its output."""
    return [f"{prefix}.hook_scale", f"{prefix}.hook_normalized"]


def stop_layer_for(names: Iterable[str], cfg: TransformerConfig) -> int | None:
    """The smallest `stop_at_layer` whose forward pass reaches every named hook point: one more
    than the last block named, 0 for the embeddings alone, None (run everything) for a hook
    after the blocks (`ln_final.hook_normalized`)."""
    names = list(names)
    check_names(names, cfg)
    if any(not name.startswith(("blocks.", "hook_")) for name in names):
        return None
    return max((int(name.split(".")[1]) + 1 for name in names if name.startswith("blocks.")),
               default=0)  # fmt: skip


def check_names(names: Iterable[str], cfg: TransformerConfig) -> None:
    """Raise ValueError for any name that is not a hook point, listing the nearest real ones."""
    known = hook_names(cfg)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"hook names must be strings, got {name!r}")
        if name not in known:
            near = difflib.get_close_matches(name, known, n=4, cutoff=0.5)
            hint = f"; near matches: {', '.join(near)}" if near else ""
            raise ValueError(f"unknown hook name {name!r}{hint}")


def names_predicate(names_filter, cfg: TransformerConfig) -> Callable[[str], bool]:
    """A names filter (None, a name, a list of names or a predicate) as a predicate."""
    if names_filter is None:
        return lambda name: True
    if callable(names_filter):
        return names_filter
    wanted = {names_filter} if isinstance(names_filter, str) else set(names_filter)
    check_names(wanted, cfg)
    return wanted.__contains__ if wanted else keep_nothing


def keep_nothing(name: str) -> bool:
    """The names filter of a forward pass that caches nothing (`model(tokens)`)."""
    return False


class HookDispatcher:
    """Runs registered hooks at each hook point and caches what the predicate selects."""

    def __init__(self, hooks: dict[str, list[HookFn]], keep: Callable[[str], bool]):
        self.hooks = hooks
        self.keep = keep
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, name: str, value: np.ndarray) -> np.ndarray:
        for fn in self.hooks.get(name, ()):
            replaced = fn(value, name)
            if replaced is not None:
                value = _checked_replacement(name, value, replaced)
        if self.keep(name):
            self.cache[name] = value
        return value


def _checked_replacement(name: str, value: np.ndarray, replaced) -> np.ndarray:
    replaced = np.asarray(replaced)
    if replaced.shape != value.shape:
        raise ValueError(
            f"hook on {name!r} returned shape {replaced.shape}, expected {value.shape}"
        )
    if not np.issubdtype(replaced.dtype, np.floating):
        raise TypeError(f"hook on {name!r} returned dtype {replaced.dtype}, expected floats")
    return replaced.astype(value.dtype, copy=False)


@contextmanager
def registered(
    registry: dict[str, list[HookFn]], fwd_hooks: Iterable[tuple[str, HookFn]], cfg
) -> Iterator[None]:
    """Add hooks to `registry` for the duration of the block; removed even when the block raises."""
    fwd_hooks = list(fwd_hooks)
    check_names([name for name, _ in fwd_hooks], cfg)
    for name, fn in fwd_hooks:
        if not callable(fn):
            raise TypeError(f"hook for {name!r} must be callable, got {fn!r}")
    added = []
    try:
        for name, fn in fwd_hooks:
            registry.setdefault(name, []).append(fn)
            added.append((name, fn))
        yield
    finally:
        for name, fn in reversed(added):
            registry[name].remove(fn)
            if not registry[name]:
                del registry[name]
