"""Claim 1, feature detectors: the per-seed measurements of both readings.

The claim, its tests and figures are in claims/test_claim1_detectors.py.
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
from mechclaims.interp.detectors import (
    chance_of_shared_feature,
    detector_test,
    most_shared_feature,
    top_sequences,
)
from mechclaims.interp.inputs import balanced_sequences, random_sequences
from mechclaims.interp.planted import Controls
from mechclaims.interp.sources import PANEL_SIZE, ModelSource
from mechclaims.interp.stats import (
    discovery_split,
    gaussian_features,
)
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

SEED_DIM = 0  # the dimension the seed ranked sequences by
SOURCES = ("network", "embedding", "rotated", "gaussian")
# The controlled reading's comparisons with nulls (margin rule): null -> (network's statistic,
# the null's), measured on the same inputs. Beyond chance, and beyond the embedding alone.
BEYOND = {
    "gaussian": ("network_confirmed_fraction", "gaussian_confirmed_fraction"),
    "embedding": ("network_median_holdout_d", "embedding_median_holdout_d"),
}


def seed_protocol(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """The seed's printout: the 5 random sequences on which dim 0 peaks, and what they share.
    Tokens are panel indices (the seed's 0..9)."""
    model = source.model(seed)
    tokens = random_sequences(np.random.default_rng([seed, 1, 0]), thresholds["seed_samples"],
                              PANEL_SIZE, SEED_SEQ_LEN)  # fmt: skip
    acts = activations(model, source.tokens(tokens), [SEED_UNITS])[SEED_UNITS.label]  # [n,T,d]
    responses = acts[..., SEED_DIM].max(axis=1)  # [n]
    top = top_sequences(responses, thresholds["seed_top"])  # [k]
    token, position, count = most_shared_feature(tokens[top], PANEL_SIZE)
    return {
        "top_sequences": tokens[top].tolist(),
        "top_activations": responses[top],
        "shared_token": token,
        "shared_position": position,
        "shared_count": count,
        "responses": responses,
    }


def controlled(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """Confirmed detectors and held-out effects of the network's units and of three nulls."""
    return controlled_on(source.model(seed), source, seed, thresholds)


def controlled_on(model: Transformer, source: ModelSource, seed: int, thresholds: dict) -> dict:
    """`controlled` on a given model of the source (e.g. a snapshot of its training)."""
    rng = np.random.default_rng([seed, 1, 1])
    tokens = balanced_sequences(rng, thresholds["n_sequences"], PANEL_SIZE, SEED_SEQ_LEN)
    split = discovery_split(len(tokens), thresholds["discovery_fraction"], rng)
    by_set = activations(model, source.tokens(tokens), unit_sets(model))  # {label: [n,T,units]}
    network = np.concatenate([acts.max(axis=1) for acts in by_set.values()], axis=-1)  # [n,U]
    responses = {  # [n,U] per source: max over positions, the seed's response
        "network": network,  # L0 resid first
        "embedding": embedding_only(model, source.tokens(tokens)).max(axis=1),
        "rotated": np.concatenate(
            [rotated_basis(acts, rng).max(axis=1) for acts in by_set.values()],
            axis=-1,
        ),
        # i.i.d. Gaussian responses on the same sequences: no dependence on any token
        "gaussian": gaussian_features(len(tokens), network.shape[-1], rng),
    }
    result = {}
    for name, values in responses.items():
        test = detector_test(values, tokens, PANEL_SIZE, split, rng,
                             thresholds["n_permutations"])  # fmt: skip
        confirmed = test.confirmed(thresholds["fdr"], thresholds["min_effect"])
        result[f"{name}_confirmed_fraction"] = float(confirmed.mean())
        result[f"{name}_median_holdout_d"] = float(np.median(test.holdout_d))
        if name == "network":  # the seed's dim 0, as the controlled test sees it
            position, token = divmod(int(test.feature[SEED_DIM]), PANEL_SIZE)
            result["dim0_feature"] = f"token {token} at position {position}"
            result["dim0_holdout_d"] = float(test.holdout_d[SEED_DIM])
            result["dim0_confirmed"] = bool(confirmed[SEED_DIM])
    return result


# What the controlled reading decides on across seeds: the margin rule on each comparison.
controlled_evidence = functools.partial(evidence_beyond, pairs=BEYOND)


def chance_of_shared_top_feature(thresholds: dict) -> float:
    return chance_of_shared_feature(PANEL_SIZE, SEED_SEQ_LEN, thresholds["seed_top"],
                                    thresholds["seed_min_shared"])  # fmt: skip


CLAIM = Claim(
    id="feature-detectors",
    statement="Units of a random transformer are feature detectors: each fires for one token at "
    "one position.",
    readings={
        "seed-protocol": Reading(
            seed_protocol,
            statistic="shared_count",
            threshold="seed_min_shared",
            holds=at_least("shared_count", "seed_min_shared"),
            beside=lambda thresholds: {"chance_rate": chance_of_shared_top_feature(thresholds)},
            hidden=("responses",),
        ),
        "controlled": Reading(
            controlled,
            statistic="network_median_holdout_d",
            null="embedding_median_holdout_d",
            holds=beyond_margins(BEYOND),
        ),
    },
    context=SEED_SEQ_LEN,
    beyond=BEYOND,
    studied_null="embedding",
    studied_units="median held-out Cohen's d",
    on_model=controlled_on,
    controlled_evidence=controlled_evidence,
    # Units that fire for one feature each, beyond the embedding, reach "supported"; the
    # embedding alone in the network's place does not (tests/controls).
    controls=Controls(measure=controlled, positive="detectors", negative="embedding"),
)
