"""Feature detectors and hand-picked hypotheses: effects against interp.stats, exact chance
rates against enumeration, planted detectors found, noise not, invariances."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mechclaims.interp import stats
from mechclaims.interp.detectors import (
    chance_of_shared_feature,
    detector_test,
    feature_cohens_d,
    feature_glass_delta,
    feature_indicators,
    glass_delta_interval,
    most_shared_feature,
    token_effect_test,
    token_effects,
    top_sequences,
)
from mechclaims.interp.inputs import balanced_sequences

VOCAB, LENGTH = 4, 3
GRID = st.integers(-400, 400).map(lambda i: i / 8)  # exact values, as in test_stats


@st.composite
def values_and_tokens(draw, max_units=3):
    """(values [n, U] on GRID, tokens [n, LENGTH]) with every feature present and absent."""
    n = 2 * VOCAB + draw(st.integers(0, 8))
    columns = [draw(st.permutations(list(np.arange(n) % VOCAB))) for _ in range(LENGTH)]
    units = draw(st.integers(1, max_units))
    values = draw(hnp.arrays(np.float64, (n, units), elements=GRID))
    return values, np.array(columns).T


def test_feature_indicators_mark_token_at_position():
    indicators = feature_indicators(np.array([[2, 0, 3]]), VOCAB)
    assert indicators.shape == (1, LENGTH * VOCAB)
    np.testing.assert_array_equal(np.flatnonzero(indicators[0]), [2, 4 + 0, 8 + 3])


@given(values_and_tokens())
def test_feature_effects_match_interp_stats_pair_by_pair(data):
    values, tokens = data
    indicators = feature_indicators(tokens, VOCAB).astype(bool)
    d = feature_cohens_d(values, indicators.astype(float))
    delta = feature_glass_delta(values, indicators.astype(float))
    for feature in range(indicators.shape[1]):
        inside, outside = values[indicators[:, feature]], values[~indicators[:, feature]]
        if len(inside) >= 2:
            np.testing.assert_allclose(d[feature], stats.cohens_d(inside, outside), atol=1e-9)
            np.testing.assert_allclose(
                delta[feature], stats.glass_delta(inside, outside), atol=1e-9
            )


def test_constant_units_have_no_effect_and_p_value_one():
    rng = np.random.default_rng(0)
    tokens = balanced_sequences(rng, 40, VOCAB, LENGTH)
    responses = np.full((40, 2), 3.7)
    split = stats.discovery_split(40, 0.5, rng)
    test = detector_test(responses, tokens, VOCAB, split, rng, n_permutations=19)
    np.testing.assert_array_equal(test.holdout_d, 0.0)
    np.testing.assert_array_equal(test.p_values, 1.0)
    effects, p = token_effect_test(responses, tokens[:, 0], VOCAB, rng, 19)
    np.testing.assert_array_equal(effects, 0.0)
    np.testing.assert_array_equal(p, 1.0)


def test_top_sequences_and_their_shared_feature():
    responses = np.array([0.1, 5.0, 3.0, 5.0, -1.0])
    np.testing.assert_array_equal(top_sequences(responses, 3), [1, 3, 2])
    tokens = np.array([[1, 2, 3], [0, 2, 3], [1, 1, 0]])
    # token 1 at position 0 twice, token 2 at position 1 twice: the lowest position wins
    assert most_shared_feature(tokens, VOCAB) == (1, 0, 2)


def test_chance_of_shared_feature_for_the_seeds_top_five():
    # 5 draws of 10 tokens with all multiplicities <= 2: 30240 + 50400 + 10800 of 10^5
    expected = 1 - (91440 / 10**5) ** 4
    assert chance_of_shared_feature(10, 4, 5, 3) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("vocab", "length", "k", "min_count"), [(3, 2, 4, 2), (2, 3, 4, 3)])
def test_chance_of_shared_feature_matches_enumeration(vocab, length, k, min_count):
    sequences = list(itertools.product(range(vocab), repeat=length))
    shared = 0
    for draw in itertools.product(sequences, repeat=k):
        _, _, count = most_shared_feature(np.array(draw), vocab)
        shared += count >= min_count
    expected = shared / len(sequences) ** k
    assert chance_of_shared_feature(vocab, length, k, min_count) == pytest.approx(expected)


def _planted(seed: int, n: int = 400):
    """Responses: unit 0 fires for token 2 at position 1, unit 1 is noise."""
    rng = np.random.default_rng(seed)
    tokens = balanced_sequences(rng, n, VOCAB, LENGTH)
    responses = rng.standard_normal((n, 2))
    responses[:, 0] += 1.5 * (tokens[:, 1] == 2)
    return rng, tokens, responses


@given(st.integers(0, 2**32 - 1))
def test_detector_test_finds_a_planted_detector(seed):
    rng, tokens, responses = _planted(seed)
    split = stats.discovery_split(len(tokens), 0.5, rng)
    test = detector_test(responses, tokens, VOCAB, split, rng, n_permutations=99)
    assert test.feature[0] == 1 * VOCAB + 2
    assert test.p_values[0] == pytest.approx(1 / 100)
    assert test.confirmed(0.05, 0.5)[0]


def test_detector_test_on_noise_rarely_confirms_a_detector():
    rng = np.random.default_rng(1)
    tokens = balanced_sequences(rng, 400, VOCAB, LENGTH)
    confirmed, p_values = [], []
    for _ in range(10):
        split = stats.discovery_split(len(tokens), 0.5, rng)
        test = detector_test(rng.standard_normal((400, 50)), tokens, VOCAB, split, rng, 99)
        confirmed.append(test.confirmed(0.05, 0.0).mean())
        p_values.append(test.p_values)
    assert np.mean(confirmed) <= 0.05  # FDR control with every null true: few discoveries
    assert abs(np.mean(np.concatenate(p_values) <= 0.2) - 0.2) < 0.05  # calibrated p-values


@given(st.integers(0, 2**32 - 1), st.floats(0.1, 10.0), st.floats(-50.0, 50.0))
def test_detector_test_is_invariant_to_a_positive_affine_map(seed, scale, shift):
    _, tokens, responses = _planted(seed, n=80)
    split = stats.discovery_split(80, 0.5, np.random.default_rng(seed))
    tests = [
        detector_test(values, tokens, VOCAB, split, np.random.default_rng(seed), 19)
        for values in (responses, scale * responses + shift)
    ]
    np.testing.assert_array_equal(tests[0].feature, tests[1].feature)
    np.testing.assert_allclose(tests[0].holdout_d, tests[1].holdout_d, rtol=1e-8)
    np.testing.assert_array_equal(tests[0].p_values, tests[1].p_values)


def test_token_effects_are_glass_delta_per_token():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, VOCAB, 60)
    values = rng.standard_normal((60, 3))
    effects = token_effects(values, labels, VOCAB)
    for token in range(VOCAB):
        expected = stats.glass_delta(values[labels == token], values[labels != token])
        np.testing.assert_allclose(effects[token], expected)


@given(st.integers(0, 2**32 - 1))
def test_token_effect_test_finds_a_planted_effect_and_is_two_sided(seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(VOCAB), 30)
    values = rng.standard_normal((len(labels), 2))
    values[:, 0] += 2.0 * (labels == 3)
    effects, p = token_effect_test(values, labels, VOCAB, np.random.default_rng(seed), 99)
    assert effects[3, 0] > 1.0
    assert p[3, 0] == pytest.approx(1 / 100)
    _, p_negated = token_effect_test(-values, labels, VOCAB, np.random.default_rng(seed), 99)
    np.testing.assert_array_equal(p, p_negated)


def test_token_effect_test_p_values_are_calibrated_on_noise():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, VOCAB, 200)
    _, p = token_effect_test(rng.standard_normal((200, 100)), labels, VOCAB, rng, 99)
    assert abs(np.mean(p <= 0.1) - 0.1) < 0.03


@pytest.mark.parametrize("draw", ["normal", "exponential"])
def test_glass_delta_interval_agrees_with_the_bootstrap(draw):
    rng = np.random.default_rng(4)
    sample = getattr(rng, "standard_" + draw)
    treated, control = sample((300, 2)) * 1.5 + 0.8, sample((900, 2))
    analytic = glass_delta_interval(treated, control)
    np.testing.assert_allclose(analytic.value, stats.glass_delta(treated, control))
    boot = stats.bootstrap_interval(
        (treated, control), stats.glass_delta, rng=rng, n_resamples=2000, method="percentile"
    )
    width = boot.high - boot.low
    np.testing.assert_allclose(analytic.high - analytic.low, width, rtol=0.15)
    assert np.all(np.abs(analytic.low - boot.low) < 0.1 * width)


def test_glass_delta_interval_of_a_constant_control_is_a_point():
    result = glass_delta_interval(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0]))
    assert result.value == result.low == result.high == np.inf
