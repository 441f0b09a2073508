"""Tests of interp.stats: hand-computed values, cross-checks against scipy and numpy,
Hypothesis properties, and the calibration of the pipeline permutation p-values -> BH."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mechclaims.interp import stats

# Values on a grid of eighths: exactly representable and far apart, so rounding never makes a
# constant unit look varied or merges distinct values under the affine maps below.
GRID = st.integers(-400, 400).map(lambda i: i / 8)
POSITIVE_SCALES = st.floats(0.1, 10.0)
SHIFTS = st.floats(-100.0, 100.0)
SEEDS = st.integers(0, 2**32 - 1)
P_VALUES = st.floats(0.0, 1.0)


@st.composite
def grouped_values(draw, max_n=16, max_units=4, max_groups=4, min_per_group=1):
    """(values [n, units] on GRID, labels [n] with k >= 2 groups of at least min_per_group
    samples, n > k)."""
    k = draw(st.integers(2, max_groups))
    n = draw(st.integers(max(k + 1, min_per_group * k), max_n))
    labels = np.array(draw(st.permutations(list(np.arange(n) % k))))
    units = draw(st.integers(1, max_units))
    values = draw(hnp.arrays(np.float64, (n, units), elements=GRID))
    return values, labels


@st.composite
def feature_matrices(draw, min_n=2, max_n=12, max_units=5):
    n = draw(st.integers(min_n, max_n))
    units = draw(st.integers(1, max_units))
    return draw(hnp.arrays(np.float64, (n, units), elements=GRID))


def _non_constant(features):
    return np.ptp(features, axis=0) > 0


# ---------------------------------------------------------------------------------------------
# Permutation p-values


def test_permutation_p_value_counts_null_draws_at_least_observed():
    observed = np.array([2.0, 0.5])
    null = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    # unit 0: 2 and 3 reach 2 -> (2 + 1) / 4; unit 1: only 1 reaches 0.5 -> (1 + 1) / 4
    np.testing.assert_array_equal(stats.permutation_p_value(observed, null), [0.75, 0.5])


def test_permutation_p_value_counts_a_rounding_difference_as_a_tie():
    observed = (0.1 + 0.2) + 0.3
    null = np.array([(0.3 + 0.2) + 0.1])  # the same sum in another order: 1 ulp smaller
    assert null[0] < observed
    assert stats.permutation_p_value(observed, null) == 1.0


@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 4)), elements=GRID),
    hnp.arrays(np.float64, 4, elements=GRID),
)
def test_permutation_p_value_is_a_valid_rank(null, observed):
    m = len(null)
    observed = observed[: null.shape[1]]
    p = stats.permutation_p_value(observed, null)
    assert np.all((p >= 1 / (m + 1)) & (p <= 1))
    np.testing.assert_allclose(p * (m + 1), np.round(p * (m + 1)))  # (b + 1) is a count
    np.testing.assert_array_equal(stats.permutation_p_value(null.min(axis=0), null), 1.0)
    np.testing.assert_array_equal(
        stats.permutation_p_value(null.max(axis=0) + 1, null), 1 / (m + 1)
    )


@given(
    hnp.arrays(np.float64, st.integers(1, 30), elements=GRID),
    GRID,
    st.floats(0.0, 50.0),
)
def test_permutation_p_value_is_monotone_in_observed(null, observed, increase):
    lower = stats.permutation_p_value(observed, null)
    assert stats.permutation_p_value(observed + increase, null) <= lower


# ---------------------------------------------------------------------------------------------
# Benjamini–Hochberg


def test_bh_on_a_hand_computed_example():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    # sorted p * m / rank = 0.04, 0.06, 0.0533, 0.2; running minimum from the right
    np.testing.assert_allclose(stats.bh_adjust(p), [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    np.testing.assert_array_equal(stats.benjamini_hochberg(p, 0.05), [True, False, False, False])
    np.testing.assert_array_equal(stats.benjamini_hochberg(p, 0.06), [True, True, True, False])


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=6), elements=P_VALUES))
def test_bh_adjust_matches_scipy_false_discovery_control(p):
    expected = scipy.stats.false_discovery_control(p.ravel()).reshape(p.shape)
    np.testing.assert_allclose(stats.bh_adjust(p), expected, rtol=1e-12, atol=1e-15)


@given(
    hnp.arrays(np.float64, st.integers(1, 40), elements=P_VALUES),
    st.floats(0.001, 0.999),
)
def test_bh_matches_the_step_up_definition(p, alpha):
    # Reject the k smallest p-values, k = max{i : p_(i) <= i alpha / m}.
    m = len(p)
    sorted_p = np.sort(p)
    thresholds = np.arange(1, m + 1) * alpha / m
    assume(np.all(np.abs(sorted_p - thresholds) > 1e-12))  # rounding decides exact ties
    below = np.nonzero(sorted_p <= thresholds)[0]
    expected = p <= sorted_p[below[-1]] if below.size else np.zeros(m, dtype=bool)
    np.testing.assert_array_equal(stats.benjamini_hochberg(p, alpha), expected)


@given(
    hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=6), elements=P_VALUES),
    st.floats(0.001, 0.998),
    st.floats(0.0, 0.5),
)
def test_bh_discoveries_grow_with_alpha(p, alpha, increase):
    smaller = stats.benjamini_hochberg(p, alpha)
    larger = stats.benjamini_hochberg(p, min(alpha + increase, 0.999))
    assert smaller.shape == p.shape
    assert np.all(larger[smaller])


@given(
    hnp.arrays(np.float64, st.integers(1, 40), elements=P_VALUES),
    st.floats(0.001, 0.999),
    st.randoms(use_true_random=False),
)
def test_bh_is_invariant_to_the_order_of_the_p_values(p, alpha, random):
    order = np.array(random.sample(range(len(p)), len(p)))
    np.testing.assert_array_equal(
        stats.benjamini_hochberg(p[order], alpha), stats.benjamini_hochberg(p, alpha)[order]
    )
    q = stats.bh_adjust(p)
    assert np.all((q >= p) & (q <= 1))


def _discoveries(values, labels, seed, q, n_permutations=999):
    rng = np.random.default_rng(seed)
    test = stats.permutation_test_eta_squared(
        values, labels, rng=rng, n_permutations=n_permutations
    )
    return stats.benjamini_hochberg(test.p_values, q)


def test_permutation_p_values_then_bh_keep_false_discoveries_at_the_nominal_rate():
    # Under the complete null every discovery is false, so the FDR is the probability of any
    # discovery. Its estimate over independent draws must not be significantly above q.
    q, draws, n, units = 0.1, 200, 24, 16
    labels = np.arange(n) % 3
    any_discovery = 0
    for draw in range(draws):
        values = stats.gaussian_features(n, units, np.random.default_rng([draw, 0]))
        any_discovery += bool(np.any(_discoveries(values, labels, [draw, 1], q)))
    assert stats.wilson_interval(any_discovery, draws, confidence=0.99).low <= q


def test_permutation_p_values_then_bh_find_planted_effects():
    q, draws, n, units, planted = 0.1, 50, 24, 20, 5
    labels = np.arange(n) % 3
    power, false_discovery_proportion = [], []
    for draw in range(draws):
        values = stats.gaussian_features(n, units, np.random.default_rng([draw, 2]))
        values[labels == 0, :planted] += 2.0  # group 0 shifted by 2 SD in the first 5 units
        found = _discoveries(values, labels, [draw, 3], q)
        power.append(found[:planted].mean())
        false_discovery_proportion.append(found[planted:].sum() / max(found.sum(), 1))
    assert np.mean(power) >= 0.8
    above_q = scipy.stats.ttest_1samp(false_discovery_proportion, q, alternative="greater")
    assert above_q.pvalue > 0.01


# ---------------------------------------------------------------------------------------------
# Intervals


def test_wilson_interval_matches_scipy_binomtest():
    n = np.array([1, 2, 5, 17, 100])
    k = np.array([0, 1, 3, 17, 42])
    for confidence in (0.9, 0.95, 0.99):
        low, high = stats.wilson_interval(k, n, confidence)
        for i in range(len(n)):
            expected = scipy.stats.binomtest(int(k[i]), int(n[i])).proportion_ci(
                confidence, method="wilson"
            )
            np.testing.assert_allclose([low[i], high[i]], expected, rtol=1e-12, atol=1e-15)


@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_contains_the_estimate_within_zero_and_one(k_and_n):
    k, n = k_and_n
    low, high = stats.wilson_interval(k, n)
    assert 0 <= low <= k / n <= high <= 1
    assert (low == 0) == (k == 0)
    assert (high == 1) == (k == n)
    wide_low, wide_high = stats.wilson_interval(k, n, confidence=0.999)
    assert wide_low <= low
    assert high <= wide_high


def test_bootstrap_interval_of_a_mean_is_close_to_the_t_interval():
    rng = np.random.default_rng(4)
    samples = rng.normal(size=400)
    estimate = stats.bootstrap_interval(samples, rng=rng)
    expected = scipy.stats.t.interval(0.95, 399, loc=samples.mean(), scale=scipy.stats.sem(samples))
    half_width = (expected[1] - expected[0]) / 2
    assert estimate.value == pytest.approx(samples.mean())
    np.testing.assert_allclose([estimate.low, estimate.high], expected, atol=0.1 * half_width)


def test_bootstrap_interval_per_unit_equals_each_unit_alone():
    samples = np.random.default_rng(0).normal(size=(15, 3))
    together = stats.bootstrap_interval(samples, rng=np.random.default_rng(1), n_resamples=500)
    for unit in range(3):
        alone = stats.bootstrap_interval(
            samples[:, unit], rng=np.random.default_rng(1), n_resamples=500
        )
        np.testing.assert_allclose([t[unit] for t in together], alone, rtol=1e-12)


@pytest.mark.filterwarnings("error")
def test_bootstrap_interval_of_a_constant_unit_is_a_point():
    samples = np.random.default_rng(0).normal(size=(12, 3))
    samples[:, 1] = 0.1
    value, low, high = stats.bootstrap_interval(samples, rng=np.random.default_rng(1))
    assert value[1] == low[1] == high[1] == pytest.approx(0.1)
    assert np.all(np.delete(low < high, 1))


def test_bootstrap_interval_of_an_effect_size_from_two_groups():
    rng = np.random.default_rng(5)
    treated, control = rng.normal(1.0, 1.0, size=(40, 2)), rng.normal(0.0, 1.0, size=(30, 2))
    value, low, high = stats.bootstrap_interval(
        (treated, control), stats.cohens_d, rng=rng, n_resamples=2000
    )
    np.testing.assert_allclose(value, stats.cohens_d(treated, control))
    assert np.all((low < value) & (value < high))
    assert np.all(low > 0)  # a 1 SD effect with 70 samples is clearly positive


# ---------------------------------------------------------------------------------------------
# Effect sizes


def test_effect_sizes_on_hand_computed_examples():
    assert stats.cohens_d([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(-3.0)
    # means 3 and 1; only the control's spread counts: std 1 (ddof 0) or sqrt(2) (ddof 1)
    assert stats.glass_delta([1.0, 5.0], [0.0, 2.0]) == pytest.approx(2.0)
    assert stats.glass_delta([1.0, 5.0], [0.0, 2.0], ddof=1) == pytest.approx(np.sqrt(2))


@pytest.mark.filterwarnings("error")
def test_effect_sizes_of_constant_groups_are_zero_or_infinite():
    same = stats.cohens_d(np.full(3, 0.1), np.full(4, 0.1))
    above = stats.cohens_d(np.full(3, 0.2), np.full(4, 0.1))
    below = stats.glass_delta([0.0, 0.1], np.full(4, 0.1))
    assert (same, above, below) == (0.0, np.inf, -np.inf)
    assert stats.glass_delta([0.05, 0.15], np.full(4, 0.1)) == 0.0


@given(
    st.integers(2, 10).flatmap(lambda n: hnp.arrays(np.float64, (n, 3), elements=GRID)),
    st.integers(2, 10).flatmap(lambda n: hnp.arrays(np.float64, (n, 3), elements=GRID)),
)
def test_cohens_d_equals_the_pooled_t_statistic_rescaled(treated, control):
    # d = t sqrt(1/n_t + 1/n_c) for Student's t with pooled variance.
    assume(np.all(np.ptp(treated, axis=0) > 0) and np.all(np.ptp(control, axis=0) > 0))
    t = scipy.stats.ttest_ind(treated, control, axis=0).statistic
    expected = t * np.sqrt(1 / len(treated) + 1 / len(control))
    np.testing.assert_allclose(stats.cohens_d(treated, control), expected, rtol=1e-8, atol=1e-10)


@given(grouped_values(min_per_group=2), POSITIVE_SCALES, SHIFTS)
def test_effect_sizes_are_affine_invariant_and_antisymmetric(values_and_labels, scale, shift):
    values, labels = values_and_labels
    treated, control = values[labels == 0], values[labels == 1]
    for effect in (stats.cohens_d, stats.glass_delta):
        d = effect(treated, control)
        assert not np.any(np.isnan(d))
        np.testing.assert_allclose(
            effect(scale * treated + shift, scale * control + shift), d, rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(effect(-treated, -control), -d, rtol=1e-12)
        np.testing.assert_allclose(effect(treated.T, control.T, axis=1), d, rtol=1e-12)
    np.testing.assert_allclose(
        stats.cohens_d(control, treated), -stats.cohens_d(treated, control), rtol=1e-12
    )


# ---------------------------------------------------------------------------------------------
# Eta² and one-way ANOVA


def test_eta_squared_on_a_hand_computed_example():
    # mean 2.5, SS_total = 5; group means 1.5 and 3.5, SS_between = 4 * 1² = 4
    assert stats.eta_squared([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 1]) == pytest.approx(0.8)


@pytest.mark.parametrize("seed", range(4))
def test_eta_squared_and_anova_match_scipy_f_oneway(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(25, 6)) + rng.normal(size=(1, 6))
    labels = rng.permutation(np.arange(25) % 4)
    expected = scipy.stats.f_oneway(*(values[labels == g] for g in range(4)), axis=0)
    f, p = stats.one_way_anova(values, labels)
    np.testing.assert_allclose(f, expected.statistic, rtol=1e-10)
    np.testing.assert_allclose(p, expected.pvalue, rtol=1e-8)
    k, n = 4, 25  # eta² = F (k - 1) / (F (k - 1) + n - k)
    eta = stats.eta_squared(values, labels)
    np.testing.assert_allclose(eta, f * (k - 1) / (f * (k - 1) + n - k), rtol=1e-10)


@pytest.mark.filterwarnings("error")
def test_anova_of_constant_and_separated_units():
    values = np.array([[1.0, 0.1], [1.0, 0.1], [2.0, 0.1], [2.0, 0.1], [3.0, 0.1], [3.0, 0.1]])
    f, p = stats.one_way_anova(values, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(f, [np.inf, 0.0])
    np.testing.assert_array_equal(p, [0.0, 1.0])
    np.testing.assert_array_equal(stats.eta_squared(values, [0, 0, 1, 1, 2, 2]), [1.0, 0.0])


@given(grouped_values())
def test_anova_is_finite_or_infinite_never_nan(values_and_labels):
    f, p = stats.one_way_anova(*values_and_labels)
    assert not np.any(np.isnan(f) | np.isnan(p))
    assert np.all((f >= 0) & (p >= 0) & (p <= 1))


@given(grouped_values(), POSITIVE_SCALES, SHIFTS)
def test_eta_squared_is_a_share_invariant_to_affine_maps(values_and_labels, scale, shift):
    values, labels = values_and_labels
    eta = stats.eta_squared(values, labels)
    assert np.all((eta >= 0) & (eta <= 1))
    np.testing.assert_array_equal(eta[np.ptp(values, axis=0) == 0], 0.0)
    np.testing.assert_allclose(
        stats.eta_squared(scale * values + shift, labels), eta, rtol=1e-9, atol=1e-12
    )


@given(grouped_values(), st.randoms(use_true_random=False))
def test_eta_squared_ignores_group_names_and_sample_order(values_and_labels, random):
    values, labels = values_and_labels
    eta = stats.eta_squared(values, labels)
    renaming = random.sample(range(10), 10)
    renamed = np.array([f"group {renaming[g]}" for g in labels])
    np.testing.assert_allclose(stats.eta_squared(values, renamed), eta, rtol=1e-9, atol=1e-12)
    order = np.array(random.sample(range(len(labels)), len(labels)))
    np.testing.assert_allclose(
        stats.eta_squared(values[order], labels[order]), eta, rtol=1e-9, atol=1e-12
    )


@given(grouped_values(max_units=1), st.data())
def test_eta_squared_is_one_when_values_are_distinct_group_means(values_and_labels, data):
    _, labels = values_and_labels
    k = int(labels.max()) + 1
    means = np.array(data.draw(st.lists(GRID, min_size=k, max_size=k, unique=True)))
    assert stats.eta_squared(means[labels], labels) == pytest.approx(1.0, abs=1e-12)


def test_eta_squared_per_unit_equals_each_unit_alone():
    rng = np.random.default_rng(2)
    values, labels = rng.normal(size=(20, 2, 3)), np.arange(20) % 3
    eta = stats.eta_squared(values, labels)
    assert eta.shape == (2, 3)
    for i, j in np.ndindex(2, 3):
        assert eta[i, j] == pytest.approx(stats.eta_squared(values[:, i, j], labels), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# The label-permutation null of eta²


@pytest.mark.parametrize("strata", [None, np.arange(18) // 6])
def test_permutation_null_of_eta_squared_equals_eta_squared_of_permuted_labels(strata):
    rng = np.random.default_rng(3)
    values, labels = rng.normal(size=(18, 4)), rng.permutation(np.arange(18) % 3)
    test = stats.permutation_test_eta_squared(
        values, labels, rng=np.random.default_rng(7), n_permutations=50, strata=strata
    )
    permuted = stats.permute_labels(labels, np.random.default_rng(7), 50, strata)
    expected_null = np.array([stats.eta_squared(values, labels_i) for labels_i in permuted])
    np.testing.assert_allclose(test.null, expected_null, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(test.observed, stats.eta_squared(values, labels), rtol=1e-12)
    np.testing.assert_array_equal(
        test.p_values, stats.permutation_p_value(test.observed, test.null)
    )


@pytest.mark.parametrize("strata", [None, np.arange(12) % 3])
def test_permutation_null_of_eta_squared_does_not_depend_on_chunking(monkeypatch, strata):
    values, labels = np.random.default_rng(4).normal(size=(12, 5)), np.arange(12) % 2
    whole = stats.permutation_test_eta_squared(
        values, labels, rng=np.random.default_rng(8), n_permutations=99, strata=strata
    )
    monkeypatch.setattr(stats, "_MAX_CHUNK_ELEMENTS", 100)  # chunks of 2 permutations
    chunked = stats.permutation_test_eta_squared(
        values, labels, rng=np.random.default_rng(8), n_permutations=99, strata=strata
    )
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.filterwarnings("error")
def test_permutation_test_of_eta_squared_on_constant_and_strong_units():
    labels = np.arange(30) % 3
    values = np.random.default_rng(5).normal(size=(30, 3))
    values[:, 0] = 0.1  # constant
    values[:, 1] += 10.0 * labels  # groups far apart
    test = stats.permutation_test_eta_squared(
        values, labels, rng=np.random.default_rng(9), n_permutations=199
    )
    assert test.null.shape == (199, 3)
    assert test.observed[0] == 0.0
    assert test.p_values[0] == 1.0
    np.testing.assert_array_equal(test.null[:, 0], 0.0)
    assert test.p_values[1] == 1 / 200


def test_permutation_within_strata_keeps_a_confounder_out_of_the_null():
    # Values depend on position only; tokens follow positions 70% of the time. Permuting
    # tokens freely credits the position effect to tokens; permuting them within positions
    # keeps every (token, position) count, so the null equals the observation exactly.
    rng = np.random.default_rng(17)
    positions = np.tile(np.arange(6), 40)  # [n]
    tokens = np.where(rng.random(240) < 0.7, positions, rng.integers(0, 6, 240))
    values = positions[:, None] * np.array([1.0, -2.0])  # [n, 2]
    free = stats.permutation_test_eta_squared(
        values, tokens, rng=np.random.default_rng(18), n_permutations=99
    )
    within = stats.permutation_test_eta_squared(
        values, tokens, rng=np.random.default_rng(18), n_permutations=99, strata=positions
    )
    np.testing.assert_array_equal(free.p_values, 1 / 100)
    np.testing.assert_array_equal(within.p_values, 1.0)


# ---------------------------------------------------------------------------------------------
# Correlations


@given(feature_matrices())
def test_correlation_matrix_equals_numpy_corrcoef(features):
    r = stats.correlation_matrix(features)
    varied = _non_constant(features)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.atleast_2d(np.corrcoef(features, rowvar=False))
    np.testing.assert_allclose(
        r[np.ix_(varied, varied)], expected[np.ix_(varied, varied)], atol=1e-10
    )
    np.testing.assert_array_equal(r[~varied], 0.0)
    np.testing.assert_array_equal(r[:, ~varied], 0.0)
    np.testing.assert_array_equal(np.diag(r)[varied], 1.0)
    np.testing.assert_array_equal(r, r.T)


@given(
    feature_matrices(max_units=4),
    hnp.arrays(np.float64, 4, elements=st.sampled_from([-4.0, -0.5, 0.25, 3.0])),
    hnp.arrays(np.float64, 4, elements=SHIFTS),
)
def test_correlation_matrix_under_per_unit_affine_maps(features, scales, shifts):
    units = features.shape[1]
    scales, shifts = scales[:units], shifts[:units]
    r = stats.correlation_matrix(features)
    signs = np.sign(scales)
    np.testing.assert_allclose(
        stats.correlation_matrix(features * scales + shifts),
        r * np.outer(signs, signs) * (np.eye(units) == 0) + np.diag(np.diag(r)),
        atol=1e-9,
    )


def test_correlations_match_scipy_pearsonr():
    rng = np.random.default_rng(6)
    x = rng.normal(size=20)
    y = 0.4 * x + rng.normal(size=20)
    expected = scipy.stats.pearsonr(x, y)
    r = stats.cross_correlation(x[:, None], y[:, None])[0, 0]
    assert r == pytest.approx(expected.statistic, rel=1e-12)
    assert stats.correlation_p_value(r, 20) == pytest.approx(expected.pvalue, rel=1e-9)
    low, high = stats.fisher_z_interval(r, 20, confidence=0.9)
    expected_interval = expected.confidence_interval(confidence_level=0.9)
    np.testing.assert_allclose([low, high], expected_interval, rtol=1e-9)


@given(feature_matrices(min_n=3, max_units=3), feature_matrices(min_n=3, max_units=3))
def test_cross_correlation_is_a_block_of_the_correlation_matrix(a, b):
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    whole = stats.correlation_matrix(np.hstack([a, b]))
    np.testing.assert_allclose(
        stats.cross_correlation(a, b), whole[: a.shape[1], a.shape[1] :], atol=1e-12
    )


@given(
    hnp.arrays(np.float64, st.integers(1, 10), elements=st.floats(-1.0, 1.0)),
    st.integers(4, 1000),
)
def test_correlation_p_value_and_interval_properties(r, n):
    p = stats.correlation_p_value(r, n)
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(stats.correlation_p_value(r, n + 10) <= p + 1e-12)  # more inputs, more evidence
    smaller = stats.correlation_p_value(r / 2, n)
    assert np.all(smaller >= p - 1e-12)  # weaker correlation, weaker evidence
    low, high = stats.fisher_z_interval(r, n)
    assert np.all((low >= -1) & (low <= r) & (r <= high) & (high <= 1))
    wider_low, wider_high = stats.fisher_z_interval(r, n, confidence=0.999)
    assert np.all((wider_low <= low) & (high <= wider_high))


@pytest.mark.filterwarnings("error")
def test_correlation_p_value_and_interval_at_the_extremes():
    np.testing.assert_array_equal(stats.correlation_p_value([0.0, 1.0, -1.0], 10), [1.0, 0.0, 0.0])
    low, high = stats.fisher_z_interval([1.0, -1.0], 10)
    np.testing.assert_array_equal([low, high], [[1.0, -1.0], [1.0, -1.0]])


def test_effective_sample_size_counts_distinct_inputs():
    tokens = np.array([[1, 2, 3], [3, 2, 1], [1, 2, 3], [7, 7, 7], [3, 2, 1]])
    assert stats.effective_sample_size(tokens) == 3
    assert stats.effective_sample_size(tokens[::-1]) == 3
    assert stats.effective_sample_size(np.concatenate([tokens, tokens])) == 3
    assert stats.effective_sample_size(tokens.reshape(5, 3, 1)) == 3


# ---------------------------------------------------------------------------------------------
# Null features, permutations and splits


@given(st.integers(1, 12), SEEDS)
def test_random_rotation_is_orthogonal_and_preserves_norms(d, seed):
    rng = np.random.default_rng(seed)
    rotation = stats.random_rotation(d, rng)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(d), atol=1e-12)
    assert abs(np.linalg.det(rotation)) == pytest.approx(1.0)
    features = rng.normal(size=(5, d))
    rotated = stats.rotate_units(features, rotation)
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=1), np.linalg.norm(features, axis=1))
    np.testing.assert_allclose(rotated @ rotated.T, features @ features.T, atol=1e-10)


def test_random_rotation_is_haar_distributed():
    # Under the Haar measure on O(d) the first column is uniform on the sphere, so
    # (Q[0, 0] + 1) / 2 ~ Beta((d - 1) / 2, (d - 1) / 2), and det = -1 half the time.
    d, draws = 4, 2000
    rng = np.random.default_rng(10)
    rotations = np.array([stats.random_rotation(d, rng) for _ in range(draws)])
    corner = (rotations[:, 0, 0] + 1) / 2
    assert scipy.stats.kstest(corner, scipy.stats.beta((d - 1) / 2, (d - 1) / 2).cdf).pvalue > 1e-3
    negative = int(np.sum(np.linalg.det(rotations) < 0))
    low, high = stats.wilson_interval(negative, draws, confidence=0.999)
    assert low <= 0.5 <= high


def test_gaussian_features_are_standard_normal():
    features = stats.gaussian_features(500, 4, np.random.default_rng(11))
    assert features.shape == (500, 4)
    assert scipy.stats.kstest(features.ravel(), "norm").pvalue > 1e-3


def test_permute_labels_draws_uniform_permutations():
    labels = np.array([0, 1, 2])
    permuted = stats.permute_labels(labels, np.random.default_rng(12), 6000)
    assert permuted.shape == (6000, 3)
    np.testing.assert_array_equal(np.sort(permuted, axis=1), np.tile(labels, (6000, 1)))
    _, counts = np.unique(permuted, axis=0, return_counts=True)
    assert len(counts) == 6
    assert scipy.stats.chisquare(counts).pvalue > 1e-3


def test_permute_labels_within_strata_draws_uniform_permutations_of_each_stratum():
    labels, strata = np.arange(6), np.array([1, 0, 1, 0, 1, 0])
    permuted = stats.permute_labels(labels, np.random.default_rng(16), 6000, strata)
    for stratum in (0, 1):
        members = permuted[:, strata == stratum]  # [m, 3]
        np.testing.assert_array_equal(
            np.sort(members, axis=1), np.tile(labels[strata == stratum], (6000, 1))
        )
        _, counts = np.unique(members, axis=0, return_counts=True)
        assert len(counts) == 6
        assert scipy.stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng: stats.random_rotation(5, rng),
        lambda rng: stats.gaussian_features(4, 3, rng),
        lambda rng: stats.permute_labels(np.arange(8), rng, 3),
        lambda rng: stats.discovery_split(10, 0.5, rng),
        lambda rng: stats.stratified_split(np.arange(10) % 2, 0.5, rng),
        lambda rng: stats.permutation_test_eta_squared(
            np.arange(24.0).reshape(8, 3) % 5, np.arange(8) % 2, rng=rng, n_permutations=9
        ),
        lambda rng: stats.bootstrap_interval(np.arange(9.0) % 4, rng=rng, n_resamples=50),
    ],
    ids=["rotation", "gaussian", "permute", "split", "stratified", "eta-null", "bootstrap"],
)
def test_random_functions_are_deterministic_in_the_generator(draw):
    same = [draw(np.random.default_rng(13)) for _ in range(2)]
    other = draw(np.random.default_rng(14))
    for a, b in zip(*same, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(same[0], other, strict=True))


@given(
    st.lists(st.integers(2, 8), min_size=1, max_size=6).flatmap(
        lambda sizes: st.permutations(np.repeat(np.arange(len(sizes)), sizes).tolist())
    ),
    st.floats(0.05, 0.95),
    SEEDS,
)
def test_stratified_split_puts_every_label_in_both_halves(labels, fraction, seed):
    labels = np.array(labels)
    counts = np.bincount(labels)  # every label has at least 2 samples
    discovery, holdout = stats.stratified_split(labels, fraction, np.random.default_rng(seed))
    np.testing.assert_array_equal(
        np.sort(np.concatenate([discovery, holdout])), np.arange(len(labels))
    )
    assert np.all(np.diff(discovery) > 0)
    assert np.all(np.diff(holdout) > 0)
    expected = np.clip(np.rint(fraction * counts), 1, counts - 1)
    np.testing.assert_array_equal(np.bincount(labels[discovery], minlength=len(counts)), expected)
    assert np.all(np.bincount(labels[holdout], minlength=len(counts)) >= 1)


@given(st.integers(2, 200), st.floats(0.01, 0.99), SEEDS)
def test_discovery_split_is_disjoint_and_covering(n, fraction, seed):
    discovery, holdout = stats.discovery_split(n, fraction, np.random.default_rng(seed))
    np.testing.assert_array_equal(np.sort(np.concatenate([discovery, holdout])), np.arange(n))
    assert len(discovery) == min(max(round(fraction * n), 1), n - 1)


def test_discovery_split_picks_every_sample_equally_often():
    rng = np.random.default_rng(15)
    picked = sum(
        np.isin(np.arange(10), stats.discovery_split(10, 0.3, rng).discovery) for _ in range(2000)
    )
    low, high = stats.wilson_interval(picked, 2000, confidence=0.999)
    assert np.all((low <= 0.3) & (high >= 0.3))


def test_summarize_across_seeds():
    values = np.stack([np.arange(101.0), np.full(101, 2.0)], axis=1)  # [seeds, units]
    median, low, high = stats.summarize_across_seeds(values)
    np.testing.assert_allclose(median, [50.0, 2.0])
    np.testing.assert_allclose(low, [2.5, 2.0])
    np.testing.assert_allclose(high, [97.5, 2.0])


# ---------------------------------------------------------------------------------------------
# Bad input


RNG = np.random.default_rng(0)
ROWS = np.arange(8.0).reshape(4, 2)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: stats.permutation_p_value(1.0, [[1.0]]), ValueError, "trailing shape"),
        (
            lambda: stats.permutation_p_value([np.nan], [[1.0]]),
            ValueError,
            "observed must be finite",
        ),
        (lambda: stats.permutation_p_value(1.0, []), ValueError, "at least one null draw"),
        (lambda: stats.bh_adjust([0.5, 1.5]), ValueError, r"lie in \[0, 1\]"),
        (lambda: stats.bh_adjust([]), ValueError, "empty"),
        (lambda: stats.benjamini_hochberg([0.1], 1.0), ValueError, "alpha must lie in"),
        (lambda: stats.benjamini_hochberg([0.1], 0), ValueError, "alpha must lie in"),
        (lambda: stats.benjamini_hochberg([0.1], "0.1"), TypeError, "alpha must be a number"),
        (lambda: stats.wilson_interval(5, 3), ValueError, r"successes must lie in \[0, trials\]"),
        (lambda: stats.wilson_interval(0, 0), ValueError, "trials must be at least 1"),
        (lambda: stats.wilson_interval([1, 2], [3, 4, 5]), ValueError, "do not broadcast"),
        (lambda: stats.wilson_interval(1.5, 3), ValueError, "successes must hold whole numbers"),
        (lambda: stats.wilson_interval(1, 3, 1.2), ValueError, "confidence must lie in"),
        (lambda: stats.bootstrap_interval([1.0], rng=RNG), ValueError, "at least 2 samples"),
        (lambda: stats.bootstrap_interval([1.0, 2.0], rng=0), TypeError, "numpy.random.Generator"),
        (lambda: stats.cohens_d(ROWS, np.ones((4, 3))), ValueError, "share the unit shape"),
        (lambda: stats.cohens_d([1.0], [1.0, 2.0]), ValueError, "treated needs at least 2"),
        (lambda: stats.cohens_d(["a", "b"], [1.0, 2.0]), TypeError, "treated must be a real"),
        (lambda: stats.glass_delta(ROWS, ROWS[:2], ddof=2), ValueError, "more than ddof=2"),
        (
            lambda: stats.eta_squared(ROWS, [0, 1, 0]),
            ValueError,
            r"3 entries, expected one per sample \(4\)",
        ),
        (lambda: stats.eta_squared(ROWS, [0, 0, 0, 0]), ValueError, "at least 2 groups"),
        (lambda: stats.eta_squared(ROWS, [[0, 1, 0, 1]]), ValueError, "labels must be 1-D"),
        (lambda: stats.eta_squared([np.inf, 1.0], [0, 1]), ValueError, "values must be finite"),
        (lambda: stats.one_way_anova(ROWS[:3], [0, 1, 2]), ValueError, "more samples than groups"),
        (
            lambda: stats.permutation_test_eta_squared(
                ROWS, [0, 1, 0, 1], rng=RNG, n_permutations=0
            ),
            ValueError,
            "n_permutations must be at least 1",
        ),
        (lambda: stats.correlation_matrix(np.ones(5)), ValueError, r"2-D \[n, units\]"),
        (lambda: stats.correlation_matrix(np.ones((1, 3))), ValueError, "at least 2 samples"),
        (
            lambda: stats.cross_correlation(ROWS, ROWS[:3]),
            ValueError,
            "4 samples but features_b has 3",
        ),
        (lambda: stats.correlation_p_value(1.5, 10), ValueError, r"r must lie in \[-1, 1\]"),
        (lambda: stats.correlation_p_value(0.5, 2), ValueError, "at least 3"),
        (lambda: stats.fisher_z_interval(0.5, 3), ValueError, "at least 4"),
        (lambda: stats.effective_sample_size(np.empty((0, 2))), ValueError, "at least one row"),
        (lambda: stats.effective_sample_size(["a", "b"]), TypeError, "numeric array"),
        (lambda: stats.random_rotation(0, RNG), ValueError, "d must be at least 1"),
        (lambda: stats.random_rotation(2.0, RNG), TypeError, "d must be an int"),
        (lambda: stats.rotate_units(ROWS, np.eye(3)), ValueError, "rotation has d=3"),
        (lambda: stats.rotate_units(ROWS, 2 * np.eye(2)), ValueError, "orthonormal columns"),
        (lambda: stats.rotate_units(ROWS, np.ones((2, 3))), ValueError, "with k <= d"),
        (lambda: stats.gaussian_features(0, 3, RNG), ValueError, "n must be at least 1"),
        (lambda: stats.permute_labels(ROWS, RNG, 3), ValueError, "labels must be 1-D"),
        (lambda: stats.permute_labels([0, 1], RNG, 0), ValueError, "m must be at least 1"),
        (lambda: stats.permute_labels([0, 1], RNG, 2, [0]), ValueError, "strata has 1 entries"),
        (lambda: stats.stratified_split([0, 0, 1], 0.5, RNG), ValueError, "both halves"),
        (lambda: stats.discovery_split(1, 0.5, RNG), ValueError, "n must be at least 2"),
        (lambda: stats.discovery_split(10, 1.0, RNG), ValueError, "fraction must lie in"),
        (lambda: stats.summarize_across_seeds([]), ValueError, "at least one seed"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_random_frame_is_the_first_columns_of_a_haar_rotation():
    """directions=k draws the same Gaussian columns' QR as the rotation would for its first k
    columns: orthonormal, sign-fixed; and a full rotation is unchanged by the option."""
    rotation = stats.random_rotation(6, np.random.default_rng(0))
    assert stats.random_rotation(6, np.random.default_rng(0), directions=9).shape == (6, 6)
    np.testing.assert_array_equal(
        stats.random_rotation(6, np.random.default_rng(0), directions=6), rotation
    )
    frame = stats.random_rotation(6, np.random.default_rng(1), directions=3)
    assert frame.shape == (6, 3)
    np.testing.assert_allclose(frame.T @ frame, np.eye(3), atol=1e-12)
    features = np.random.default_rng(2).standard_normal((5, 4, 6))
    np.testing.assert_allclose(stats.rotate_units(features, frame), features @ frame)


def test_bh_with_a_larger_family_equals_bh_with_the_missing_p_values_set_to_one():
    p = np.array([0.001, 0.02, 0.04, 0.3])
    padded = np.concatenate([p, np.ones(6)])
    np.testing.assert_allclose(stats.bh_adjust(p, n_tests=10), stats.bh_adjust(padded)[:4])
    with pytest.raises(ValueError, match="fewer than"):
        stats.bh_adjust(p, n_tests=3)
