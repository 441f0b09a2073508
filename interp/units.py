"""Units of a model (MLP neurons and residual dimensions at every layer) and their null twins.

A unit set is one hook's activations, [inputs, positions, units]. `embedding_only` is the null
that keeps what is trivially true of every unit: LN(W_E[x] + W_pos) with no block, what the
token and position give alone. (The other nulls, a random rotation of the unit basis and i.i.d.
Gaussian features, are in `stats`.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mechclaims.interp.stats import random_rotation, rotate_units
from mechclaims.model.hooks import stop_layer_for
from mechclaims.model.layers import norm_forward
from mechclaims.model.transformer import Transformer

UNIT_KINDS = {"resid": "blocks.{layer}.hook_resid_post", "mlp": "blocks.{layer}.mlp.hook_post"}


@dataclass(frozen=True)
class UnitSet:
    """One layer's units of one kind: `label` like "L0 mlp", the hook they are read from."""

    label: str
    hook: str


# A unit set wider than this is rotated onto this many random orthonormal directions, not all
# of them: the rotated null's statistics are medians and rates over directions, which 1024
# estimate closely; a full rotation of a 3072-wide MLP layer costs a 3072³ QR and GEMM per layer.
ROTATED_DIRECTIONS = 1024
SEED_UNITS = UnitSet("L0 resid", "blocks.0.hook_resid_post")  # the seed's "neurons"
SEED_SEQ_LEN = 4  # the seed's sequence length


def unit_sets(model: Transformer) -> list[UnitSet]:
    """Every unit set of the model: residual dimensions and MLP neurons after each block."""
    return [
        UnitSet(f"L{layer} {kind}", template.format(layer=layer))
        for layer in range(model.cfg.n_layers)
        for kind, template in UNIT_KINDS.items()
    ]


def activations(model: Transformer, tokens: np.ndarray, sets: list[UnitSet]) -> dict:
    """{label: activations [n, T, units]} for each unit set, from one forward pass that stops
    after the last block the sets read and computes no logits."""
    hooks = sorted({unit_set.hook for unit_set in sets})
    stop = stop_layer_for(hooks, model.cfg)
    _, cache = model.run_with_cache(tokens, names_filter=hooks, stop_at_layer=stop,
                                    return_type=None)  # fmt: skip
    return {unit_set.label: cache[unit_set.hook] for unit_set in sets}


def embedding_only(model: Transformer, tokens: np.ndarray) -> np.ndarray:
    """LN(W_E[x] + W_pos) without gain or bias (the model's norm: RMSNorm for Llamas): the
    residual stream if no block ran, [n, T, d]; W_E[x] alone under rotary positions."""
    stream, _ = model.run_with_cache(tokens, names_filter=(), stop_at_layer=0)  # [n,T,d]
    normalized, _ = norm_forward(stream, {}, model.cfg.normalization, model.cfg.ln_eps)
    return normalized


def rotated_basis(acts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The rotated-basis null of a unit set, acts [..., u] -> [..., min(u, ROTATED_DIRECTIONS)]:
    the same representation read along random orthonormal directions instead of the units."""
    return rotate_units(acts, random_rotation(acts.shape[-1], rng, ROTATED_DIRECTIONS))
