"""Claim 3, selectivity: the per-seed measurements of both readings.

The claim, its tests and figures are in claims/test_claim3_selectivity.py.
Pure functions of (model source, seed, thresholds) returning plain values, so that the harness's
broker can run them in this process or anywhere else. The module ends with the claim's
declaration (`CLAIM`, mechclaims.interp.claims.declaration): what each reading measures, records
and decides a seed by, which its tests, the broker's plan, the checkpoint judge and the studies
read.
"""

from __future__ import annotations

import functools

import numpy as np

from mechclaims.interp.claims.declaration import Claim, Reading, at_least, beyond_margins
from mechclaims.interp.inputs import balanced_sequences, random_sequences
from mechclaims.interp.planted import Controls
from mechclaims.interp.selectivity import seed_selectivity, selectivity_test
from mechclaims.interp.sources import PANEL_SIZE, ModelSource
from mechclaims.interp.stats import gaussian_features
from mechclaims.interp.units import (
    SEED_SEQ_LEN,
    SEED_UNITS,
    activations,
    embedding_only,
    rotated_basis,
    unit_sets,
)
from mechclaims.interp.verdicts import evidence_beyond
from mechclaims.model.transformer import Transformer

SEED_PRINTED_DIMS = 10  # the seed's code looked at dimensions 0-9
SEED_SAMPLES = 500
# The controlled reading's comparisons with nulls (margin rule): null -> (network's statistic,
# the null's), measured on the same inputs. Beyond chance, and beyond the embedding alone.
BEYOND = {
    "gaussian": ("network_selective_fraction", "gaussian_selective_fraction"),
    "rotated": ("network_median_explained", "rotated_median_explained"),
}


def seed_protocol(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """The seed's experiment 3 as its code ran it: for each of dimensions 0-9 of the residual
    stream after block 0, 500 fresh random sequences (the seed drew new ones per dimension);
    the tally is the position-selective plus the token-selective dimensions among those ten.
    Beside it, not the seed's: every dimension on one shared sample of 500."""
    model = source.model(seed)
    rng = np.random.default_rng([seed, 3, 0])
    dims = min(SEED_PRINTED_DIMS, source.cfg.d_model)
    per_dim = random_sequences(rng, dims * SEED_SAMPLES, PANEL_SIZE, SEED_SEQ_LEN)  # [k*n,T]
    shared = random_sequences(rng, SEED_SAMPLES, PANEL_SIZE, SEED_SEQ_LEN)  # [n,T]
    acts = activations(model, source.tokens(np.vstack([per_dim, shared])), [SEED_UNITS])[
        SEED_UNITS.label
    ]  # [k*n+n,T,d]
    own = acts[: len(per_dim)].reshape(dims, SEED_SAMPLES, SEED_SEQ_LEN, -1)  # [k,n,T,d]
    printed = seed_selectivity(
        own[np.arange(dims), ..., np.arange(dims)],  # [k,n,T]: dimension k on its own sample
        per_dim.reshape(dims, SEED_SAMPLES, SEED_SEQ_LEN),
        thresholds["seed_std"],
        PANEL_SIZE,
    )
    every = seed_selectivity(acts[len(per_dim) :].transpose(2, 0, 1), shared,
                             thresholds["seed_std"], PANEL_SIZE)  # fmt: skip
    return {
        "seed_count": printed.count,
        "position_selective_dims_0_9": int(printed.position_selective.sum()),
        "token_selective_dims_0_9": int(printed.token_selective.sum()),
        "position_std_dims_0_9": printed.position_std,
        "token_std_dims_0_9": printed.token_std,
        "selective_dims_all": int(every.selective.sum()),
        "dims": int(acts.shape[-1]),
    }


def controlled(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """Selectivity of the network's units and of the three nulls on one balanced design."""
    return controlled_on(source.model(seed), source, seed, thresholds)


def controlled_on(model: Transformer, source: ModelSource, seed: int, thresholds: dict) -> dict:
    """`controlled` on a given model of the source (e.g. a snapshot of its training)."""
    rng = np.random.default_rng([seed, 3, 1])
    tokens = balanced_sequences(rng, thresholds["n_sequences"], PANEL_SIZE, SEED_SEQ_LEN)
    by_set = activations(model, source.tokens(tokens), unit_sets(model))  # {label: [n,T,u]}
    network = np.concatenate(list(by_set.values()), axis=-1)  # [n,T,U]
    sources = {
        "network": network,
        "embedding": embedding_only(model, source.tokens(tokens)),
        "rotated": np.concatenate(
            [rotated_basis(acts, rng) for acts in by_set.values()],
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
    return result


# What the controlled reading decides on across seeds: the margin rule on each comparison.
controlled_evidence = functools.partial(evidence_beyond, pairs=BEYOND)


CLAIM = Claim(
    id="selectivity",
    statement="A random transformer holds many token- and position-selective units.",
    readings={
        "seed-protocol": Reading(
            seed_protocol,
            statistic="seed_count",
            threshold="seed_min_count",
            holds=at_least("seed_count", "seed_min_count"),
            hidden=("seed_count",),
        ),
        "controlled": Reading(
            controlled,
            statistic="network_median_explained",
            null="embedding_median_explained",
            holds=beyond_margins(BEYOND),
        ),
    },
    context=SEED_SEQ_LEN,
    beyond=BEYOND,
    studied_null="rotated",
    studied_units="median eta², token + position",
    on_model=controlled_on,
    controlled_evidence=controlled_evidence,
    # Units selective for the token or the position, amid units that vary with the whole
    # prefix, reach "supported"; the network's units read along a random rotation do not.
    controls=Controls(measure=controlled, positive="selective-units", negative="rotated"),
)
