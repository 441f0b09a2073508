"""Tests of interp.circuits and of claim 4's measurement: hand-computed values, the seed's own
print loop as a reference, a Monte-Carlo check of the Gaussian partition reference, planted pairs
found and none found in noise, invariances, and each source tested with its own distinct rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechclaims.interp import circuits
from mechclaims.interp.claims import circuits as claim
from mechclaims.interp.inputs import all_sequences
from mechclaims.interp.sources import PANEL_SIZE, source_for
from mechclaims.interp.stats import (
    benjamini_hochberg,
    correlation_matrix,
    correlation_p_value,
    discovery_split,
    effective_sample_size,
    random_rotation,
    rotate_units,
)
from mechclaims.model.config import TransformerConfig

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


def _seed_printout(features: np.ndarray) -> tuple[list, list]:
    """The seed's loop (mechinterp.py, find_neuron_circuits), verbatim but for print: the
    (unit, partner, r) lines it printed."""
    correlation = np.corrcoef(features.T)
    partners, rs = [-1] * 5, [0.0] * 5
    for i in range(min(5, features.shape[1])):
        correlations = correlation[i, :]
        correlations[i] = 0  # Exclude self (a view: it writes into the matrix)
        max_idx = np.argmax(np.abs(correlations))
        if abs(correlations[max_idx]) > 0.5:
            partners[i], rs[i] = int(max_idx), float(correlations[max_idx])
    return partners, rs


@settings(max_examples=40, deadline=None)
@given(SEEDS, st.integers(6, 32), st.booleans())
def test_strongest_partners_print_what_the_seeds_loop_printed(seed, units, constant):
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, 10, 500)  # the seed's 500 rows of 10 distinct inputs
    features = rng.standard_normal((10, units))[inputs]  # [500, units]
    if constant:
        features[:, rng.integers(units)] = 0.25  # np.corrcoef: NaN; the seed printed nothing
    with np.errstate(invalid="ignore", divide="ignore"):
        partners, rs = _seed_printout(features)
    printed = circuits.strongest_partners(correlation_matrix(features), np.arange(5), 0.5)
    np.testing.assert_array_equal(printed.partner, partners)
    np.testing.assert_allclose(printed.r, rs, atol=1e-12)
    if constant:
        assert np.all(printed.partner == -1)


def test_strongest_partners_of_a_batch_are_each_matrix_s():
    rng = np.random.default_rng(0)
    batch = np.stack([correlation_matrix(rng.standard_normal((8, 12))) for _ in range(4)])
    together = circuits.strongest_partners(batch, np.arange(5), 0.5)
    for member, corr in enumerate(batch):
        alone = circuits.strongest_partners(corr, np.arange(5), 0.5)
        np.testing.assert_array_equal(together.partner[member], alone.partner)
        np.testing.assert_array_equal(together.r[member], alone.r)


def test_the_printout_holds_with_a_printed_partner_beyond_each_sign():
    assert circuits.printout_holds(np.array([0.0, 0.81, -0.6, -0.85, 0.0]), 0.8)
    assert not circuits.printout_holds(np.array([0.0, 0.81, -0.6, -0.8, 0.95]), 0.8)
    assert not circuits.printout_holds(np.zeros(5), 0.8)  # nothing printed
    np.testing.assert_array_equal(
        circuits.printout_holds(np.array([[0.9, -0.9], [0.9, 0.9]]), 0.8), [True, False]
    )


@given(SEEDS)
def test_repeated_correlation_is_the_correlation_of_the_repeated_rows(seed):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((3, 7, 5))  # [b, m, U]
    counts = rng.integers(1, 60, 7)
    batch = circuits.repeated_correlation(features, counts)
    for member in range(3):
        repeated = np.repeat(features[member], counts, axis=0)  # [sum(counts), U]
        np.testing.assert_allclose(batch[member], correlation_matrix(repeated), atol=1e-12)


def test_the_chance_printout_is_the_seeds_rule_on_gaussian_units_on_the_same_rows():
    rng = np.random.default_rng(5)
    inputs = rng.integers(0, 10, 500)
    draws, units = 300, 32
    chance = circuits.chance_printout(inputs, units, np.arange(5), 0.5, 0.8,
                                      np.random.default_rng(1), draws)  # fmt: skip
    values = np.random.default_rng(1).standard_normal((draws, 10, units))  # the same draws
    held = [
        circuits.printout_holds(circuits.strongest_partners(
            correlation_matrix(draw[inputs]), np.arange(5), 0.5).r, 0.8)
        for draw in values
    ]  # fmt: skip
    assert chance == np.mean(held)
    assert 0.03 < chance < 0.2  # the order of 5 dims x 31 partners at P(|r| > 0.8 | n = 10)


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


def test_distinct_rows_keep_each_row_once():
    rows = np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 2.0], [0.0, 1.0], [3.0, 0.0]])
    np.testing.assert_array_equal(circuits.distinct_rows(rows), [[1, 2], [0, 1], [3, 0]])
    np.testing.assert_array_equal(circuits.distinct_rows(rows), np.unique(rows, axis=0)[[1, 0, 2]])


def test_a_null_of_10_distinct_rows_repeated_is_tested_with_n_10():
    """Pseudo-replication: 10 distinct rows, each repeated 100 times, carry the evidence of 10
    inputs. The tally finds the strong pairs the 10 rows give with n = 10, not the pairs the
    same r would give with n = 1000 (the embedding alone at the last position, before issue 20)."""
    rng = np.random.default_rng(4)
    distinct = rng.standard_normal((10, 30))  # [10, 30]: 435 pairs, some |r| > 0.8 by chance
    repeated = np.repeat(distinct, 100, axis=0)  # [1000, 30]
    tally = circuits.PairTally(0.8, 0.05, np.linspace(0.0, 1.0, 21))
    tally.add_features(repeated)
    summary = tally.summary()
    on_ten = circuits.strong_pairs([correlation_matrix(distinct)], 10, 0.8, 0.05)
    as_if_thousand = circuits.strong_pairs([correlation_matrix(repeated)], 1000, 0.8, 0.05)
    assert summary["n"] == 10
    assert summary["rate"] == on_ten.rate
    assert summary["strong"] == int(on_ten.strong.sum())
    assert as_if_thousand.rate > on_ten.rate  # what the test would find without the fix


def test_a_tally_tests_each_unit_set_with_its_own_n():
    """Sets over 10 and over 400 distinct inputs in one family: each pair's p-value with its own
    set's n, one BH across all (benjamini_hochberg on every p-value, computed apart)."""
    rng = np.random.default_rng(6)
    latent = rng.standard_normal((400, 1))
    wide = latent @ rng.standard_normal((1, 6)) + 0.5 * rng.standard_normal((400, 6))
    narrow = rng.standard_normal((10, 6))
    matrices, sizes = [correlation_matrix(narrow), correlation_matrix(wide)], [10, 400]
    tally = circuits.PairTally(0.8, 0.05, np.linspace(0.0, 1.0, 21))
    for matrix, n in zip(matrices, sizes, strict=True):
        tally.add(matrix, n)
    r = np.concatenate([circuits.upper_pairs(matrix) for matrix in matrices])
    p_values = np.concatenate([correlation_p_value(circuits.upper_pairs(matrix), n)
                               for matrix, n in zip(matrices, sizes, strict=True)])  # fmt: skip
    expected = np.mean(benjamini_hochberg(p_values, 0.05) & (np.abs(r) > 0.8))
    assert tally.summary()["rate"] == expected
    assert tally.summary()["n"] == 10


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
    tally = circuits.PairTally(0.8, 0.05, bins)
    for matrix in matrices:
        tally.add(matrix, n)
    summary = tally.summary()
    assert summary["rate"] == whole.rate
    assert summary["strong"] == int(whole.strong.sum())
    assert summary["mean_r"] == pytest.approx(whole.r.mean())
    np.testing.assert_array_equal(summary["abs_r"], np.histogram(np.abs(whole.r), bins)[0])


# ---------------------------------------------------------------------------------------------
# Claim 4's measurement: each source on its own distinct rows


TINY = TransformerConfig.preset("tiny-mha")
THRESHOLDS = {"seed_print_r": 0.5, "strong_r": 0.8, "n_sequences": 200, "fdr": 0.05,
              "discovery_fraction": 0.5, "partition_share": 0.95, "margin_embedding": 0.005,
              "margin_rotated": 0.005, "margin_gaussian": 0.005}  # fmt: skip


def test_the_embedding_at_the_last_position_is_tested_with_its_10_distinct_inputs():
    result = claim.controlled(source_for(TINY), 0, THRESHOLDS)["result"]
    assert result["pos3_embedding_n"] == PANEL_SIZE  # LN(W_E[x_3] + W_pos[3]): x_3 alone
    for source in ("network", "rotated", "gaussian"):
        assert result[f"pos3_{source}_n"] == THRESHOLDS["n_sequences"]
    for source in claim.SOURCES:
        assert result[f"pos0_{source}_n"] == PANEL_SIZE


def test_a_network_that_is_the_embedding_is_tested_with_its_10_distinct_inputs():
    """The network's rows are deduplicated too: a planted network whose units are the embedding's
    dimensions has 10 distinct rows at the last position, and so have its rotated basis and its
    Gaussian null, which take the network's n."""
    result = claim.controlled(source_for(TINY, planted="embedding"), 0, THRESHOLDS)["result"]
    for source in claim.SOURCES:
        assert result[f"pos3_{source}_n"] == PANEL_SIZE


def test_the_seed_protocol_holds_as_its_printout_reads():
    result = claim.seed_protocol(source_for(TINY), 13, THRESHOLDS)
    holds = claim.CLAIM.readings["seed-protocol"].holds(result, THRESHOLDS)
    assert holds == circuits.printout_holds(result["printed_r"], THRESHOLDS["strong_r"])
    assert result["printed_above"] == np.sum(result["printed_r"] > 0.8)
    assert result["printed_below"] == np.sum(result["printed_r"] < -0.8)
    assert result["holds_all_pairs"] == (result["pairs_above"] > 0 and result["pairs_below"] > 0)
    assert result["distinct_inputs"] == PANEL_SIZE
