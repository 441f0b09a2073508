"""Statistics and verdicts called at a level other than their default, against scipy.

Tests elsewhere call most of these at 0.95 (or a level of 0.05), where a level hard-coded in
place of the argument goes unnoticed. Here each is called at another level (0.8, 0.99, ...) and
held against an independent computation at that level, on both sides of a verdict (support and
refutation).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from mechclaims.interp import stats
from mechclaims.interp.checkpoints import checkpoint_verdicts, single_case_test
from mechclaims.interp.detectors import glass_delta_interval
from mechclaims.interp.verdicts import (
    cross_seed_verdict,
    margin_verdict,
    reading_verdict,
    refute_level,
)

# Paired differences whose t-interval is [0.3229, 0.3496] at 80%, [0.3139, 0.3586] at 95%.
DIFFERENCES = np.array([0.30, 0.36, 0.33, 0.38, 0.31, 0.35, 0.34, 0.32])


def _t_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    return scipy.stats.t.interval(
        confidence, len(values) - 1, loc=values.mean(), scale=scipy.stats.sem(values)
    )


def test_bootstrap_interval_at_80_percent_is_the_t_interval_at_80_percent():
    samples = np.random.default_rng(30).normal(size=400)
    estimate = stats.bootstrap_interval(samples, rng=np.random.default_rng(31), confidence=0.8)
    expected = _t_interval(samples, 0.8)
    half_width = (expected[1] - expected[0]) / 2
    np.testing.assert_allclose([estimate.low, estimate.high], expected, atol=0.1 * half_width)


@pytest.mark.parametrize("confidence", [0.8, 0.99])
def test_glass_delta_interval_at_other_levels_agrees_with_the_bootstrap(confidence):
    rng = np.random.default_rng(32)
    treated, control = rng.normal(0.8, 1.5, (300, 2)), rng.normal(0.0, 1.0, (900, 2))
    analytic = glass_delta_interval(treated, control, confidence)
    boot = stats.bootstrap_interval((treated, control), stats.glass_delta, rng=rng,
                                    n_resamples=4000, method="percentile",
                                    confidence=confidence)  # fmt: skip
    width = boot.high - boot.low
    np.testing.assert_allclose(analytic.high - analytic.low, width, rtol=0.15)
    assert np.all(np.abs(analytic.low - boot.low) < 0.1 * width)


@pytest.mark.parametrize("confidence", [0.8, 0.99])
def test_wilson_and_fisher_z_intervals_at_other_levels_match_scipy(confidence):
    low, high = stats.wilson_interval([3, 17], [20, 40], confidence)
    for i, (k, n) in enumerate([(3, 20), (17, 40)]):
        expected = scipy.stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
        np.testing.assert_allclose([low[i], high[i]], expected, rtol=1e-12)
    rng = np.random.default_rng(33)
    x = rng.normal(size=30)
    y = 0.5 * x + rng.normal(size=30)
    expected = scipy.stats.pearsonr(x, y).confidence_interval(confidence_level=confidence)
    r = stats.cross_correlation(x[:, None], y[:, None])[0, 0]
    np.testing.assert_allclose(stats.fisher_z_interval(r, 30, confidence), expected, rtol=1e-9)


def test_margin_verdict_at_80_percent_supports_and_refutes_on_the_80_percent_interval():
    """Margins between the 80% and the 95% interval's ends: decided at 80%, not at 95%."""
    low, high = _t_interval(DIFFERENCES, 0.8)
    supported = margin_verdict(DIFFERENCES, margin=0.32, confidence=0.8)
    assert (supported.low, supported.high) == (pytest.approx(low), pytest.approx(high))
    assert supported.verdict == "supported"
    assert margin_verdict(DIFFERENCES, margin=0.352, confidence=0.8).verdict == "refuted"
    for margin in (0.32, 0.352):
        assert margin_verdict(DIFFERENCES, margin=margin).verdict == "inconclusive"


def test_cross_seed_verdict_at_80_percent_refutes_on_the_80_percent_wilson_bound():
    """7 of 20 against a required half: the Wilson upper bound is 0.493 at 80% (refuted), 0.533
    at 90%, 0.567 at 95%. One of two parts, it is refuted at the widened 90%: inconclusive."""
    holds = [True] * 7 + [False] * 13
    alone = cross_seed_verdict(holds, 0.5, confidence=0.8)
    expected = scipy.stats.binomtest(7, 20).proportion_ci(0.8, method="wilson")
    assert (alone.rate_low, alone.rate_high) == (pytest.approx(expected.low),
                                                 pytest.approx(expected.high))  # fmt: skip
    assert alone.verdict == "refuted"
    assert cross_seed_verdict(holds, 0.5).verdict == "inconclusive"
    assert cross_seed_verdict(holds, 0.5, confidence=0.8, parts=2).verdict == "inconclusive"
    assert refute_level(0.8, 2) == pytest.approx(0.9)
    assert "(80% CI 0.23-0.49;" in alone.describe(0.5)


def test_reading_verdict_decides_each_part_at_the_claims_confidence():
    """At confidence 0.8 with two parts (holds and one null), each part is refuted at the
    widened 90% and supported at 80%: the margin part's interval is the 80% t-interval, and a
    margin between its 90% and 95% upper ends refutes."""
    thresholds = {"confidence": 0.8, "required_rate": 0.5, "margin_null": 0.32}
    decided = reading_verdict(thresholds, holds=[True] * 20, differences={"null": DIFFERENCES})
    (part,) = decided.beyond
    assert (part.low, part.high) == tuple(pytest.approx(end)
                                          for end in _t_interval(DIFFERENCES, 0.8))  # fmt: skip
    assert decided.verdict == "supported"
    refuting = {**thresholds, "margin_null": 0.3565}  # 90% upper 0.3541, 95% upper 0.3586
    assert reading_verdict(refuting, holds=[True] * 20,
                           differences={"null": DIFFERENCES}).verdict == "refuted"  # fmt: skip
    at_default = {**refuting, "confidence": 0.95}
    assert reading_verdict(at_default, holds=[True] * 20,
                           differences={"null": DIFFERENCES}).verdict == "inconclusive"  # fmt: skip


def test_checkpoint_verdicts_at_levels_other_than_0_05():
    """Baselines 0..19 and a checkpoint at 18.5: three baselines' smallest p-values are at most
    its own, so its adjusted p is 4/21 = 0.19, unlike random at level 0.2 and not at 0.05; far
    beyond them, 1/21 = 0.048, unlike random at 0.05 and not at 0.04."""
    baselines = np.arange(20.0)
    for value, adjusted, unlike_at, not_at in (
        (18.5, 4 / 21, 0.2, 0.05),
        (50.0, 1 / 21, 0.05, 0.04),
    ):
        case = single_case_test(value, baselines)
        ((verdict, p, _),) = checkpoint_verdicts([case], level=unlike_at)
        assert (verdict, p) == ("unlike-random", pytest.approx(adjusted))
        assert checkpoint_verdicts([case], level=not_at)[0][0] != "unlike-random"
