"""Claim 2, the hand-picked hypothesis: the per-seed measurements of both readings.

The claim, its tests and figures are in claims/test_claim2_hypothesis.py.
Pure functions of (model source, seed, thresholds) returning plain values, so that the harness's
broker can run them in this process or anywhere else. The module ends with the claim's
declaration (`CLAIM`, mechclaims.interp.claims.declaration): what each reading measures, records
and decides a seed by, which its tests, the broker's plan, the checkpoint judge and the studies
read.
"""

from __future__ import annotations

import numpy as np

from mechclaims.interp.claims.declaration import Claim, Reading, at_least
from mechclaims.interp.detectors import (
    glass_delta_interval,
    token_effect_test,
    token_effects,
)
from mechclaims.interp.inputs import all_sequences, distinct_prefix_rows, random_sequences
from mechclaims.interp.sources import PANEL_SIZE, ModelSource
from mechclaims.interp.stats import (
    benjamini_hochberg,
    bh_adjust,
    glass_delta,
)
from mechclaims.interp.units import (
    SEED_SEQ_LEN,
    SEED_UNITS,
    activations,
    embedding_only,
    rotated_basis,
)

SEED_DIM, SEED_TOKEN, SEED_POSITION = 0, 7, 3  # the seed's hand-picked hypothesis
HAND_PICKED = (SEED_POSITION, SEED_TOKEN, SEED_DIM)  # index into a family [T, V, d]
FAMILY_ARRAYS = ("family_effects", "embedding_family_effects", "rotated_family_effects")


def seed_protocol(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """The seed's effect: 100 random sequences with token 7 at position 3, 100 with another.
    As the seed's code drew it, "another" is (7 + 1 + randint(0, 8)) % 10: never 6 nor 7."""
    model = source.model(seed)
    rng = np.random.default_rng([seed, 2, 0])
    n = thresholds["seed_samples"]
    with_token = random_sequences(rng, n, PANEL_SIZE, SEED_SEQ_LEN)
    with_token[:, SEED_POSITION] = SEED_TOKEN
    without = random_sequences(rng, n, PANEL_SIZE, SEED_SEQ_LEN)
    without[:, SEED_POSITION] = (SEED_TOKEN + 1 + rng.integers(0, PANEL_SIZE - 2, n)) % PANEL_SIZE
    tokens = source.tokens(np.vstack([with_token, without]))
    acts = activations(model, tokens, [SEED_UNITS])[SEED_UNITS.label]  # [2n,T,d]
    at_hypothesis = acts[:, SEED_POSITION, SEED_DIM]  # [2n]
    return {
        "effect": float(glass_delta(at_hypothesis[:n], at_hypothesis[n:])),
        "mean_with": float(at_hypothesis[:n].mean()),
        "mean_without": float(at_hypothesis[n:].mean()),
        "std_without": float(at_hypothesis[n:].std()),
    }


def controlled(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """The hand-picked hypothesis on every sequence, tested within its family, with nulls."""
    model, cfg = source.model(seed), source.cfg
    rng = np.random.default_rng([seed, 2, 1])
    tokens = all_sequences(PANEL_SIZE, SEED_SEQ_LEN)  # [V^T,T] panel indices
    acts = activations(model, source.tokens(tokens), [SEED_UNITS])[SEED_UNITS.label]  # [n,T,d]
    rows = _distinct_rows(cfg)
    tested = [
        token_effect_test(acts[rows[p], p], tokens[rows[p], p], PANEL_SIZE, rng,
                          thresholds["n_permutations"])
        for p in range(SEED_SEQ_LEN)
    ]  # fmt: skip
    effects = np.stack([effect for effect, _ in tested])  # [T,V,d]
    p_values = np.stack([p for _, p in tested])  # [T,V,d]
    discovered = benjamini_hochberg(p_values, thresholds["fdr"])
    at_hypothesis = acts[:, SEED_POSITION, SEED_DIM]  # [n]
    with_token = tokens[:, SEED_POSITION] == SEED_TOKEN
    estimate = glass_delta_interval(at_hypothesis[with_token], at_hypothesis[~with_token],
                                    thresholds["confidence"])  # fmt: skip
    nulls = {
        "embedding": _family_effects(embedding_only(model, source.tokens(tokens)), tokens, rows),
        "rotated": _family_effects(
            rotated_basis(acts, rng),
            tokens,
            rows,
        ),
    }
    large = thresholds["min_effect"]
    result = {
        "effect": float(effects[HAND_PICKED]),
        "effect_low": float(estimate.low),
        "effect_high": float(estimate.high),
        "p_value": float(p_values[HAND_PICKED]),
        "q_value": float(bh_adjust(p_values)[HAND_PICKED]),
        "discovered": bool(discovered[HAND_PICKED]),
        "family_size": int(p_values.size),
        "family_discovered_fraction": float(discovered.mean()),
        "network_share_large": float(np.mean(effects >= large)),
        "family_effects": effects.ravel(),
    }
    for name, family in nulls.items():
        result[f"{name}_effect"] = float(family[HAND_PICKED])
        result[f"{name}_share_large"] = float(np.mean(family >= large))
        result[f"{name}_family_effects"] = family.ravel()
    return result


def _distinct_rows(cfg) -> list[np.ndarray]:
    """Per position p, the rows of all_sequences that hold distinct inputs at p: with a causal
    model the activation at p depends on x[:p+1] only, so 10^(p+1) rows; otherwise all."""
    if cfg.causal:
        return [distinct_prefix_rows(PANEL_SIZE, SEED_SEQ_LEN, p) for p in range(SEED_SEQ_LEN)]
    return [np.arange(PANEL_SIZE**SEED_SEQ_LEN)] * SEED_SEQ_LEN


def _family_effects(acts: np.ndarray, tokens: np.ndarray, rows) -> np.ndarray:
    """Glass's delta of every (position, token, unit) candidate: acts [n,T,d] -> [T,V,d]."""
    return np.stack(
        [token_effects(acts[rows[p], p], tokens[rows[p], p], PANEL_SIZE)
         for p in range(SEED_SEQ_LEN)]
    )  # fmt: skip


def controlled_holds(result: dict, thresholds: dict) -> bool:
    """One seed: the hand-picked candidate survives BH in its family, with a large effect."""
    return bool(result["discovered"] and result["effect"] >= thresholds["min_effect"])


CLAIM = Claim(
    id="specific-hypothesis",
    statement="Dimension 0 of the residual stream after block 0 detects token 7 at position 3.",
    readings={
        "seed-protocol": Reading(
            seed_protocol,
            statistic="effect",
            threshold="min_effect",
            holds=at_least("effect", "min_effect"),
            hidden=("effect",),
        ),
        "controlled": Reading(
            controlled,
            statistic="effect",
            threshold="min_effect",
            null="embedding_effect",
            holds=controlled_holds,
            hidden=("effect", *FAMILY_ARRAYS),
        ),
    },
    context=SEED_SEQ_LEN,
)
