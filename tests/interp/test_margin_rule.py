"""The margin rule on paired differences across seeds: a tie is refuted, a real effect of the
registry's size supported, and false support stays at its nominal rate (simulated runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from mechclaims.fixtures.registry import load_registry, registry_seeds
from mechclaims.interp.stats import wilson_interval
from mechclaims.interp.verdicts import (
    combined_verdict,
    margin_verdict,
    paired_differences,
    reading_verdict,
    seed_beyond,
)

REGISTRY = load_registry(Path(__file__).resolve().parents[2] / "claims" / "registry.toml")
SIMULATIONS = 4000
NOMINAL_FALSE_SUPPORT = 0.025  # one side of a 95% interval


def registry_margins() -> list[tuple[str, str, float, int]]:
    """(claim, null, margin, seeds) of every comparison with a null in the registry."""
    return [
        (claim, name.removeprefix("margin_"), value, len(registry_seeds(REGISTRY, claim)))
        for claim, entry in REGISTRY["claims"].items()
        for name, value in entry["thresholds"].items()
        if name.startswith("margin_")
    ]


def verdict_counts(differences: np.ndarray, margin: float) -> dict[str, int]:
    """How many simulated runs (rows of differences [runs, seeds]) give each verdict."""
    verdicts = [margin_verdict(row, margin).verdict for row in differences]
    return {
        verdict: verdicts.count(verdict) for verdict in ("supported", "refuted", "inconclusive")
    }


def verdict_rates(differences: np.ndarray, margin: float) -> dict[str, float]:
    return {verdict: count / len(differences)
            for verdict, count in verdict_counts(differences, margin).items()}  # fmt: skip


def test_margin_verdict_is_the_t_interval_of_the_mean_against_the_margin():
    differences = np.array([0.3, 0.1, 0.25, 0.4, 0.2])
    low, high = scipy.stats.t.interval(0.9, 4, loc=differences.mean(),
                                       scale=scipy.stats.sem(differences))  # fmt: skip
    result = margin_verdict(differences, margin=0.05, confidence=0.9, name="embedding")
    assert (result.mean, result.seeds) == (pytest.approx(0.25), 5)
    assert (result.low, result.high) == (pytest.approx(low), pytest.approx(high))
    assert result.verdict == "supported"
    assert margin_verdict(differences, margin=0.5, confidence=0.9).verdict == "refuted"
    assert margin_verdict(differences, margin=0.2, confidence=0.9).verdict == "inconclusive"
    assert "network - embedding 0.25" in result.describe()


@pytest.mark.parametrize(("claim", "null", "margin", "seeds"), registry_margins())
def test_a_true_tie_is_refuted_on_the_registry_seeds(claim, null, margin, seeds):
    """Network and null the same in truth (mean difference 0), seed-to-seed spread as large as
    the margin: refuted in nearly every run, never supported."""
    rng = np.random.default_rng(0)
    rates = verdict_rates(rng.normal(0.0, margin, (SIMULATIONS // 8, seeds)), margin)
    assert rates["supported"] == 0.0
    assert rates["refuted"] >= 0.95


@pytest.mark.parametrize(("claim", "null", "margin", "seeds"), registry_margins())
def test_a_true_effect_of_the_registry_size_is_supported(claim, null, margin, seeds):
    """A true mean difference of twice the registry's margin, same spread: supported."""
    rng = np.random.default_rng(1)
    rates = verdict_rates(rng.normal(2 * margin, margin, (SIMULATIONS // 8, seeds)), margin)
    assert rates["refuted"] == 0.0
    assert rates["supported"] >= 0.95


def test_a_tie_is_inconclusive_until_there_are_enough_seeds():
    rng = np.random.default_rng(2)
    ties = rng.normal(0.0, 1.0, (SIMULATIONS // 4, 3))
    assert verdict_rates(ties, margin=0.5)["refuted"] < 0.2
    assert margin_verdict([0.4], margin=0.1).verdict == "inconclusive"  # one seed decides nothing


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, shape: rng.normal(0.0, 1.0, shape),
        lambda rng, shape: rng.standard_t(3, shape),
        lambda rng, shape: rng.laplace(0.0, 1.0, shape),
    ],
    ids=["normal", "student-t3", "laplace"],
)
@pytest.mark.parametrize("seeds", [5, 20])
def test_false_support_stays_at_the_nominal_rate(draw, seeds):
    """The worst case of 'no effect of interest': the true mean difference exactly at the margin.
    The rate of supported verdicts is consistent with at most 2.5% (its Wilson interval reaches
    below it); at a tie it is far below (the interval lies under 2.5%)."""
    rng = np.random.default_rng(3)
    margin = 0.5
    at_margin = margin + draw(rng, (SIMULATIONS, seeds))
    low, _ = wilson_interval(verdict_counts(at_margin, margin)["supported"], SIMULATIONS)
    assert low <= NOMINAL_FALSE_SUPPORT
    tie = draw(rng, (SIMULATIONS, seeds))
    _, high = wilson_interval(verdict_counts(tie, margin)["supported"], SIMULATIONS)
    assert high < NOMINAL_FALSE_SUPPORT


def test_differences_are_paired_by_seed():
    """A seed-level effect shared by the network and its null (the same model draw, the same
    inputs) cancels in the paired difference: a tie is refuted. Unpaired (the null's values of
    other seeds) the same data is inconclusive: pairing is what makes the tie decidable."""
    rng = np.random.default_rng(4)
    shared = rng.normal(0.0, 10.0, 20)  # per-seed effect common to network and null
    results = [
        {"net": level + noise, "null": level}
        for level, noise in zip(shared, rng.normal(0.0, 0.05, 20), strict=True)
    ]
    paired = paired_differences(results, {"null": ("net", "null")})["null"]
    np.testing.assert_allclose(paired, [r["net"] - r["null"] for r in results])
    assert margin_verdict(paired, margin=0.2).verdict == "refuted"
    unpaired = np.array([r["net"] for r in results]) - np.roll([r["null"] for r in results], 1)
    assert margin_verdict(unpaired, margin=0.2).verdict == "inconclusive"


def test_seed_beyond_requires_every_difference_above_its_margin():
    pairs = {"a": ("net_a", "null_a"), "b": ("net_b", "null_b")}
    margins = {"margin_a": 0.1, "margin_b": 0.2}
    result = {"net_a": 1.0, "null_a": 0.8, "net_b": 0.5, "null_b": 0.35}
    assert not seed_beyond(result, pairs, margins)  # b: 0.15 < 0.2
    assert seed_beyond(result | {"null_b": 0.25}, pairs, margins)


@pytest.mark.parametrize(
    ("parts", "verdict"),
    [
        (["supported", "supported"], "supported"),
        (["supported", "inconclusive"], "inconclusive"),
        (["supported", "refuted"], "refuted"),
        (["inconclusive", "refuted"], "refuted"),
        (["inconclusive"], "inconclusive"),
    ],
)
def test_combined_verdict_is_the_conjunction(parts, verdict):
    assert combined_verdict(parts) == verdict


@pytest.mark.parametrize(
    ("differences", "margin", "message"),
    [
        ([], 0.1, "non-empty"),
        ([[0.1]], 0.1, "1-D"),
        ([0.1, np.nan], 0.1, "finite"),
        ([0.1, 0.2], -1.0, "margin"),
    ],
)
def test_margin_verdict_rejects_bad_input(differences, margin, message):
    with pytest.raises(ValueError, match=message):
        margin_verdict(differences, margin)


def test_combined_verdict_rejects_unknown_verdicts():
    with pytest.raises(ValueError, match="verdicts"):
        combined_verdict(["supported", "maybe"])


def conjunction_refutations(parts: int, runs: int, corrected: bool, rng) -> int:
    """Simulated readings of `parts` comparisons, every one true at exactly its margin (the worst
    case of a true claim), 20 seeds each: how many are refuted, by `reading_verdict` (corrected)
    or by conjoining parts each refuted at the uncorrected level."""
    thresholds = {"confidence": 0.95, **{f"margin_{i}": 0.5 for i in range(parts)}}
    refuted = 0
    for _ in range(runs):
        differences = {str(i): 0.5 + rng.normal(0.0, 0.5, 20) for i in range(parts)}
        if corrected:
            verdict = reading_verdict(thresholds, differences=differences).verdict
        else:
            verdict = combined_verdict(
                [margin_verdict(values, 0.5).verdict for values in differences.values()]
            )
        refuted += verdict == "refuted"
    return refuted


@pytest.mark.parametrize("parts", [2, 4])
def test_a_reading_of_several_parts_is_falsely_refuted_at_most_at_the_stated_rate(parts):
    """Every part exactly at its margin: the reading is refuted at most (1 - confidence) / 2 of
    the time (its Wilson interval reaches down to 2.5%) however many parts it has, because each
    part is refuted at the Bonferroni-widened level; conjoined uncorrected, the parts' false
    refutations add up well beyond it."""
    rng = np.random.default_rng(5)
    runs = 3000
    corrected = conjunction_refutations(parts, runs, corrected=True, rng=rng)
    assert wilson_interval(corrected, runs)[0] <= NOMINAL_FALSE_SUPPORT
    uncorrected = conjunction_refutations(parts, runs, corrected=False, rng=rng)
    assert wilson_interval(uncorrected, runs)[0] > NOMINAL_FALSE_SUPPORT


def test_a_part_is_refuted_on_the_widened_interval_and_supported_on_the_stated_one():
    """Between the two intervals' upper ends a part is inconclusive: refuted alone, it is not
    refuted as one of three parts; its support does not change with the number of parts."""
    differences = np.array([0.30, 0.36, 0.33, 0.38, 0.31, 0.35, 0.34, 0.32])
    alone, of_three = (margin_verdict(differences, 0.362, parts=parts) for parts in (1, 3))
    assert (alone.verdict, of_three.verdict) == ("refuted", "inconclusive")
    assert (alone.low, alone.high) == (of_three.low, of_three.high)
    supported = [margin_verdict(differences, 0.29, parts=parts).verdict for parts in (1, 3)]
    assert supported == ["supported", "supported"]


def test_reading_verdict_uses_the_claims_confidence_for_every_part():
    """A confidence other than the default reaches the Wilson part too: 14 of 20 seeds against
    a required half is supported at 90% (Wilson low 0.51) and inconclusive at 95% (0.48)."""
    holds = [True] * 14 + [False] * 6
    at = {level: reading_verdict({"required_rate": 0.5, "confidence": level}, holds=holds)
          for level in (0.9, 0.95)}  # fmt: skip
    assert (at[0.9].verdict, at[0.95].verdict) == ("supported", "inconclusive")
    assert at[0.9].held.rate_low == pytest.approx(wilson_interval(14, 20, 0.9)[0])
