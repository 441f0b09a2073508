"""Tests of interp.consistency: hand-computed values, brute-force twins of the pattern-level
statistics, planted effects found, no effect (and a purely additive response) not found,
invariances, constant responses; the layout-matched design: stand-ins of the same layout shape,
shared random relations and splits, and a response that sees only the layout decoding both
designs alike."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechclaims.interp import consistency
from mechclaims.interp.inputs import family_sequences, token_layouts
from mechclaims.interp.stats import eta_squared, random_rotation

SEEDS = st.integers(0, 2**32 - 1)
VOCAB, LENGTH = 5, 3  # small designs: 7 family patterns (4 of them alternating)


def small_design(seed: int, n_random_patterns: int = 8) -> consistency.FamilyDesign:
    rng = np.random.default_rng(seed)
    return consistency.family_designs(VOCAB, LENGTH, n_random_patterns, 0.5, rng)[0]


def planted(design: consistency.FamilyDesign, rng, units=6, shift=2.0) -> np.ndarray:
    """Responses whose mean differs by family (random patterns share one mean), plus noise."""
    family_means = shift * rng.standard_normal((design.n_families + 1, units))  # last: none
    row_families = design.families[design.patterns]  # [n], -1 -> the last mean
    return family_means[row_families] + rng.standard_normal((len(design.tokens), units))


def additive(design: consistency.FamilyDesign, rng, units=6) -> np.ndarray:
    """A response that adds up per-position token effects: no relation between tokens matters."""
    effects = rng.standard_normal((LENGTH, VOCAB, units))  # [L, V, U]
    per_position = effects[np.arange(LENGTH), design.tokens]  # [n, L, U]
    return per_position.sum(axis=1) + 0.1 * rng.standard_normal((len(design.tokens), units))


# ---------------------------------------------------------------------------------------------
# z-scores and their chance


def test_z_scores_of_known_values():
    reference = np.array([[0.0, 5.0], [2.0, 5.0]])  # mean 1, std 1; a constant unit at 5
    responses = np.array([[3.0, 5.0], [1.0, 7.0], [-1.0, 4.0]])
    np.testing.assert_array_equal(
        consistency.z_scores(responses, reference), [[2.0, 0.0], [0.0, np.inf], [-2.0, -np.inf]]
    )


def test_chance_of_extreme_is_the_normal_tail_rate():
    assert consistency.chance_of_extreme(1, 2.0) == pytest.approx(0.0455, abs=1e-4)
    assert consistency.chance_of_extreme(4, 2.0) == pytest.approx(1 - 0.9545**4, abs=1e-3)


def test_empirical_chance_of_extreme_matches_the_normal_one_on_normal_data():
    reference_z = np.random.default_rng(0).standard_normal(200_000)
    assert consistency.empirical_chance_of_extreme(reference_z, 4, 2.0) == pytest.approx(
        consistency.chance_of_extreme(4, 2.0), abs=0.005
    )


# ---------------------------------------------------------------------------------------------
# The design


def test_difference_patterns_of_known_sequences():
    tokens = np.array([[1, 2, 3, 4], [4, 3, 2, 1], [7, 7, 7, 7], [0, 9, 0, 9]])
    # (1,1,1) -> 111; (9,9,9) -> 999; (0,0,0) -> 0; (9,1,9) -> 919
    np.testing.assert_array_equal(consistency.difference_patterns(tokens, 10), [111, 999, 0, 919])


@given(st.lists(st.integers(0, 10**3 - 1), min_size=1, max_size=6, unique=True))
def test_pattern_members_are_the_patterns_every_token_once_per_position(ids):
    ids = np.array(ids)
    members = consistency.pattern_members(ids, 10, 4)  # [P*10, 4]
    np.testing.assert_array_equal(consistency.difference_patterns(members, 10), np.repeat(ids, 10))
    for block in members.reshape(len(ids), 10, 4):
        assert all(sorted(column) == list(range(10)) for column in block.T)


def test_the_seeds_families_are_whole_patterns():
    for members in family_sequences(10, 4).values():
        ids = np.unique(consistency.difference_patterns(members, 10))
        np.testing.assert_array_equal(
            np.sort(consistency.pattern_members(ids, 10, 4), axis=0),
            np.sort(members, axis=0),
        )


def test_token_layouts_of_known_sequences():
    tokens = np.array([[3, 7, 3, 1], [1, 2, 3, 4], [0, 9, 0, 9], [5, 5, 2, 2], [4, 6, 6, 4]])
    np.testing.assert_array_equal(
        token_layouts(tokens),
        [[0, 1, 0, 3], [0, 1, 2, 3], [0, 1, 0, 1], [0, 0, 2, 2], [0, 1, 1, 0]],
    )


def test_family_designs_label_whole_patterns_and_split_each_in_half():
    for design in consistency.family_designs(10, 4, 24, 0.5, np.random.default_rng(1)):
        assert design.tokens.shape == (120 + 240, 4)
        assert len(design.families) == 12 + 24
        np.testing.assert_array_equal(np.bincount(design.families + 1), [24, 1, 1, 1, 9])
        assert np.all(np.bincount(design.patterns[design.discovery]) == 5)
        assert len(np.unique(design.tokens, axis=0)) == len(design.tokens)
        np.testing.assert_array_equal(
            consistency.difference_patterns(design.tokens, 10), design.pattern_ids[design.patterns]
        )


def _shape(ids: np.ndarray, vocab: int, length: int) -> set:
    """The layout shapes (sorted sizes of the groups of equal tokens) of relations `ids`."""
    layouts = token_layouts(consistency.pattern_starts(ids, vocab, length))
    return {tuple(sorted(np.bincount(row, minlength=length))) for row in layouts}


@settings(max_examples=25)
@given(SEEDS, st.sampled_from([(10, 4), (5, 3), (6, 4)]))
def test_stand_ins_share_their_familys_layout_shape_and_no_relation_of_the_seeds(seed, shape):
    vocab, length = shape
    families = family_sequences(vocab, length)
    seed_ids = [np.unique(consistency.difference_patterns(m, vocab)) for m in families.values()]
    stand_ins = consistency.layout_matched(seed_ids, vocab, length, np.random.default_rng(seed))
    taken = np.concatenate(seed_ids)
    for name, ids, matched in zip(families, seed_ids, stand_ins, strict=True):
        assert len(matched) == len(ids)
        assert _shape(matched, vocab, length) == _shape(ids, vocab, length)
        if name == "repeating":  # all equal: the only relation of its shape stands for itself
            np.testing.assert_array_equal(matched, ids)
        else:
            assert not np.isin(matched, taken).any()
    assert len(np.unique(np.concatenate(stand_ins))) == len(taken)  # no stand-in used twice
    alternating = token_layouts(consistency.pattern_starts(stand_ins[3], vocab, length))
    assert len(np.unique(alternating, axis=0)) == 1  # every relation of one other layout


def test_the_alternating_stand_in_is_every_aabb_or_every_abba_both_drawn():
    families = family_sequences(10, 4)
    seed_ids = [np.unique(consistency.difference_patterns(m, 10)) for m in families.values()]
    drawn = set()
    for seed in range(20):
        ids = consistency.layout_matched(seed_ids, 10, 4, np.random.default_rng(seed))[3]
        starts = consistency.pattern_starts(ids, 10, 4)  # [9, 4]: 0 0 d d, or 0 d d 0
        drawn |= {tuple(layout) for layout in token_layouts(starts)}
        np.testing.assert_array_equal(np.sort(starts.max(axis=1)), np.arange(1, 10))  # d = 1..9
    assert drawn == {(0, 0, 2, 2), (0, 1, 1, 0)}


@settings(max_examples=20)
@given(SEEDS)
def test_both_designs_share_the_random_relations_and_their_splits(seed):
    design, matched = consistency.family_designs(10, 4, 24, 0.5, np.random.default_rng(seed))
    np.testing.assert_array_equal(design.pattern_ids[design.families < 0],
                                  matched.pattern_ids[matched.families < 0])  # fmt: skip
    np.testing.assert_array_equal(
        design.pattern_ids[design.families == 2], matched.pattern_ids[matched.families == 2]
    )  # repeating
    held = np.concatenate([design.pattern_ids[design.families >= 0],
                           matched.pattern_ids[matched.families >= 0]])  # fmt: skip
    assert not np.isin(design.pattern_ids[design.families < 0], held).any()
    for pattern in np.intersect1d(design.pattern_ids, matched.pattern_ids):
        split, matched_split = (
            d.discovery[d.patterns == np.flatnonzero(d.pattern_ids == pattern)[0]]
            for d in (design, matched)
        )
        np.testing.assert_array_equal(split, matched_split)
    tokens, (rows, matched_rows) = consistency.shared_inputs(design, matched)
    assert len(np.unique(tokens, axis=0)) == len(tokens) == 360 + 110  # 11 patterns more
    np.testing.assert_array_equal(tokens[rows], design.tokens)
    np.testing.assert_array_equal(tokens[matched_rows], matched.tokens)


def _layout_response(tokens: np.ndarray, units: int = 6) -> np.ndarray:
    """A fixed random vector per layout (which positions hold the same token), nothing else."""
    layouts = token_layouts(tokens)  # [n, L]
    codes = layouts @ tokens.shape[1] ** np.arange(tokens.shape[1])  # [n] one id per layout
    return np.random.default_rng(0).standard_normal((tokens.shape[1] ** tokens.shape[1], units))[
        codes
    ]


@settings(max_examples=30)
@given(SEEDS)
def test_a_response_to_the_layout_alone_decodes_the_seeds_families_as_their_stand_ins(seed):
    """What the layout matching is for: a response that sees only which positions hold the same
    token gives the seed's families and their stand-ins the same held-out recall, family by
    family (ascending and descending tie with the lowest code, as their stand-ins do).
    Stand-ins of other layouts (no matching) would not."""
    rng = np.random.default_rng(seed)
    for design in consistency.family_designs(10, 4, 24, 0.5, rng):
        recall = consistency.decoder_recall(
            _layout_response(design.tokens), design, design.families[None]
        )
        np.testing.assert_array_equal(recall, [[1.0, 0.0, 1.0, 1.0]])


@settings(max_examples=30)
@given(SEEDS)
def test_additive_residuals_remove_an_additive_response_exactly(seed):
    rng = np.random.default_rng(seed)
    design = small_design(seed)
    effects = rng.standard_normal((LENGTH, VOCAB, 4))
    responses = effects[np.arange(LENGTH), design.tokens].sum(axis=1)  # [n, 4]
    residuals, share = consistency.additive_residuals(
        responses, consistency.additive_basis(design.tokens, VOCAB)
    )
    assert np.all(residuals == 0.0)
    assert share == pytest.approx(1.0)


@settings(max_examples=30)
@given(SEEDS)
def test_additive_residuals_keep_an_interaction_orthogonal_to_the_token_effects(seed):
    rng = np.random.default_rng(seed)
    design = small_design(seed)
    repeated = (design.tokens[:, 0] == design.tokens[:, 1]).astype(float)  # an equality relation
    responses = np.stack([repeated, rng.standard_normal(len(repeated))], axis=1)
    residuals, share = consistency.additive_residuals(
        responses, consistency.additive_basis(design.tokens, VOCAB)
    )
    one_hot = (design.tokens[:, :, None] == np.arange(VOCAB)).reshape(len(repeated), -1)
    np.testing.assert_allclose(one_hot.T @ residuals, 0.0, atol=1e-9)
    assert np.linalg.norm(residuals[:, 0]) > 0.5
    assert 0.0 < share < 1.0


def test_additive_residuals_of_constant_responses_are_zero():
    design = small_design(5)
    residuals, share = consistency.additive_residuals(
        np.full((len(design.tokens), 3), -1.7), consistency.additive_basis(design.tokens, VOCAB)
    )
    assert np.all(residuals == 0.0)
    assert share == 0.0


# ---------------------------------------------------------------------------------------------
# Statistics under many labelings: brute-force twins


@settings(max_examples=30)
@given(SEEDS)
def test_family_agreement_is_the_mean_pairwise_cosine(seed):
    rng = np.random.default_rng(seed)
    design = small_design(seed)
    responses = rng.standard_normal((len(design.tokens), 4))
    labelings = design.labelings(rng, 3)
    directions = consistency.centered_directions(responses)
    cosines = directions @ directions.T
    for labeling, observed in zip(
        labelings, consistency.family_agreement(responses, design, labelings), strict=True
    ):
        rows = labeling[design.patterns]
        expected = [
            cosines[np.ix_(rows == f, rows == f)][~np.eye(np.sum(rows == f), dtype=bool)].mean()
            for f in range(design.n_families)
        ]
        np.testing.assert_allclose(observed, expected, atol=1e-12)


@settings(max_examples=30)
@given(SEEDS)
def test_family_eta_squared_is_eta_squared_over_the_family_members(seed):
    rng = np.random.default_rng(seed)
    design = small_design(seed)
    responses = rng.standard_normal((len(design.tokens), 3)) + 5.0
    labelings = design.labelings(rng, 3)
    observed = consistency.family_eta_squared(responses, design, labelings)
    for labeling, row in zip(labelings, observed, strict=True):
        rows = labeling[design.patterns]
        np.testing.assert_allclose(
            row, eta_squared(responses[rows >= 0], rows[rows >= 0]), atol=1e-10
        )


@settings(max_examples=30)
@given(SEEDS)
def test_decoder_accuracy_equals_a_brute_force_nearest_centroid(seed):
    rng = np.random.default_rng(seed)
    design = small_design(seed)
    responses = rng.standard_normal((len(design.tokens), 3))
    labelings = design.labelings(rng, 3)
    observed = consistency.decoder_accuracy(responses, design, labelings)
    for labeling, accuracy in zip(labelings, observed, strict=True):
        rows = labeling[design.patterns]
        train = design.discovery & (rows >= 0)
        test = ~design.discovery & (rows >= 0)
        centroids = np.stack(
            [responses[train & (rows == f)].mean(axis=0) for f in range(design.n_families)]
        )
        distances = np.linalg.norm(responses[test][:, None] - centroids[None], axis=-1)
        predicted, truth = distances.argmin(axis=1), rows[test]
        recalls = [np.mean(predicted[truth == f] == f) for f in range(design.n_families)]
        assert accuracy == pytest.approx(np.mean(recalls))


# ---------------------------------------------------------------------------------------------
# Planted effects, no effect, an additive response, constants, invariances


def test_planted_families_are_found_by_both_tests():
    rng = np.random.default_rng(2)
    design = consistency.family_designs(10, 4, 24, 0.5, rng)[0]
    responses = planted(design, rng)
    labelings = design.labelings(rng, 99)
    agreement = consistency.against_null(
        consistency.family_agreement(responses, design, labelings).mean(axis=1)
    )
    decoder = consistency.against_null(consistency.decoder_accuracy(responses, design, labelings))
    assert agreement.p_values == pytest.approx(0.01)
    assert decoder.observed > 0.9
    assert decoder.p_values == pytest.approx(0.01)


@pytest.mark.parametrize("make_responses", ["gaussian", "additive", "residualized gaussian"])
def test_no_relation_effect_gives_calibrated_p_values(make_responses):
    """Neither i.i.d. noise (raw or with the token effects removed) nor a response that only adds
    per-position token effects makes the seed's families special: the p-values of both tests are
    not too often small."""
    rng = np.random.default_rng(3)
    small = []
    for _ in range(150):
        design = small_design(int(rng.integers(2**31)))
        if make_responses == "additive":
            responses = additive(design, rng)
        else:
            responses = rng.standard_normal((len(design.tokens), 6))
        if make_responses == "residualized gaussian":
            responses, _ = consistency.additive_residuals(
                responses, consistency.additive_basis(design.tokens, VOCAB)
            )
        labelings = design.labelings(rng, 39)
        agreement = consistency.family_agreement(responses, design, labelings).mean(axis=1)
        decoder = consistency.decoder_accuracy(responses, design, labelings)
        small.append(
            [consistency.against_null(values).p_values <= 0.05 for values in (agreement, decoder)]
        )
    assert np.all(np.mean(small, axis=0) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 150))


def test_constant_responses_show_nothing():
    rng = np.random.default_rng(4)
    design = small_design(4)
    responses = np.full((len(design.tokens), 5), 0.3)
    labelings = design.labelings(rng, 19)
    agreement = consistency.against_null(
        consistency.family_agreement(responses, design, labelings).mean(axis=1)
    )
    decoder = consistency.against_null(consistency.decoder_accuracy(responses, design, labelings))
    eta2 = consistency.against_null(consistency.family_eta_squared(responses, design, labelings))
    assert agreement.observed == 0.0
    assert agreement.p_values == 1.0
    assert decoder.observed == pytest.approx(1 / design.n_families)
    assert decoder.p_values == 1.0
    assert np.all(eta2.observed == 0.0)
    assert np.all(eta2.p_values == 1.0)


@settings(max_examples=25)
@given(SEEDS)
def test_agreement_and_decoder_are_invariant_under_rotation_and_shift(seed):
    rng = np.random.default_rng(seed)
    design = small_design(seed)
    responses = planted(design, rng, units=5, shift=0.5)
    moved = 3.0 * responses @ random_rotation(5, rng) - 4.0
    labelings = design.labelings(rng, 9)
    for statistic in (consistency.family_agreement, consistency.decoder_accuracy):
        np.testing.assert_allclose(
            statistic(responses, design, labelings), statistic(moved, design, labelings),
            atol=1e-9,
        )  # fmt: skip
