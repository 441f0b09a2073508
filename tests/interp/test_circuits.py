"""Tests of interp.circuits: hand-computed values, a Monte-Carlo check of the Gaussian partition
reference, planted pairs found and none found in noise, and invariances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechclaims.interp import circuits
from mechclaims.interp.inputs import all_sequences
from mechclaims.interp.stats import (
    benjamini_hochberg,
    correlation_matrix,
    correlation_p_value,
    discovery_split,
    effective_sample_size,
    random_rotation,
    rotate_units,
)

SEEDS = st.integers(0, 2**32 - 1)


def _correlated(rng, n, r):
    """Two columns [n, 2] from a bivariate Gaussian with correlation r."""
    z = rng.standard_normal((n, 2))
    return np.column_stack([z[:, 0], r * z[:, 0] + np.sqrt(1 - r**2) * z[:, 1]])


# ---------------------------------------------------------------------------------------------
# Inputs and the seed's print-out


@given(SEEDS, st.integers(2, 200))
def test_distinct_sequences_are_distinct_sorted_and_deterministic(seed, n):
    tokens = circuits.distinct_sequences(np.random.default_rng(seed), n, 5, 4)
    assert tokens.shape == (n, 4)
    assert effective_sample_size(tokens) == n
    assert tokens.min() >= 0
    assert tokens.max() < 5
    codes = tokens @ (5 ** np.arange(3, -1, -1))
    assert np.all(np.diff(codes) > 0)
    again = circuits.distinct_sequences(np.random.default_rng(seed), n, 5, 4)
    np.testing.assert_array_equal(tokens, again)


def test_distinct_sequences_of_every_sequence_is_the_exhaustive_design():
    tokens = circuits.distinct_sequences(np.random.default_rng(0), 100, 10, 2)
    np.testing.assert_array_equal(tokens, all_sequences(10, 2))
    with pytest.raises(ValueError, match="n must lie"):
        circuits.distinct_sequences(np.random.default_rng(0), 101, 10, 2)


def test_strongest_partners_prints_the_largest_magnitude_above_the_cut_off():
    corr = np.array(
        [
            [1.0, 0.3, -0.9, 0.1],
            [0.3, 1.0, 0.4, 0.2],
            [-0.9, 0.4, 1.0, 0.6],
            [0.1, 0.2, 0.6, 1.0],
        ]
    )
    partners = circuits.strongest_partners(corr, np.arange(4), threshold=0.5)
    # unit 1's best |r| is 0.4 <= 0.5: nothing printed
    np.testing.assert_array_equal(partners.partner, [2, -1, 0, 2])
    np.testing.assert_array_equal(partners.r, [-0.9, 0.0, -0.9, 0.6])


def test_upper_pairs_lists_each_unordered_pair_once():
    corr = np.array([[1.0, 0.1, 0.2], [0.1, 1.0, 0.3], [0.2, 0.3, 1.0]])
    np.testing.assert_array_equal(circuits.upper_pairs(corr), [0.1, 0.2, 0.3])


# ---------------------------------------------------------------------------------------------
# Strong pairs


def test_a_planted_pair_is_found_among_noise():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((200, 6))
    features[:, 4] = -features[:, 1] + 0.1 * rng.standard_normal(200)
    result = circuits.strong_pairs([correlation_matrix(features)], 200, strong_r=0.8, fdr=0.05)
    found = result.strong & result.discovered
    assert found.sum() == 1
    first, second = np.triu_indices(6, k=1)
    assert (first[found][0], second[found][0]) == (1, 4)
    assert result.rate == pytest.approx(1 / 15)


@settings(max_examples=20, deadline=None)
@given(SEEDS, st.integers(2, 12))
def test_gaussian_noise_with_enough_inputs_has_no_strong_pairs(seed, units):
    features = np.random.default_rng(seed).standard_normal((300, units))
    result = circuits.strong_pairs([correlation_matrix(features)], 300, strong_r=0.8, fdr=0.05)
    assert result.rate == 0.0  # P(|r| > 0.8) at n = 300 is below 1e-60 per pair


def test_the_same_r_survives_with_many_inputs_and_not_with_few():
    corr = np.array([[1.0, 0.85], [0.85, 1.0]])
    filler = np.eye(30)  # 435 uncorrelated pairs in the same family
    with_many = circuits.strong_pairs([corr, filler], 500, strong_r=0.8, fdr=0.05)
    with_few = circuits.strong_pairs([corr, filler], 10, strong_r=0.8, fdr=0.05)
    assert with_many.strong.sum() == with_few.strong.sum() == 1
    assert with_many.discovered.sum() == 1
    assert with_few.discovered.sum() == 0  # p ~ 0.002 at n = 10, BH needs 0.05 / 436


def test_constant_units_give_no_pairs_and_no_nan():
    features = np.zeros((10, 5))
    result = circuits.strong_pairs([correlation_matrix(features)], 10, strong_r=0.8, fdr=0.05)
    assert result.rate == 0.0
    assert np.all(np.isfinite(result.r))
    split = discovery_split(10, 0.5, np.random.default_rng(0))
    partition = circuits.partition_test(features, split.discovery, split.holdout, 0.8)
    assert partition.r.size == 0
    assert partition.share.size == 0


@given(SEEDS, st.floats(0.1, 10.0), st.floats(-5.0, 5.0))
def test_strong_pairs_do_not_depend_on_unit_scale_or_offset(seed, scale, shift):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((12, 4)) @ rng.standard_normal((4, 4))
    base = circuits.strong_pairs([correlation_matrix(features)], 12, 0.8, 0.05)
    moved = circuits.strong_pairs([correlation_matrix(scale * features + shift)], 12, 0.8, 0.05)
    np.testing.assert_allclose(moved.r, base.r, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Partition


def test_a_unit_and_its_negation_partition_the_inputs():
    features = np.arange(10.0)[:, None] * np.array([[1.0, -1.0]])  # [10, 2], distinct values
    np.testing.assert_array_equal(circuits.above_median(features)[:, 0], np.arange(10) >= 5)
    share = circuits.exactly_one_active(features, np.array([0]), np.array([1]))
    np.testing.assert_array_equal(share, [1.0])
    np.testing.assert_array_equal(circuits.exactly_one_active(features, [0], [0]), [0.0])


def test_a_relu_unit_silent_on_most_inputs_is_active_where_positive():
    features = np.array([[0.0], [0.0], [0.0], [2.0], [3.0]])
    np.testing.assert_array_equal(circuits.above_median(features)[:, 0], [0, 0, 0, 1, 1])


def test_gaussian_reference_known_values():
    np.testing.assert_allclose(
        circuits.gaussian_exactly_one_share(np.array([-1.0, 0.0, 1.0, -0.5])),
        [1.0, 0.5, 0.0, 0.5 + 1 / 6],
    )


@pytest.mark.parametrize("r", [-0.95, -0.8, -0.3, 0.0, 0.6])
def test_gaussian_reference_matches_a_bivariate_gaussian_sample(r):
    features = _correlated(np.random.default_rng(1), 200_000, r)
    share = circuits.exactly_one_active(features, np.array([0]), np.array([1]))
    expected = circuits.gaussian_exactly_one_share(np.array([r]))
    np.testing.assert_allclose(share, expected, atol=0.005)  # binomial SE <= 0.0012


@given(SEEDS)
def test_partition_share_is_invariant_under_increasing_maps_of_each_unit(seed):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((40, 3))
    mapped = np.column_stack([np.exp(features[:, 0]), 3 * features[:, 1] - 2, features[:, 2] ** 3])
    first, second = np.array([0, 0, 1]), np.array([1, 2, 2])
    np.testing.assert_array_equal(
        circuits.exactly_one_active(features, first, second),
        circuits.exactly_one_active(mapped, first, second),
    )


def test_partition_test_chooses_pairs_on_discovery_and_measures_on_holdout():
    rng = np.random.default_rng(2)
    features = np.column_stack([_correlated(rng, 400, -0.9), rng.standard_normal(400)])  # [400,3]
    split = discovery_split(400, 0.5, rng)
    partition = circuits.partition_test(features, split.discovery, split.holdout, 0.8)
    held_out = features[split.holdout]
    assert partition.r.shape == (1,)
    np.testing.assert_allclose(partition.r, correlation_matrix(held_out)[0, 1])
    np.testing.assert_allclose(
        partition.share, circuits.exactly_one_active(held_out, np.array([0]), np.array([1]))
    )
    # a Gaussian pair with r = -0.9 splits ~86% of inputs: far from a near-perfect partition
    assert 0.75 < partition.share[0] < 0.95
    assert abs(partition.share[0] - partition.gaussian_share[0]) < 0.06


def test_concatenate_partitions_keeps_every_pair():
    a = circuits.Partition(np.array([-0.9]), np.array([0.8]))
    b = circuits.Partition(np.array([-0.85, -0.95]), np.array([0.7, 0.9]))
    both = circuits.concatenate_partitions([a, b])
    np.testing.assert_array_equal(both.r, [-0.9, -0.85, -0.95])
    np.testing.assert_array_equal(both.share, [0.8, 0.7, 0.9])


def test_count_signed_pairs_counts_each_sign_beyond_the_cut_off():
    corr = np.array([[1.0, 0.9, -0.85], [0.9, 1.0, -0.8], [-0.85, -0.8, 1.0]])
    assert circuits.count_signed_pairs(corr, 0.8) == (1, 1)  # -0.8 is not beyond -0.8


@given(SEEDS, st.integers(2, 8))
def test_rotated_correlation_equals_correlating_the_rotated_features(seed, units):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((30, units)) @ rng.standard_normal((units, units))
    features[:, 0] = 1.5  # a constant unit
    rotation = random_rotation(units, rng)
    direct = correlation_matrix(rotate_units(features, rotation))
    via_covariance = circuits.rotated_correlation(
        correlation_matrix(features), features.std(axis=0), rotation
    )
    np.testing.assert_allclose(via_covariance, direct, atol=1e-9)


def test_rotated_correlation_of_constant_features_is_zero():
    rotation = random_rotation(4, np.random.default_rng(0))
    r = circuits.rotated_correlation(np.zeros((4, 4)), np.zeros(4), rotation)
    np.testing.assert_array_equal(r, np.zeros((4, 4)))


def test_partition_test_indexes_pairs_that_share_a_unit():
    rng = np.random.default_rng(3)
    z = rng.standard_normal(200)
    noise = 0.2 * rng.standard_normal((200, 2))
    features = np.column_stack([rng.standard_normal(200), z, -z + noise[:, 0], -z + noise[:, 1]])
    split = discovery_split(200, 0.5, rng)
    partition = circuits.partition_test(features, split.discovery, split.holdout, 0.8)
    held_out = features[split.holdout]
    full = correlation_matrix(held_out)
    np.testing.assert_allclose(partition.r, [full[1, 2], full[1, 3]])
    np.testing.assert_allclose(
        partition.share, circuits.exactly_one_active(held_out, np.array([1, 1]), np.array([2, 3]))
    )


@pytest.mark.parametrize("n", [4, 10, 1000])
def test_critical_r_has_the_p_value_alpha(n):
    r = circuits.critical_r(n, 0.05)
    np.testing.assert_allclose(correlation_p_value(r, n), 0.05, rtol=1e-6)
    assert correlation_p_value(r, n) >= 0.05


@settings(max_examples=30, deadline=None)
@given(SEEDS, st.sampled_from([5, 10, 40]), st.integers(2, 15), st.floats(0.0, 3.0))
def test_strong_pairs_discover_what_bh_on_every_p_value_discovers(seed, n, units, signal):
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 1))
    features = signal * latent @ rng.standard_normal((1, units)) + rng.standard_normal((n, units))
    corr = correlation_matrix(features)
    result = circuits.strong_pairs([corr], n, strong_r=0.8, fdr=0.05)
    every_p = correlation_p_value(circuits.upper_pairs(corr), n)
    np.testing.assert_array_equal(result.discovered, benjamini_hochberg(every_p, 0.05))


@pytest.mark.parametrize("n", [10, 200])
def test_a_tally_set_by_set_finds_what_strong_pairs_finds_on_all_pairs_at_once(n):
    """PairTally keeps only the pairs BH could discover, with the family's full size: the same
    rate, strong count, mean r and |r| histogram as strong_pairs over every pair."""
    rng = np.random.default_rng(n)
    base = rng.standard_normal((n, 3))
    sets = [np.hstack([base, rng.standard_normal((n, 5))]) + 0.3 * rng.standard_normal((n, 8))
            for _ in range(3)]  # fmt: skip
    matrices = [correlation_matrix(features) for features in sets]
    whole = circuits.strong_pairs(matrices, n, strong_r=0.8, fdr=0.05)
    bins = np.linspace(0.0, 1.0, 21)
    tally = circuits.PairTally(n, 0.8, 0.05, bins)
    for matrix in matrices:
        tally.add(matrix)
    summary = tally.summary()
    assert summary["rate"] == whole.rate
    assert summary["strong"] == int(whole.strong.sum())
    assert summary["mean_r"] == pytest.approx(whole.r.mean())
    np.testing.assert_array_equal(summary["abs_r"], np.histogram(np.abs(whole.r), bins)[0])
