"""Stratified nulls on unbalanced designs, where forgetting the strata gives a wrong answer.

On a balanced design (every token equally often at every position) a null that permutes token
labels freely, instead of within positions, is only more conservative: the tests that use
balanced designs pass with or without the stratification. Here the designs are unbalanced
(tokens distributed unequally across positions, strata of unequal sizes), so that a unit driven
by its stratum alone looks label-selective to a free permutation, and the stratified null must
keep its p-values calibrated; and a weak position effect under a large per-sequence offset is
found only by permuting positions within sequences.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from mechclaims.interp import stats
from mechclaims.interp.selectivity import selectivity_test

VOCAB, LENGTH = 5, 4
REPLICATIONS = 400  # independent designs, one unit each: p-values that share no permutation
LEVEL = 0.05


def _unbalanced_tokens(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, LENGTH] tokens, half of them at position p equal to p, the rest uniform: token p is
    frequent at position p and rare elsewhere, so token and position are confounded."""
    favoured = rng.random((n, LENGTH)) < 0.5
    return np.where(favoured, np.arange(LENGTH), rng.integers(0, VOCAB, (n, LENGTH)))


def _rejection_rate_is_the_level(p_values: np.ndarray) -> bool:
    """Whether the rate of p <= LEVEL over independent replications is consistent with LEVEL."""
    rejected = int(np.sum(p_values <= LEVEL))
    low, high = stats.wilson_interval(rejected, len(p_values), confidence=0.999)
    return bool(low <= LEVEL <= high)


def test_permute_labels_within_unequal_interleaved_strata():
    """Strata of sizes 3 and 2, interleaved: each row keeps every stratum's labels, and the
    3! x 2! joint permutations are equally likely (the strata are shuffled independently)."""
    labels, strata = np.arange(5), np.array([1, 0, 1, 1, 0])
    permuted = stats.permute_labels(labels, np.random.default_rng(20), 12_000, strata)
    for stratum in (0, 1):
        np.testing.assert_array_equal(
            np.sort(permuted[:, strata == stratum], axis=1),
            np.tile(labels[strata == stratum], (12_000, 1)),
        )
    _, counts = np.unique(permuted, axis=0, return_counts=True)
    assert len(counts) == 12
    assert scipy.stats.chisquare(counts).pvalue > 1e-3


def test_a_stratum_effect_is_not_a_label_effect_under_unequal_strata():
    """Values depend on the stratum alone; strata have unequal sizes and the labels are spread
    unequally across them. Labels permuted within strata: p-values calibrated (about 5% below
    0.05 over independent designs). Permuted freely: the stratum effect is credited to the
    labels and nearly every design is significant."""
    within, free = [], []
    for replication in range(REPLICATIONS):
        rng = np.random.default_rng([replication, 21])
        strata = rng.permutation(np.repeat([0, 1, 2], [8, 20, 32]))  # [60] unequal, interleaved
        labels = np.where(rng.random(60) < 0.6, strata, rng.integers(0, 3, 60))  # [60]
        values = 2.0 * strata[:, None] + rng.standard_normal((60, 1))  # [60,1]
        test = stats.permutation_test_eta_squared(
            values, labels, rng=rng, n_permutations=99, strata=strata
        )
        within.append(test.p_values[0])
        if replication < 50:
            test = stats.permutation_test_eta_squared(values, labels, rng=rng, n_permutations=99)
            free.append(test.p_values[0])
    assert _rejection_rate_is_the_level(np.array(within))
    assert np.mean(np.array(free) <= LEVEL) > 0.9


def test_selectivity_test_keeps_a_position_effect_out_of_the_token_null_when_unbalanced():
    """A unit that depends on the position only, on designs where token p is frequent at
    position p: its token p-value is calibrated, because tokens are permuted within positions.
    Without the stratification (the free null below) nearly every design calls it
    token-selective."""
    stratified, free = [], []
    for replication in range(REPLICATIONS):
        rng = np.random.default_rng([replication, 22])
        tokens = _unbalanced_tokens(rng, 40)  # [n,T]
        acts = np.arange(LENGTH)[None, :, None] + rng.standard_normal((40, LENGTH, 1))  # [n,T,1]
        stratified.append(selectivity_test(acts, tokens, rng, n_permutations=99).token_p[0])
        if replication < 50:
            free_test = stats.permutation_test_eta_squared(
                acts.reshape(-1, 1), tokens.reshape(-1), rng=rng, n_permutations=99
            )
            free.append(free_test.p_values[0])
    assert _rejection_rate_is_the_level(np.array(stratified))
    assert np.mean(np.array(free) <= LEVEL) > 0.9


def test_selectivity_test_finds_a_position_effect_under_large_sequence_offsets():
    """Each sequence has its own large offset (SD 10) and the position moves the unit by half
    the SD of its noise per step: permuting positions within sequences cancels the offsets in
    every null draw, so the effect is found in every unit; permuted freely, the offsets swamp
    it."""
    rng = np.random.default_rng(23)
    tokens = _unbalanced_tokens(rng, 80)
    offsets = rng.normal(0.0, 10.0, (80, 1, 1))  # [n,1,1]
    acts = offsets + 0.5 * np.arange(LENGTH)[None, :, None] + rng.standard_normal((80, LENGTH, 50))
    test = selectivity_test(acts, tokens, rng, n_permutations=99)
    assert np.all(test.position_p <= LEVEL)
    free = stats.permutation_test_eta_squared(
        acts.reshape(-1, 50), np.tile(np.arange(LENGTH), 80), rng=rng, n_permutations=99
    )
    assert np.mean(free.p_values <= LEVEL) < 0.2


def test_stratified_split_of_unequal_labels_picks_within_each_label_uniformly():
    """Labels of 2, 5 and 9 samples, interleaved: discovery holds round(0.4 count) of each,
    clipped to keep one in each half (1, 2 and 4), every sample of a label equally often."""
    labels = np.array([2, 1, 2, 0, 2, 1, 2, 2, 0, 1, 2, 1, 2, 2, 1, 2])
    quota = {0: 1, 1: 2, 2: 4}
    counts = np.bincount(labels)
    rng = np.random.default_rng(24)
    picked = np.zeros(len(labels))
    draws = 3000
    for _ in range(draws):
        discovery, _ = stats.stratified_split(labels, 0.4, rng)
        assert np.bincount(labels[discovery], minlength=3).tolist() == list(quota.values())
        picked[discovery] += 1
    expected = np.array([quota[label] / counts[label] for label in labels])
    low, high = stats.wilson_interval(picked.astype(int), draws, confidence=0.999)
    assert np.all((low <= expected) & (expected <= high))
