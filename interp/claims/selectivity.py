"""Claim 3, selectivity: the per-seed measurements of both readings.

The claim, its tests and figures are in claims/test_claim3_selectivity.py.
Pure functions of (model source, seed, thresholds) returning plain values, so that the harness's
broker can run them in this process or anywhere else; the claim's tests record and decide on them.
"""

from __future__ import annotations

import numpy as np

from mechclaims.interp.inputs import balanced_sequences, random_sequences
from mechclaims.interp.selectivity import seed_selectivity, selectivity_test
from mechclaims.interp.stats import gaussian_features, random_rotation, rotate_units
from mechclaims.interp.units import SEED_SEQ_LEN, SEED_UNITS, activations, embedding_only, unit_sets
from mechclaims.interp.verdicts import seed_beyond
from mechclaims.model.transformer import Transformer

SEED_PRINTED_DIMS = 10  # the seed's code looked at dimensions 0-9
SEED_SAMPLES = 500
# The controlled reading's comparisons with nulls (margin rule): null -> (network's statistic,
# the null's), measured on the same inputs. Beyond chance, and beyond the embedding alone.
BEYOND = {
    "gaussian": ("network_selective_fraction", "gaussian_selective_fraction"),
    "embedding": ("network_median_explained", "embedding_median_explained"),
}


def seed_protocol(cfg, seed: int, thresholds: dict) -> dict:
    """The seed's measurement: 500 random sequences, std of per-position and per-token means."""
    model = Transformer(cfg, seed=seed)
    tokens = random_sequences(np.random.default_rng([seed, 3, 0]), SEED_SAMPLES, cfg.vocab_size,
                              SEED_SEQ_LEN)  # fmt: skip
    acts = activations(model, tokens, [SEED_UNITS])[SEED_UNITS.label]  # [n,T,d]
    result = seed_selectivity(acts, tokens, thresholds["seed_std"])
    printed = slice(0, SEED_PRINTED_DIMS)
    return {
        "position_std_dims_0_9": result.position_std[printed],
        "token_std_dims_0_9": result.token_std[printed],
        "selective_dims_0_9": int(result.selective[printed].sum()),
        "selective_dims_all": int(result.selective.sum()),
        "dims": int(acts.shape[-1]),
    }


def controlled(cfg, seed: int, thresholds: dict) -> dict:
    """Selectivity of the network's units and of the three nulls on one balanced design."""
    model = Transformer(cfg, seed=seed)
    rng = np.random.default_rng([seed, 3, 1])
    tokens = balanced_sequences(rng, thresholds["n_sequences"], cfg.vocab_size, SEED_SEQ_LEN)
    by_set = activations(model, tokens, unit_sets(model))  # {label: [n,T,units]}
    network = np.concatenate(list(by_set.values()), axis=-1)  # [n,T,U]
    sources = {
        "network": network,
        "embedding": embedding_only(model, tokens),
        "rotated": np.concatenate(
            [rotate_units(acts, random_rotation(acts.shape[-1], rng)) for acts in by_set.values()],
            axis=-1,
        ),
        "gaussian": gaussian_features(network[..., 0].size, network.shape[-1], rng).reshape(
            network.shape
        ),
    }
    result = {}
    for name, acts in sources.items():
        test = selectivity_test(acts, tokens, rng, thresholds["n_permutations"])
        selective = test.selective(thresholds["fdr"], thresholds["min_eta2"])
        result[f"{name}_selective_fraction"] = float(selective.mean())
        result[f"{name}_median_explained"] = float(np.median(test.token_eta2 + test.position_eta2))
    result["holds"] = seed_beyond(result, BEYOND, thresholds)
    return result
