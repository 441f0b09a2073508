"""Tests of interp.persistence and claim 6's measurements: planted effects, exact enumeration of
the overlap null and its phi, invariances and calibration of the rank-agreement test, held-out
designs, training twins; the claim's training is the notebook's, its controlled design holds the
trained model out and covers the trained positions, its evidence is the margin rule's."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mechclaims.interp import inputs, persistence
from mechclaims.interp.claims import persistence as claim6
from mechclaims.interp.inputs import balanced_sequences, family_sequences
from mechclaims.interp.selectivity import selectivity_test
from mechclaims.interp.sources import source_for
from mechclaims.interp.stats import eta_squared
from mechclaims.model.config import TransformerConfig
from mechclaims.model.tasks import PATTERN_FAMILIES, notebook_sequences
from mechclaims.model.train import TrainSettings, train_epochs
from mechclaims.model.transformer import Transformer

SEEDS = st.integers(0, 2**32 - 1)


def _planted_units(rng, n=60, vocab=5, length=4):
    """Tokens [n, T] and acts [n, T, 5]: token only, position only, both, noise, constant."""
    tokens = balanced_sequences(rng, n, vocab, length)
    positions = np.broadcast_to(np.arange(length), tokens.shape)
    noise = rng.standard_normal((5, *tokens.shape))
    acts = np.stack(
        [
            tokens + 0.1 * noise[0],
            positions + 0.1 * noise[1],
            tokens + positions + 0.1 * noise[2],
            noise[3],
            np.full(tokens.shape, 2.5),
        ],
        axis=-1,
    )  # [n,T,5]
    return acts, tokens


# ---------------------------------------------------------------------------------------------
# The notebook's ANOVA rule


def test_notebook_selectivity_finds_the_planted_factors():
    acts, tokens = _planted_units(np.random.default_rng(0))
    result = persistence.notebook_selectivity(acts, tokens, alpha=0.05)
    np.testing.assert_array_equal(result.token_selective, [True, False, True, False, False])
    np.testing.assert_array_equal(result.position_selective, [False, True, True, False, False])
    np.testing.assert_array_equal(result.both_selective, [False, False, True, False, False])
    assert result.token_eta2[4] == 0.0  # the constant unit
    assert result.position_eta2[4] == 0.0
    assert result.token_eta2[0] > 0.9
    assert result.position_eta2[1] > 0.9


def test_notebook_selectivity_uses_scipy_anova_with_bonferroni_over_the_units():
    """As the notebook's analyze_selectivity: each test at alpha / (units given), per factor."""
    rng = np.random.default_rng(1)
    tokens = balanced_sequences(rng, 30, 3, 4)
    # a weak token effect: its p-value lands between alpha / U and alpha for some units
    acts = 0.15 * tokens[..., None] + rng.standard_normal((*tokens.shape, 40))  # [n,T,40]
    result = persistence.notebook_selectivity(acts, tokens, alpha=0.05)
    rows = acts.reshape(-1, 40)
    groups = [rows[tokens.reshape(-1) == token] for token in range(3)]
    p_scipy = scipy.stats.f_oneway(*groups).pvalue  # [40]
    np.testing.assert_array_equal(result.token_selective, p_scipy < 0.05 / 40)
    assert np.any((p_scipy < 0.05) & ~result.token_selective)  # the correction bites


def _selectivity(token_eta2, selective) -> persistence.NotebookSelectivity:
    eta2, selective = np.asarray(token_eta2, float), np.asarray(selective, bool)
    return persistence.NotebookSelectivity(eta2, eta2, selective, selective)


def test_tracked_persistence_follows_the_notebooks_top_units_and_maintained_rule():
    """The top 2 significant units by initial eta² (not the insignificant unit 0, though its
    eta² is largest); maintained: still significant, eta² > 0.05 and > half the initial."""
    initial = _selectivity([0.9, 0.5, 0.4, 0.3], [False, True, True, True])
    trained = _selectivity([0.9, 0.3, 0.1, 0.9], [True, True, False, True])
    tracked = persistence.tracked_persistence(initial, trained, "token", top=2, min_eta2=0.05,
                                              min_ratio=0.5)  # fmt: skip
    np.testing.assert_array_equal(tracked.units, [1, 2])
    np.testing.assert_allclose(tracked.final_eta2, [0.3, 0.0])  # unit 2 lost significance
    np.testing.assert_array_equal(tracked.maintained, [True, False])  # 0.3 > 0.25; 0 fails
    assert tracked.persistence == 0.5
    below_half = _selectivity([0.9, 0.2, 0.1, 0.9], [True, True, True, True])
    assert persistence.tracked_persistence(initial, below_half, "token", 2, 0.05,
                                           0.5).persistence == 0.0  # fmt: skip
    nothing = _selectivity([0.9, 0.5, 0.4, 0.3], [False] * 4)
    assert persistence.tracked_persistence(nothing, trained, "token", 2, 0.05,
                                           0.5).persistence is None  # fmt: skip


def test_notebook_selectivity_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="acts must be"):
        persistence.notebook_selectivity(np.zeros((4, 3, 2)), np.zeros((4, 2), int), 0.05)


def test_eta2_by_factor_of_a_token_unit_on_a_balanced_design():
    """A unit equal to its token: the token explains all of it, the position nothing (every
    position holds every token equally often)."""
    tokens = balanced_sequences(np.random.default_rng(7), 40, 4, 5)
    eta2 = persistence.eta2_by_factor(tokens[..., None].astype(float), tokens)  # [2,1]
    np.testing.assert_allclose(eta2, [[1.0], [0.0]], atol=1e-12)


@given(SEEDS)
def test_anova_by_factor_gives_the_eta2_and_p_values_of_their_own_computations(seed):
    """eta² from F equals SS_between / SS_total (stats.eta_squared); p equals scipy's f_oneway;
    the constant unit has eta² 0 and p 1; on random tokens, not a balanced design."""
    rng = np.random.default_rng(seed)
    acts, _ = _planted_units(rng)
    tokens = rng.integers(0, 5, acts.shape[:2])  # [n,T]
    anova = persistence.anova_by_factor(acts, tokens)
    rows = acts.reshape(-1, acts.shape[-1])
    labels = (tokens.reshape(-1), np.tile(np.arange(acts.shape[1]), acts.shape[0]))
    for factor, by in enumerate(labels):
        np.testing.assert_allclose(anova.eta2[factor], eta_squared(rows, by), atol=1e-12)
        groups = [rows[by == value, :4] for value in np.unique(by)]
        np.testing.assert_allclose(anova.p_value[factor, :4],
                                   scipy.stats.f_oneway(*groups).pvalue, rtol=1e-9)  # fmt: skip
    np.testing.assert_array_equal(anova.eta2[:, 4], [0.0, 0.0])
    np.testing.assert_array_equal(anova.p_value[:, 4], [1.0, 1.0])


def test_anova_eta2_of_units_constant_within_their_groups_is_one():
    tokens = balanced_sequences(np.random.default_rng(8), 20, 4, 5)
    positions = np.broadcast_to(np.arange(5), tokens.shape)
    acts = np.stack([tokens, positions], axis=-1).astype(float)  # [n,T,2]
    np.testing.assert_array_equal(persistence.anova_by_factor(acts, tokens).eta2.diagonal(),
                                  [1.0, 1.0])  # fmt: skip


def test_selective_by_factor_needs_a_discovery_across_both_factors_and_the_effect_size():
    """BH over the 2 x U p-values at once: p = 0.03 is discovered among small ones (rank 4 of
    4: 0.03 <= 0.05) but not beside large ones (rank 2: 0.03 > 0.05 x 2/4), which a BH per factor
    would discover; an effect below min_eta2 is not selective."""
    anova = persistence.FactorAnova(eta2=np.array([[0.5, 0.5], [0.5, 0.01]]),
                                    p_value=np.array([[0.001, 0.03], [0.002, 0.001]]))  # fmt: skip
    np.testing.assert_array_equal(persistence.selective_by_factor(anova, 0.05, 0.06),
                                  [[True, True], [True, False]])  # fmt: skip
    beside_large = persistence.FactorAnova(anova.eta2, np.array([[0.001, 0.03], [0.9, 0.9]]))
    np.testing.assert_array_equal(persistence.selective_by_factor(beside_large, 0.05, 0.06),
                                  [[True, False], [False, False]])  # fmt: skip


@given(SEEDS)
def test_selective_by_factor_splits_claim_3s_selective_units(seed):
    rng = np.random.default_rng(seed)
    acts, tokens = _planted_units(rng)
    test = selectivity_test(acts, tokens, rng, 19)
    by_factor = test.selective_by_factor(0.1, 0.06)  # [2,U]
    np.testing.assert_array_equal(by_factor.any(axis=0), test.selective(0.1, 0.06))
    assert not by_factor[:, 4].any()  # the constant unit


# ---------------------------------------------------------------------------------------------
# Overlap against random matching


def test_overlap_of_identical_halves_is_one_subset_in_252():
    selective = np.arange(10) < 5
    result = persistence.overlap_test(selective, selective)
    assert (result.shared, result.persistence, result.random_persistence) == (5, 1.0, 0.5)
    assert result.p_value == pytest.approx(1 / 252)  # C(10, 5) subsets, one shares all 5


@pytest.mark.parametrize(
    ("initial", "trained"),
    [(np.ones(8, bool), np.arange(8) < 3), (np.arange(8) < 3, np.ones(8, bool))],
)
def test_overlap_with_every_unit_selective_says_nothing(initial, trained):
    """The trap: when a set holds every unit, the overlap is fixed by the sizes."""
    assert persistence.overlap_test(initial, trained).p_value == 1.0


def test_overlap_with_nothing_selective_at_init_has_persistence_zero():
    result = persistence.overlap_test(np.zeros(6, bool), np.arange(6) < 2)
    assert (result.persistence, result.p_value) == (0.0, 1.0)


@given(
    hnp.arrays(bool, st.integers(2, 40)).flatmap(
        lambda initial: st.tuples(st.just(initial), hnp.arrays(bool, initial.shape))
    )
)
def test_overlap_phi_is_the_correlation_of_the_memberships(sets):
    """phi from the four counts = Pearson's r of the two bool vectors; None when either holds
    every unit or none (r undefined: membership that does not vary)."""
    initial, trained = sets
    phi = persistence.overlap_test(initial, trained).phi
    if min(initial.sum(), (~initial).sum(), trained.sum(), (~trained).sum()) == 0:
        assert phi is None
    else:
        assert phi == pytest.approx(np.corrcoef(initial, trained)[0, 1], abs=1e-12)


def test_overlap_phi_of_the_same_set_is_one_and_of_its_complement_minus_one():
    selective = np.arange(10) < 4
    assert persistence.overlap_test(selective, selective).phi == pytest.approx(1.0)
    assert persistence.overlap_test(selective, ~selective).phi == pytest.approx(-1.0)


@given(
    hnp.arrays(bool, st.integers(1, 8)).flatmap(
        lambda initial: st.tuples(st.just(initial), hnp.arrays(bool, initial.shape))
    )
)
def test_overlap_p_value_is_the_share_of_random_subsets_overlapping_at_least_as_much(sets):
    """Exact enumeration: every subset of the units of the size of S1."""
    initial, trained = sets
    units, size = initial.size, int(trained.sum())
    shared = int(np.count_nonzero(initial & trained))
    overlaps = [
        initial[list(subset)].sum() for subset in itertools.combinations(range(units), size)
    ]
    expected = np.mean(np.array(overlaps) >= shared)
    assert persistence.overlap_test(initial, trained).p_value == pytest.approx(expected)


@given(SEEDS)
def test_overlap_does_not_depend_on_the_order_of_units(seed):
    rng = np.random.default_rng(seed)
    initial, trained = rng.random((2, 30)) < 0.4
    order = rng.permutation(30)
    assert persistence.overlap_test(initial, trained) == persistence.overlap_test(
        initial[order], trained[order]
    )


# ---------------------------------------------------------------------------------------------
# Rank agreement against shuffled unit identities


def test_rank_agreement_of_a_monotone_transform_is_perfect():
    rng = np.random.default_rng(2)
    values = rng.random(50)
    result = persistence.rank_agreement(values, np.exp(3 * values), rng, 99)
    assert result.correlation == pytest.approx(1.0)
    assert result.p_value == pytest.approx(1 / 100)
    assert result.null_high < 0.5
    assert result.null_mean == pytest.approx(result.null.mean())
    assert abs(result.null_mean) < 0.05  # shuffling destroys the agreement: about 0


def test_rank_agreement_of_a_constant_statistic_is_zero_with_p_one():
    rng = np.random.default_rng(3)
    result = persistence.rank_agreement(np.zeros(20), rng.random(20), rng, 49)
    assert (result.correlation, result.p_value) == (0.0, 1.0)
    assert np.all(result.null == 0.0)


@given(SEEDS)
def test_rank_agreement_finds_a_planted_agreement(seed):
    rng = np.random.default_rng(seed)
    initial = rng.standard_normal(60)
    trained = initial + 0.5 * rng.standard_normal(60)
    assert persistence.rank_agreement(initial, trained, rng, 99).p_value <= 0.05


@given(SEEDS)
def test_rank_agreement_matches_scipy_spearman(seed):
    rng = np.random.default_rng(seed)
    initial, trained = rng.integers(0, 5, (2, 25)).astype(float)  # ties included
    expected = scipy.stats.spearmanr(initial, trained).statistic
    result = persistence.rank_agreement(initial, trained, rng, 9)
    assert result.correlation == pytest.approx(0.0 if np.isnan(expected) else expected, abs=1e-12)


def test_rank_agreement_is_calibrated_without_agreement():
    """Independent statistics: p <= 0.05 on about 5% of draws, not more."""
    rng = np.random.default_rng(4)
    p_values = [
        persistence.rank_agreement(rng.random(40), rng.random(40), rng, 99).p_value
        for _ in range(400)
    ]
    rejections = np.count_nonzero(np.array(p_values) <= 0.05)
    assert scipy.stats.binomtest(rejections, 400, 0.05, alternative="greater").pvalue > 0.001


# ---------------------------------------------------------------------------------------------
# Held-out designs


@given(SEEDS)
def test_heldout_design_is_balanced_and_disjoint(seed):
    rng = np.random.default_rng(seed)
    # 4 of the 16 sequences: a clash is likely, and complementary pairs (balanced) stay free
    design = balanced_sequences(rng, 4, 2, 4)
    fresh = persistence.heldout_balanced_sequences(design, rng, 2, 2)
    assert not {tuple(row) for row in fresh} & {tuple(row) for row in design}
    for position in range(4):
        np.testing.assert_array_equal(np.bincount(fresh[:, position], minlength=2), [1, 1])


def test_heldout_design_gives_up_when_no_disjoint_design_exists():
    every_sequence = np.array(list(itertools.product(range(2), repeat=3)))
    with pytest.raises(ValueError, match="disjoint"):
        persistence.heldout_balanced_sequences(every_sequence, np.random.default_rng(5), 2, 2)


# ---------------------------------------------------------------------------------------------
# Training and family accuracy


class _NextIsPlusOne:
    """A stand-in model whose logits always predict token + 1 (mod V)."""

    vocab = 10

    def __call__(self, tokens):
        return np.eye(self.vocab)[(tokens + 1) % self.vocab]  # [n,T] -> [n,T,V]


def test_family_accuracy_of_a_plus_one_predictor():
    families = family_sequences(10, 9)
    accuracy = persistence.family_accuracy(_NextIsPlusOne(), families)
    assert accuracy["ascending"] == 1.0
    assert accuracy["repeating"] == 0.0
    assert accuracy["descending"] == 0.0


def test_train_from_init_keeps_the_untrained_twin():
    model = Transformer(TransformerConfig.preset("tiny-mha"), seed=0)
    before = {name: value.copy() for name, value in model.params.items()}
    settings = TrainSettings(batch_size=4, lr=1e-2)
    data = notebook_sequences(np.random.default_rng(0), 6)  # [6,8]: batches of 4 and 2
    pair = persistence.train_from_init(model, data, 2, settings, family_sequences(10, 8))
    assert pair.initial is model
    for name, value in before.items():
        np.testing.assert_array_equal(model.params[name], value)
    assert any(not np.array_equal(pair.trained.params[name], before[name]) for name in before)
    assert pair.losses.shape == (4,)
    assert set(pair.trained_accuracy) == set(family_sequences(10, 8))
    assert all(0.0 <= value <= 1.0 for value in pair.initial_accuracy.values())


def test_rank_correlation_is_the_observed_rank_agreement():
    rng = np.random.default_rng(6)
    initial, trained = rng.random((2, 30))
    expected = persistence.rank_agreement(initial, trained, rng, 9).correlation
    assert persistence.rank_correlation(initial, trained) == expected
    assert persistence.rank_correlation(np.ones(30), trained) == 0.0


# ---------------------------------------------------------------------------------------------
# Claim 6's measurements

SMALL = TransformerConfig.preset("gpt2-style").replace(d_model=16, n_heads=2, d_mlp=32)
QUICK = {"train_samples": 10, "train_epochs": 2, "train_batch_size": 4, "train_lr": 0.01,
         "family_samples": 5, "n_sequences": 20, "n_permutations": 19, "fdr": 0.05,
         "min_eta2": 0.06, "margin_shuffled_token": 0.5,
         "margin_shuffled_position": 0.5}  # fmt: skip


def test_the_claim_trains_as_the_notebook_did():
    """Its data set (notebook_sequences of the seed's draw, as the panel's tokens) and Adam at a
    constant rate without decay or clipping (train_epochs with those settings is Adam written
    out: tests/model/test_training.py); the trainer's defaults would give other weights."""
    source = source_for(SMALL.replace(vocab_size=1000))
    pair = claim6.training(source, 3, QUICK)
    data = source.tokens(notebook_sequences(np.random.default_rng([3, 6, 2]), 10))
    notebook = TrainSettings(batch_size=4, lr=0.01, weight_decay=0.0, clip=0.0, warmup=0,
                             schedule="constant")  # fmt: skip
    expected = Transformer(source.cfg, seed=3)
    train_epochs(expected, data, 2, notebook)
    for name, value in expected.params.items():
        np.testing.assert_array_equal(pair.trained.params[name], value)
    assert pair.losses.shape == (6,)  # 2 epochs of batches of 4, 4 and 2
    assert set(pair.trained_accuracy) == set(PATTERN_FAMILIES)


def test_the_precondition_asks_for_the_structured_families_alone():
    measured = claim6.measure(source_for(SMALL), 0, QUICK | {
        "seed_samples": 30, "track_samples": 30, "seed_alpha": 0.01, "track_top": 2,
        "maintained_eta2": 0.05, "maintained_ratio": 0.5})  # fmt: skip
    trained = {family: measured["seed_protocol"][f"{family}_accuracy_trained"]
               for family in PATTERN_FAMILIES}  # fmt: skip
    assert measured["structured_accuracy"] == pytest.approx(
        np.mean([trained[family] for family in claim6.STRUCTURED])
    )
    assert measured["random_accuracy"] == trained["random"]


def test_the_controlled_design_holds_the_trained_model_out_over_the_trained_positions(
    monkeypatch,
):
    """A random init against itself (its own initialization): on one design its eta² ranks would
    agree perfectly; on two disjoint ones they agree as the retest does, not perfectly. The
    designs cover the 7 positions the model reads in training, not the notebook's 8."""
    lengths = []
    balanced = inputs.balanced_sequences
    monkeypatch.setattr(claim6, "balanced_sequences",
                        lambda rng, n, vocab, length: lengths.append(length)
                        or balanced(rng, n, vocab, length))  # fmt: skip
    result = claim6.against_init(source_for(SMALL), 0, QUICK)
    assert lengths == [claim6.TRAINED_POSITIONS] == [claim6.NOTEBOOK_LENGTH - 1]
    for factor in claim6.FACTORS:
        correlation = result[f"{factor}_rank_correlation"]
        assert correlation == result[f"{factor}_retest_correlation"]
        assert 0.5 < correlation < 1.0 - 1e-6  # one design: 1 up to rounding
        assert abs(result[f"{factor}_shuffled_rank_correlation"]) < 0.2


def test_the_controlled_evidence_is_each_factors_rank_correlation_beyond_shuffled_neurons():
    results = [
        {"token_rank_correlation": 0.8, "token_shuffled_rank_correlation": 0.1,
         "position_rank_correlation": 0.3, "position_shuffled_rank_correlation": -0.1},
        {"token_rank_correlation": 0.6, "token_shuffled_rank_correlation": 0.0,
         "position_rank_correlation": 0.5, "position_shuffled_rank_correlation": 0.2},
    ]  # fmt: skip
    differences = claim6.controlled_evidence(results)["differences"]
    np.testing.assert_allclose(differences["shuffled_token"], [0.7, 0.6])
    np.testing.assert_allclose(differences["shuffled_position"], [0.4, 0.3])
    assert set(differences) == {f"shuffled_{factor}" for factor in claim6.FACTORS}
