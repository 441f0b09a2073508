"""Selectivity (the seed's rule and the controlled test) and cross-seed verdicts."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mechclaims.interp.inputs import balanced_sequences
from mechclaims.interp.selectivity import seed_selectivity, selectivity_test
from mechclaims.interp.verdicts import cross_seed_verdict

VOCAB, LENGTH = 5, 4


def _design(seed: int, n: int = 200):
    rng = np.random.default_rng(seed)
    return rng, balanced_sequences(rng, n, VOCAB, LENGTH)  # [n,T]


def _planted_units(rng, tokens):
    """Unit 0 follows the token, unit 1 the position, unit 2 is noise, unit 3 is constant."""
    n, T = tokens.shape
    noise = rng.standard_normal((n, T, 4)) * 0.1
    acts = noise.copy()
    acts[..., 0] += tokens
    acts[..., 1] += np.arange(T)
    acts[..., 3] = 2.5
    return acts  # [n,T,4]


def _own_samples(acts: np.ndarray, tokens: np.ndarray):
    """Shared samples [n,T,U] and tokens [n,T] as the per-unit form [U,n,T] (each unit's own)."""
    units = acts.shape[-1]
    return acts.transpose(2, 0, 1), np.broadcast_to(tokens, (units, *tokens.shape))


def test_seed_selectivity_matches_a_direct_computation():
    rng, tokens = _design(0)
    acts = rng.standard_normal((*tokens.shape, 3))
    result = seed_selectivity(*_own_samples(acts, tokens), threshold=0.5, vocab=VOCAB)
    np.testing.assert_allclose(result.position_std, acts.mean(axis=0).std(axis=0))
    token_means = np.stack([acts[tokens == t].mean(axis=0) for t in range(VOCAB)])
    np.testing.assert_allclose(result.token_std, token_means.std(axis=0))


def test_seed_selectivity_uses_each_units_own_samples():
    """Unit 0 on samples where the token drives it, unit 1 on samples where it does not: the
    same activations give different verdicts with different tokens, as in the seed's loop."""
    rng, tokens = _design(2)
    other = rng.permuted(tokens, axis=0)
    acts = np.stack([tokens, tokens]).astype(float)  # [2,n,T]: both equal to unit 0's tokens
    result = seed_selectivity(acts, np.stack([tokens, other]), threshold=0.5, vocab=VOCAB)
    assert result.token_std[0] > 1.0
    assert result.token_std[1] < 0.5
    np.testing.assert_allclose(result.position_std, 0.0, atol=1e-12)


def test_seed_selectivity_flags_planted_units_and_tallies_both_lists():
    rng, tokens = _design(1)
    acts = _planted_units(rng, tokens)
    acts[..., 2] += 2 * tokens + np.arange(tokens.shape[1])  # unit 2: token AND position
    result = seed_selectivity(*_own_samples(acts, tokens), threshold=0.5, vocab=VOCAB)
    np.testing.assert_array_equal(result.selective, [True, True, True, False])
    assert result.count == 4  # unit 2 counts twice, as in the seed's two lists
    assert result.token_std[3] == 0
    assert result.position_std[3] == 0


def test_seed_selectivity_counts_a_token_never_drawn_as_mean_zero():
    """The seed's `np.mean(...) if token_activations[t] else 0`: an absent token's mean is 0."""
    tokens = np.array([[[0, 1], [1, 0], [0, 0]]])  # [1,3,2]: only tokens 0 and 1 drawn
    acts = np.full((1, 3, 2), 3.0)  # a constant unit at 3
    result = seed_selectivity(acts, tokens, threshold=0.5, vocab=3)
    np.testing.assert_allclose(result.token_std, np.std([3.0, 3.0, 0.0]))


@given(seed=st.integers(0, 1000))
def test_selectivity_test_finds_planted_effects_and_not_noise(seed):
    rng, tokens = _design(seed)
    # 199 permutations: p = 1/200 for the planted effects, small enough for BH over 8 tests.
    test = selectivity_test(_planted_units(rng, tokens), tokens, rng, n_permutations=199)
    assert test.token_eta2[0] > 0.9
    assert test.token_p[0] == pytest.approx(1 / 200)
    assert test.position_eta2[1] > 0.9
    assert test.position_p[1] == pytest.approx(1 / 200)
    assert test.token_eta2[3] == 0
    assert test.token_p[3] == 1
    assert test.position_p[3] == 1
    np.testing.assert_array_equal(
        test.selective(fdr=0.05, min_eta2=0.06), [True, True, False, False]
    )


def test_selectivity_test_keeps_the_other_factor_in_its_null():
    """A pure position effect must not look token-selective: token labels are permuted
    within positions, so the position effect is the same in every null draw."""
    rng, tokens = _design(3, n=400)
    acts = np.broadcast_to(np.arange(LENGTH) * 10.0, tokens.shape)[..., None]  # position only
    acts = acts + rng.standard_normal(acts.shape)
    test = selectivity_test(acts, tokens, rng, n_permutations=99)
    assert test.token_p[0] > 0.01
    assert test.position_p[0] == pytest.approx(0.01)


def test_selectivity_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="tokens"):
        seed_selectivity(np.zeros((4, 3, 2)), np.zeros((4, 2), dtype=int), 0.5, vocab=3)


@pytest.mark.parametrize(
    ("holds", "verdict"),
    [([True] * 20, "supported"), ([False] * 20, "refuted"), ([True, False] * 10, "inconclusive")],
)
def test_cross_seed_verdict_follows_the_wilson_interval(holds, verdict):
    result = cross_seed_verdict(holds, required_rate=0.5)
    assert result.verdict == verdict
    assert result.rate_low <= result.rate <= result.rate_high


def test_cross_seed_verdict_needs_enough_seeds_to_decide():
    assert cross_seed_verdict([True, True], 0.5).verdict == "inconclusive"
    assert cross_seed_verdict([True] * 6, 0.5).verdict == "supported"


def test_cross_seed_verdict_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        cross_seed_verdict([], 0.5)
    with pytest.raises(ValueError, match="required_rate"):
        cross_seed_verdict([True], 1.0)
