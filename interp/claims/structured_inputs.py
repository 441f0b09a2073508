"""Claim 5, structured inputs: the per-seed measurements of both readings.

The claim, its tests and figures are in claims/test_claim5_structured.py.
Pure functions of (model source, seed, thresholds) returning plain values, so that the harness's
broker can run them in this process or anywhere else. The module ends with the claim's
declaration (`CLAIM`, mechclaims.interp.claims.declaration): what each reading measures, records
and decides a seed by, which its tests, the broker's plan, the checkpoint judge and the studies
read.
"""

from __future__ import annotations

import functools

import numpy as np

from mechclaims.interp.claims.declaration import Claim, Reading
from mechclaims.interp.consistency import (
    additive_basis,
    additive_residuals,
    against_null,
    chance_of_extreme,
    decoder_recall,
    empirical_chance_of_extreme,
    family_agreement,
    family_designs,
    family_eta_squared,
    pattern_starts,
    shared_inputs,
    z_scores,
)
from mechclaims.interp.inputs import SEED_STRUCTURED, random_sequences
from mechclaims.interp.planted import Controls
from mechclaims.interp.sources import PANEL_SIZE, ModelSource
from mechclaims.interp.stats import (
    benjamini_hochberg,
    bh_adjust,
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
from mechclaims.interp.verdicts import evidence_beyond, seed_beyond
from mechclaims.model.transformer import Transformer

SEED_DIM = 0  # the dimension the seed printed
NULL_SOURCES = ("embedding", "gaussian")  # the nulls of the agreement and decoder tests
UNIT_SOURCES = ("network", "rotated", "embedding", "gaussian")  # the per-unit reading
# The comparison with a null (margin rule): the family decoder's held-out accuracy (median over
# unit sets) on the seed's families beyond the same decoder's on their layout-matched stand-ins,
# the same network, seed and random relations.
BEYOND = {"layout": ("network_decoder_accuracy", "network_layout_decoder_accuracy")}


def structured_tokens() -> np.ndarray:
    """The seed's four inputs, in the order of SEED_STRUCTURED."""
    return np.array(list(SEED_STRUCTURED.values()))  # [4 inputs, SEED_SEQ_LEN]


def seed_protocol(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """Dimension 0 at the last position for the seed's four inputs, as z-scores against its
    responses to random sequences."""
    model = source.model(seed)
    rng = np.random.default_rng([seed, 5, 0])
    reference_tokens = random_sequences(rng, thresholds["seed_reference_sequences"],
                                        PANEL_SIZE, SEED_SEQ_LEN)  # fmt: skip
    tokens = np.concatenate([structured_tokens(), reference_tokens])  # [4 + n, T]
    acts = activations(model, source.tokens(tokens), [SEED_UNITS])[SEED_UNITS.label]  # [4+n,T,d]
    last = acts[:, -1, SEED_DIM : SEED_DIM + 1]  # [4 + n, 1]
    responses, reference = last[: len(SEED_STRUCTURED)], last[len(SEED_STRUCTURED) :]
    z = z_scores(responses, reference)[:, 0]  # [4]
    reference_z = z_scores(reference, reference)[:, 0]  # [n]
    k, cut = len(SEED_STRUCTURED), thresholds["seed_z"]
    return {
        "inputs": list(SEED_STRUCTURED),
        "responses": responses[:, 0],
        "z_scores": z,
        "max_abs_z": float(np.max(np.abs(z))),
        "reference_mean": float(reference.mean()),
        "reference_std": float(reference.std()),
        "chance_normal": chance_of_extreme(k, cut),
        "chance_empirical": empirical_chance_of_extreme(reference_z, k, cut),
        "reference_responses": reference[:, 0],  # for the figure, not recorded
    }


def controlled(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """Agreement within the seed's families and a held-out family decoder, against random
    relations, per unit set and per null; the same decoder on layout-matched stand-ins of the
    families; the per-unit share of family-selective units against a rotated basis."""
    return controlled_on(source.model(seed), source, seed, thresholds)


def controlled_on(model: Transformer, source: ModelSource, seed: int, thresholds: dict) -> dict:
    """`controlled` on a given model of the source (e.g. a snapshot of its training)."""
    rng = np.random.default_rng([seed, 5, 1])
    design, matched = family_designs(PANEL_SIZE, SEED_SEQ_LEN, thresholds["n_random_patterns"],
                                     thresholds["discovery_fraction"], rng)  # fmt: skip
    tokens, (seed_rows, matched_rows) = shared_inputs(design, matched)  # one forward pass
    model_tokens = source.tokens(tokens)
    by_set = {
        label.replace(" ", "_"): acts[:, -1]  # [n, units]
        for label, acts in activations(model, model_tokens, unit_sets(model)).items()
    }
    sources = {
        **by_set,
        "embedding": embedding_only(model, model_tokens)[:, -1],  # [n, d]
        "gaussian": gaussian_features(len(tokens), source.cfg.d_model, rng),
    }
    labelings = design.labelings(rng, thresholds["n_permutations"])  # [1 + m, patterns]
    bases = [additive_basis(d.tokens, PANEL_SIZE) for d in (design, matched)]  # [n, r] each
    result: dict = {
        "unit_sets": list(by_set),
        "families": list(design.family_names),
        "chance": 1.0 / design.n_families,
        "layout_stand_ins": _stand_ins(matched),
    }
    residuals = {}
    for name, raw in sources.items():
        # [n, units]: what remains beyond the tokens one by one, i.e. how they relate
        residuals[name], result[f"{name}_additive_share"] = additive_residuals(
            raw[seed_rows], bases[0]
        )
        result |= _family_tests(name, residuals[name], design, labelings)
        # the same decoder on the layout-matched stand-ins (the observed families only)
        matched_residuals, _ = additive_residuals(raw[matched_rows], bases[1])
        recall = decoder_recall(matched_residuals, matched, matched.families[None])[0]  # [k]
        result[f"{name}_layout_decoder_accuracy"] = float(recall.mean())
        result[f"{name}_layout_decoder_recall_by_family"] = recall
    result |= _unit_set_decisions(result, list(by_set), thresholds)
    result |= _family_selective_units(residuals, list(by_set), design, labelings, rng, thresholds)
    return result


def _stand_ins(matched) -> list[str]:
    """Each layout-matched family's first relation, as its member from token 0 ("0 8 5 7"; the
    alternating family's stand-in "0 0 1 1" is AABB, "0 1 1 0" ABBA)."""
    starts = pattern_starts(matched.pattern_ids, PANEL_SIZE, SEED_SEQ_LEN)  # [P, L]
    first = [np.flatnonzero(matched.families == f)[0] for f in range(matched.n_families)]
    return [" ".join(str(token) for token in starts[p]) for p in first]


def _family_tests(name: str, residuals: np.ndarray, design, labelings: np.ndarray) -> dict:
    """Agreement within the seed's families and the held-out decoder (and its recall of each
    family), each against the relabelled patterns, of one source."""
    by_family = family_agreement(residuals, design, labelings)  # [1 + m, families]
    agreement = against_null(by_family.mean(axis=1))
    recall = decoder_recall(residuals, design, labelings)  # [1 + m, families]
    decoder = against_null(recall.mean(axis=1))
    return {
        f"{name}_agreement": float(agreement.observed),
        f"{name}_agreement_null_mean": float(agreement.null.mean()),
        f"{name}_agreement_p": float(agreement.p_values),
        f"{name}_agreement_by_family": by_family[0],
        f"{name}_agreement_by_family_null_mean": by_family[1:].mean(axis=0),
        f"{name}_agreement_by_family_p": against_null(by_family).p_values,
        f"{name}_decoder_accuracy": float(decoder.observed),
        f"{name}_decoder_recall_by_family": recall[0],
        f"{name}_decoder_null_median": float(np.median(decoder.null)),
        f"{name}_decoder_null_95": float(np.quantile(decoder.null, 0.95)),
        f"{name}_decoder_p": float(decoder.p_values),
    }


def _unit_set_decisions(result: dict, sets: list[str], thresholds: dict) -> dict:
    """BH over unit sets x both tests: the tests hold on a seed if both are discoveries in at
    least `min_unit_set_share` of the sets. The network's decoder on each design: the median
    over the sets of its held-out accuracy (and of its recall of each family); beyond the layout:
    the seed's families' minus the stand-ins' (margin rule across seeds, BEYOND)."""
    p_values = np.array([[result[f"{s}_agreement_p"], result[f"{s}_decoder_p"]] for s in sets])
    q_values = bh_adjust(p_values)  # [sets, 2]
    discovered = (q_values <= thresholds["fdr"]).all(axis=1)  # [sets]
    decided = {
        "agreement_q": q_values[:, 0],
        "decoder_q": q_values[:, 1],
        "unit_set_discovered": discovered,
        "unit_set_share": float(discovered.mean()),
        "holds_tests": bool(discovered.mean() >= thresholds["min_unit_set_share"]),
    }
    for design in ("", "layout_"):
        decided[f"network_{design}decoder_accuracy"] = float(
            np.median([result[f"{s}_{design}decoder_accuracy"] for s in sets])
        )
        decided[f"network_{design}decoder_recall_by_family"] = np.median(
            [result[f"{s}_{design}decoder_recall_by_family"] for s in sets], axis=0
        )
    return decided


def _family_selective_units(residuals, sets, design, labelings, rng, thresholds) -> dict:
    """Share of units whose response (beyond the tokens one by one) over the family members
    differs by family (eta² against the same relabelings of patterns, BH within a source):
    neurons, a rotated basis of each unit set, the embedding and Gaussian features."""
    rotated = [rotated_basis(residuals[s], rng) for s in sets]
    per_unit = {
        "network": np.concatenate([residuals[s] for s in sets], axis=-1),  # [n, U]
        "rotated": np.concatenate(rotated, axis=-1),  # [n, U]
        "embedding": residuals["embedding"],
        "gaussian": residuals["gaussian"],
    }
    result = {}
    for name, responses in per_unit.items():
        test = against_null(family_eta_squared(responses, design, labelings))  # [U]
        result[f"{name}_family_units_fraction"] = float(
            benjamini_hochberg(test.p_values, thresholds["fdr"]).mean()
        )
        result[f"{name}_family_median_eta2"] = float(np.median(test.observed))
    return result


# What the controlled reading decides on across seeds: the per-seed tests (the Wilson rule on
# holds_tests) and the margin rule on the seed's families beyond their layout-matched stand-ins.
controlled_evidence = functools.partial(evidence_beyond, pairs=BEYOND, holds="holds_tests")


def seed_holds(result: dict, thresholds: dict) -> bool:
    """One seed of the seed's printout: some structured input beyond seed_z standard scores."""
    return bool(result["max_abs_z"] > thresholds["seed_z"])


def controlled_holds(result: dict, thresholds: dict) -> bool:
    """One seed: the per-unit-set tests, and the seed's families beyond their stand-ins."""
    return bool(result["holds_tests"] and seed_beyond(result, BEYOND, thresholds))


CLAIM = Claim(
    id="structured-inputs",
    statement="Random features respond consistently to meaningful patterns.",
    readings={
        "seed-protocol": Reading(
            seed_protocol,
            statistic="max_abs_z",
            threshold="seed_z",
            holds=seed_holds,
            hidden=("reference_responses",),
        ),
        "controlled": Reading(
            controlled,
            statistic="unit_set_share",
            threshold="min_unit_set_share",
            holds=controlled_holds,
        ),
    },
    context=SEED_SEQ_LEN,
    beyond=BEYOND,
    studied_null="layout",
    studied_units="decoder balanced accuracy",
    on_model=controlled_on,
    controlled_evidence=controlled_evidence,
    # Units that count the steps of +1 and -1 between tokens (what ascending and descending
    # are) beside the layout reach "supported"; units that encode only the layout do not.
    controls=Controls(measure=controlled, positive="relations", negative="layout"),
)
