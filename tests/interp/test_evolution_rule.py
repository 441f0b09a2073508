"""Evolution through training: the emerge/persist/fade rule on synthetic trajectories, its
stated error rate per cell (simulated at the margin), the margin of each claim's studied null,
and the choices of its null (pairing by seed, the step-0 baseline, the null at each step), each
with a test that fails if it is dropped; a real trajectory's step 0 is the claims' own
controlled measurement of the random init, against each claim's studied null."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from mechclaims.interp.claims import circuits, selectivity
from mechclaims.interp.claims.catalog import STUDIED
from mechclaims.interp.claims.declaration import Claim
from mechclaims.interp.claims.evolution import (
    STATISTICS,
    claim_verdict,
    evolution_verdict,
    seed_changes,
    seed_word,
    trajectory,
)
from mechclaims.interp.claims.measured import (
    NULL_NAMES,
    compared,
    measured_thresholds,
    studied_margin,
)
from mechclaims.interp.sources import source_for
from mechclaims.interp.verdicts import margin_verdict
from mechclaims.model.config import TransformerConfig

MARGIN = 0.05


def trajectories(network: np.ndarray, null: np.ndarray | None = None) -> list[dict]:
    """Per seed, a trajectory of one statistic ("selectivity") from [seeds, steps] arrays."""
    null = np.zeros_like(network) if null is None else null
    return [
        {"steps": np.arange(network.shape[1]), "selectivity": {"network": n, "null": e}}
        for n, e in zip(network, null, strict=True)
    ]


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ([0.20, 0.22, 0.18, 0.21, 0.19], "emerges"),  # interval above +margin
        ([-0.20, -0.22, -0.18, -0.21, -0.19], "fades"),  # below -margin
        ([0.01, -0.01, 0.0, 0.005, -0.004], "persists"),  # inside ±margin
        ([0.0, 0.1, -0.1, 0.05, -0.05], "inconclusive"),  # straddles a margin
        ([0.06, 0.04, 0.05, 0.07, 0.03], "inconclusive"),  # a change of the margin's size
    ],
)
def test_the_rule_is_the_margin_rule_on_both_sides(changes, word):
    decided = evolution_verdict(np.array(changes), MARGIN, 0.95)
    assert decided.verdict == word
    low, high = scipy.stats.t.interval(0.95, 4, loc=np.mean(changes),
                                       scale=scipy.stats.sem(changes))  # fmt: skip
    assert (decided.low, decided.high) == (pytest.approx(low), pytest.approx(high))
    up = margin_verdict(np.array(changes), MARGIN).verdict
    down = margin_verdict(-np.array(changes), MARGIN).verdict
    assert (word == "emerges") == (up == "supported")
    assert (word == "fades") == (down == "supported")
    assert (word == "persists") == (up == down == "refuted")
    assert decided.describe().startswith(f"{word}: change of network - null from step 0")


@pytest.mark.parametrize(
    ("true_change", "wrong"),
    [(MARGIN, "emerges"), (-MARGIN, "fades"), (MARGIN, "persists"), (-MARGIN, "persists")],
)
def test_each_cells_word_is_wrong_at_most_half_of_one_minus_confidence(true_change, wrong):
    """The stated rate of a cell (no correction across cells): with the true mean change at the
    margin, the hardest truth for each word, emerges (or fades, or persists) is said in at most
    (1 - confidence) / 2 of simulated cells on 5 seeds, at the registry's level and another."""
    rng = np.random.default_rng(3)
    for confidence in (0.95, 0.8):
        changes = rng.normal(true_change, MARGIN, (2000, 5))
        said = np.mean([evolution_verdict(row, MARGIN, confidence).verdict == wrong
                        for row in changes])  # fmt: skip
        assert said <= (1 - confidence) / 2 + 3 * np.sqrt((1 - confidence) / 2 / 2000)


def test_changes_are_paired_by_seed():
    """Seeds differ widely at init (offsets), and each rises by about 0.1 with training: the
    paired changes show it; comparing the last snapshots with the inits of other seeds (as two
    unpaired samples) would drown it in the offsets."""
    rng = np.random.default_rng(0)
    offsets = rng.normal(0.0, 1.0, (6, 1))
    rise = np.array([0.0, 0.05, 0.1]) + rng.normal(0.0, 0.005, (6, 3))
    decided = evolution_verdict(seed_changes(trajectories(offsets + rise), "selectivity"), MARGIN)
    assert decided.verdict == "emerges"
    unpaired = scipy.stats.ttest_ind((offsets + rise)[:, -1], (offsets + rise)[:, 0])
    assert unpaired.pvalue > 0.5  # an unpaired comparison sees nothing


def test_the_baseline_is_step_0():
    """A property that rises in the first steps and then holds still emerges: it is measured
    from the random init, not from the snapshot before the last."""
    network = np.tile([0.0, 0.2, 0.2, 0.2], (5, 1)) + np.random.default_rng(1).normal(
        0.0, 0.005, (5, 4)
    )
    changes = seed_changes(trajectories(network), "selectivity")
    assert evolution_verdict(changes, MARGIN).verdict == "emerges"
    late = network[:, -1] - network[:, -2]
    assert evolution_verdict(late, MARGIN).verdict == "persists"


def test_the_null_is_subtracted_at_each_step():
    """The null is measured on each snapshot (the embedding trains too, a rotated basis is of
    the trained units): when the network's statistic rises only as much as its null's,
    nothing emerges beyond the null (against the init's null it would seem to)."""
    rng = np.random.default_rng(2)
    null = np.tile([0.5, 0.6, 0.7], (5, 1)) + rng.normal(0.0, 0.005, (5, 3))
    network = null + 0.1 + rng.normal(0.0, 0.001, (5, 3))
    result = trajectories(network, null)
    assert evolution_verdict(seed_changes(result, "selectivity"), MARGIN).verdict == "persists"
    against_init = (network[:, -1] - null[:, 0]) - (network[:, 0] - null[:, 0])
    assert evolution_verdict(against_init, MARGIN).verdict == "emerges"


def test_a_claim_is_held_against_the_margin_of_its_studied_null():
    """Selectivity is decided against the rotated basis: its evolution takes margin_rotated,
    not the margin of another of its nulls, and names the comparison."""
    network = np.tile([0.0, 0.05], (5, 1)) + np.random.default_rng(4).normal(0.0, 0.001, (5, 2))
    thresholds = {"confidence": 0.95, "selectivity.margin_rotated": 0.01,
                  "selectivity.margin_gaussian": 0.1}  # fmt: skip
    decided = claim_verdict(trajectories(network), "selectivity", thresholds)
    assert (decided.verdict, decided.margin) == ("emerges", 0.01)  # against 0.1: persists
    assert decided.describe().startswith("emerges: change of network - rotated basis from step")
    with pytest.raises(ValueError, match=r"no selectivity\.margin_rotated"):
        studied_margin({"selectivity.margin_embedding": 0.01}, "selectivity")


def test_every_studied_null_has_a_name_and_a_comparison_the_claim_decides_on():
    for claim, declared in STUDIED.items():
        assert declared.studied_null in declared.beyond
        assert compared(claim) == f"network - {NULL_NAMES[declared.studied_null]}"
    with pytest.raises(ValueError, match="claim x: its studied null 'rotated' is not one of"):
        Claim("x", "", {}, beyond={"gaussian": ("a", "b")}, studied_null="rotated")


def test_seed_word():
    assert [seed_word(change, 0.1) for change in (0.2, -0.2, 0.05)] == [
        "emerges", "fades", "persists"]  # fmt: skip


THRESHOLDS = {
    "train_steps": 4, "train_batch_size": 4, "train_lr": 0.01, "train_warmup": 1,
    "snapshot_every": 2, "eval_size": 16,
    **{f"feature-detectors.{k}": v for k, v in {
        "n_sequences": 100, "discovery_fraction": 0.5, "n_permutations": 9, "fdr": 0.05,
        "min_effect": 0.5, "margin_gaussian": 0.1, "margin_embedding": 0.2}.items()},
    **{f"selectivity.{k}": v for k, v in {
        "n_sequences": 20, "n_permutations": 9, "fdr": 0.05, "min_eta2": 0.06,
        "margin_gaussian": 0.1, "margin_rotated": 0.01}.items()},
    **{f"circuits.{k}": v for k, v in {
        "n_sequences": 40, "strong_r": 0.8, "fdr": 0.05, "discovery_fraction": 0.5,
        "partition_share": 0.95, "margin_embedding": 0.005, "margin_rotated": 0.005,
        "margin_gaussian": 0.005}.items()},
    **{f"structured-inputs.{k}": v for k, v in {
        "n_random_patterns": 6, "discovery_fraction": 0.5, "n_permutations": 9, "fdr": 0.05,
        "min_unit_set_share": 0.5, "margin_layout": 0.05}.items()},
}  # fmt: skip


def test_a_trajectory_is_measured_at_every_snapshot_and_starts_at_the_claims_own_measurement():
    """Snapshots at steps 0, 2 and 4 of a short training; step 0 is the random init, so each
    claim's values there are its own controlled reading of the source (the split into
    controlled and controlled_on moved nothing)."""
    source = source_for(TransformerConfig.preset("tiny-mha"))
    result = trajectory(source, 3, THRESHOLDS)
    assert result["steps"].tolist() == [0, 2, 4]
    assert set(STATISTICS) <= set(result)
    init = selectivity.controlled(source, 3, measured_thresholds(THRESHOLDS, "selectivity"))
    assert result["selectivity"]["network"][0] == init["network_median_explained"]
    assert result["selectivity"]["null"][0] == init["rotated_median_explained"]
    init = circuits.controlled(source, 3, measured_thresholds(THRESHOLDS, "circuits"))["result"]
    assert result["circuits"]["network"][0] == init["pos3_network_rate"]
    moved = [result[claim]["network"][-1] != result[claim]["network"][0] for claim in STATISTICS]
    assert any(moved)  # training changed the model
    for name in ("accuracy", "structured_accuracy"):
        assert np.all((result[name] >= 0) & (result[name] <= 1))


def test_measured_thresholds_are_a_claims_own_names():
    assert measured_thresholds({"selectivity.fdr": 0.05, "fdr": 0.1, "circuits.fdr": 0.2},
                               "selectivity") == {"fdr": 0.05}  # fmt: skip
