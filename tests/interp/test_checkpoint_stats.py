"""A checkpoint against its random baselines: Crawford and Howell's single-case t, its
calibration, the rank p-value beside it, and the verdict words with BH across claims."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from mechclaims.interp.checkpoints import checkpoint_verdicts, family_adjusted, single_case_test
from mechclaims.interp.claims.checkpoint import baseline_seeds, not_applicable, statistic
from mechclaims.interp.sources import ModelSource
from mechclaims.interp.stats import wilson_interval
from mechclaims.model.config import TransformerConfig


def test_the_single_case_t_is_crawford_and_howells():
    baselines = np.array([1.0, 2.0, 4.0, 3.0, 5.0])
    case = single_case_test(9.0, baselines)
    expected_t = (9.0 - 3.0) / (baselines.std(ddof=1) * np.sqrt(6 / 5))
    assert case.t == pytest.approx(expected_t)
    assert case.p_value == pytest.approx(2 * scipy.stats.t.sf(expected_t, 4))
    assert (case.direction, case.percentile, case.rank_p) == ("higher", 1.0, 1 / 6)


def test_rank_alone_could_never_say_unlike_with_twenty_baselines():
    """The reason for the t: with N = 20 the rank p-value (b + 1) / (N + 1) is at best 1/21
    (2/21 as a doubled one-sided one), which BH over a dozen tests never brings under 0.05;
    the t does."""
    baselines = np.random.default_rng(0).normal(0.0, 1.0, 20)
    case = single_case_test(8.0, baselines)
    assert case.rank_p == pytest.approx(1 / 21)
    assert case.p_value < 1e-4


@pytest.mark.parametrize("n", [5, 20])
def test_the_single_case_t_is_calibrated_when_the_checkpoint_is_one_more_draw(n):
    """x and its baselines from one normal: P(p < 0.05) is 0.05 (the t is exact there); its
    Wilson interval over 4,000 simulated checkpoints covers 0.05."""
    rng = np.random.default_rng(1)
    draws = rng.normal(0.0, 1.0, (4000, n + 1))
    rejected = sum(single_case_test(row[0], row[1:]).p_value < 0.05 for row in draws)
    low, high = wilson_interval(rejected, len(draws))
    assert low <= 0.05 <= high


def test_verdicts_adjust_over_the_readings_and_use_the_central_band():
    rng = np.random.default_rng(2)
    baselines = rng.normal(0.0, 1.0, (20, 3))  # [N, readings]
    values = [10.0, baselines[:, 1].mean(), float(np.quantile(baselines[:, 2], 0.97))]
    cases = [single_case_test(value, baselines[:, r]) for r, value in enumerate(values)]
    verdicts = checkpoint_verdicts(cases, level=0.05)
    assert [verdict for verdict, _, _ in verdicts] == [
        "unlike-random", "like-random", "inconclusive"]  # fmt: skip
    assert verdicts[0][1] == pytest.approx(1 / 21)  # beyond every baseline's smallest p
    assert verdicts[0][2] == pytest.approx(cases[0].p_value * 3)  # BH q, the smallest of 3
    assert checkpoint_verdicts([], 0.05) == []


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, shape: rng.lognormal(0.0, 1.0, shape),  # skewed, heavy-tailed
        lambda rng, shape: np.minimum(rng.poisson(8.0, shape), 9),  # discrete, piled at the top
        lambda rng, shape: rng.standard_t(2, shape),
    ],
    ids=["lognormal", "discrete", "student-t2"],
)
def test_a_random_checkpoint_is_unlike_random_at_most_one_time_in_n_plus_one(draw):
    """The checkpoint one more draw of the baselines' distribution, whatever it is: unlike-random
    on any of 4 readings in at most 1/21 of 1,000 simulated checkpoints (N = 20; its Wilson
    interval reaches below 1/21). The t's own p-values, taken at their word, do not manage it."""
    rng = np.random.default_rng(3)
    flagged, naive = 0, 0
    for _ in range(1000):
        members = draw(rng, (21, 4)).astype(float)  # row 0: the checkpoint
        cases = [single_case_test(members[0, r], members[1:, r]) for r in range(4)]
        flagged += any(v == "unlike-random" for v, _, _ in checkpoint_verdicts(cases, 0.05))
        naive += min(case.p_value for case in cases) * 4 <= 0.05  # Bonferroni on the t's p
    assert wilson_interval(flagged, 1000)[0] <= 1 / 21
    if draw(np.random.default_rng(0), 1).dtype.kind == "f":
        assert naive > flagged


def test_constant_baselines_and_bad_input():
    assert single_case_test(1.0, [1.0, 1.0, 1.0]).p_value == 1.0
    assert single_case_test(2.0, [1.0, 1.0, 1.0]).p_value == 1.0  # no scale, no evidence
    assert single_case_test(2.0, [1.0, 1.0, 1.0]).rank_p == 0.25  # beside it, the rank
    with pytest.raises(ValueError, match="at least 3"):
        single_case_test(1.0, [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        single_case_test(np.nan, [1.0, 2.0, 3.0])


def test_a_primary_statistic_is_the_statistic_minus_its_null():
    measured = {"net": 2.5, "null": 0.5}
    assert statistic(measured, {"statistic": "net", "why": ""}) == 2.5
    assert statistic(measured, {"statistic": "net", "minus": "null", "why": ""}) == 2.0
    assert statistic({"result": measured}, {"statistic": "null", "why": ""}) == 0.5


def test_a_checkpoints_own_initialization_is_not_its_baseline_and_claim_6_needs_one():
    cfg = TransformerConfig.preset("tiny-mha")
    known = ModelSource(cfg, tuple(range(10)), checkpoint="a.npz", init_seed=3)
    unknown = ModelSource(cfg, tuple(range(10)), checkpoint="b.npz")
    assert baseline_seeds(known, range(5)) == [0, 1, 2, 4]
    assert baseline_seeds(unknown, range(5)) == [0, 1, 2, 3, 4]
    entry = {"primary": {"controlled": {"statistic": "r", "why": "w"},
                         "seed-protocol": {"not_applicable": "trains itself"}}}  # fmt: skip
    assert not_applicable("persistence", "controlled", entry, known) is None
    assert "own initialization" in not_applicable("persistence", "controlled", entry, unknown)
    assert not_applicable("persistence", "seed-protocol", entry, known) == "trains itself"
    assert "names no primary" in not_applicable("other", "controlled", {}, known)


def test_the_adjustment_tests_each_member_against_the_others_as_the_single_case_t_does():
    """family_adjusted's leave-one-out p-values (closed form) equal single_case_test's, one by
    one, and a reading's adjusted p is (1 + the baselines whose smallest p is at most the
    checkpoint's p there) / 21."""
    rng = np.random.default_rng(4)
    members = rng.lognormal(0.0, 1.0, (21, 3))
    scalar = np.array([[single_case_test(members[i, r], np.delete(members[:, r], i)).p_value
                        for r in range(3)] for i in range(21)])  # fmt: skip
    adjusted = family_adjusted(members[0], members[1:])
    smallest = scalar[1:].min(axis=1)
    expected = [(1 + np.sum(smallest <= scalar[0, r])) / 21 for r in range(3)]
    np.testing.assert_allclose(adjusted, expected)
