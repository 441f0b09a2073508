"""The architecture sweep's design and statistics: the factorial cells and their configs, least
squares main effects on treatment-coded indicators fitted per seed, t-intervals across whole
seeds at a family-wise level, words against the claim's margin on both sides (a planted effect
beyond the margin raises, a tie does not, a measured tie is negligible), the family's
simultaneous coverage (simulated, with a pair of factors chosen by the data), the paired
difference network - null, the interaction of the two largest factors, and the per-architecture
margin rule under Benjamini-Hochberg (its false discovery rate simulated)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from mechclaims.fixtures.registry import load_registry
from mechclaims.interp.claims.sweep import (
    STATISTICS,
    WORDS,
    Effects,
    architecture,
    beyond_null_by_margin,
    cells,
    design,
    factor_terms,
    family_size,
    fitted_effects,
    interaction,
    largest_factors,
    main_effects,
    margin_p_values,
    paired_values,
    per_seed_coefficients,
    term_confidence,
)
from mechclaims.interp.verdicts import margin_verdict
from mechclaims.model.config import TransformerConfig

FACTORS = {"norm": ["pre", "post"], "init": ["gpt2", "pytorch", "seed"], "causal": [True, False]}
TERMS = ("norm", "init-pytorch", "init-seed", "causal")
ARCHITECTURES = list(cells(FACTORS).values())
MARGIN = 0.1
REGISTRY = Path(__file__).resolve().parents[2] / "claims" / "registry.toml"


def planted_values(
    effects: dict, seeds: int, noise: float, rng, swing: float = 0.0, both: float = 0.0
) -> np.ndarray:
    """values [seeds, A]: each architecture's planted term effects (and `both` where norm is
    post and causal False: an interaction), Gaussian noise per cell, and seed-level swings
    (correlated across a seed's architectures): a shift of every architecture and a swing of
    the norm effect, each of SD `swing`."""
    terms = factor_terms(FACTORS)
    truth = np.array([
        sum(effects[term] for term, field, level in terms if cell[field] == level)
        + both * (cell["norm"] == "post" and cell["causal"] is False)
        for cell in ARCHITECTURES
    ])  # fmt: skip
    post = np.array([cell["norm"] == "post" for cell in ARCHITECTURES])
    shift = rng.normal(0.0, swing, (seeds, 1)) + rng.normal(0.0, swing, (seeds, 1)) * post
    return truth + shift + rng.normal(0.0, noise, (seeds, len(ARCHITECTURES)))


def test_cells_are_every_combination_named_by_their_levels():
    grid = cells(FACTORS)
    assert len(grid) == 2 * 3 * 2
    assert grid["norm=post,init=seed,causal=False"] == {"norm": "post", "init": "seed",
                                                         "causal": False}  # fmt: skip


def test_architecture_has_one_head_and_a_block_four_times_as_wide():
    base = TransformerConfig.preset("gpt2-style")  # 4 heads: parameter-free attention needs 1
    cfg = architecture(base, {"attention": "parameter-free", "d_model": 16, "norm": "post"})
    assert (cfg.n_heads, cfg.d_model, cfg.d_mlp, cfg.norm) == (1, 16, 64, "post")
    assert (cfg.n_layers, cfg.vocab_size, cfg.final_ln) == (2, 10, True)  # the base's
    assert architecture(base, {"act_fn": "relu"}).d_mlp == 4 * base.d_model


def test_terms_are_treatment_coded_against_each_factors_first_level():
    assert tuple(term for term, _, _ in factor_terms(FACTORS)) == TERMS
    coded = design(ARCHITECTURES, FACTORS)
    assert coded.matrix.shape == (12, 5)
    assert coded.factor_of == ("norm", "init", "init", "causal")
    first = coded.matrix[0]  # norm=pre, init=gpt2, causal=True: every reference level
    assert first.tolist() == [1, 0, 0, 0, 0]


def test_a_design_that_cannot_separate_its_terms_is_refused():
    kept = [cell for cell in ARCHITECTURES if cell["init"] != "seed"]
    with pytest.raises(ValueError, match="cannot separate the terms"):
        design(kept, FACTORS)


def test_the_family_is_every_term_the_sweep_can_name():
    """Per statistic the 4 main-effect terms and the 2 interaction terms of init with another
    factor (the pair with the most); the registry's factors give 3 x (7 + 2) = 27."""
    assert family_size(FACTORS) == len(STATISTICS) * (4 + 2) == 18
    assert family_size({"a": [1, 2], "b": [1, 2]}, statistics=1) == 3
    factors = load_registry(REGISTRY)["claims"]["sweep"]["factors"]
    assert family_size(factors) == 3 * (7 + 2)
    assert term_confidence(0.05, 27) == pytest.approx(1 - 0.05 / 27)
    with pytest.raises(ValueError, match="need 0 < family_error < 1"):
        term_confidence(0.0, 27)


def test_planted_effects_get_their_words_against_the_margin():
    """Beyond +margin raises, beyond -margin lowers; a tie (0) and an effect smaller than the
    margin, measured precisely, are negligible; the same tie measured loosely is unresolved."""
    planted = {"norm": 0.5, "init-pytorch": 0.0, "init-seed": -0.3, "causal": 0.04}
    rng = np.random.default_rng(0)
    effects = main_effects(planted_values(planted, 8, 0.01, rng), ARCHITECTURES, FACTORS, MARGIN,
                           term_confidence(0.05, 18))  # fmt: skip
    assert effects.terms == TERMS
    np.testing.assert_allclose(effects.value, list(planted.values()), atol=0.02)
    assert [effects.word(term) for term in TERMS] == ["raises", "negligible", "lowers",
                                                      "negligible"]  # fmt: skip
    loose = main_effects(planted_values(planted, 5, 0.3, rng), ARCHITECTURES, FACTORS, MARGIN,
                         term_confidence(0.05, 18))  # fmt: skip
    assert loose.word("init-pytorch") == "unresolved"


def test_words_are_the_margin_rule_on_both_sides_of_each_interval():
    effects = Effects(("a", "b", "c", "d"), ("a", "b", "c", "d"), np.zeros(4),
                      np.array([0.15, -0.5, -0.05, -0.05]), np.array([0.4, -0.12, 0.05, 0.2]),
                      ("raises", "lowers", "negligible", "unresolved"), 0.1, 0.95)  # fmt: skip
    assert [effects.word(term) for term in "abcd"] == list(WORDS)
    rng = np.random.default_rng(9)
    values = planted_values({"norm": 0.3, "init-pytorch": -0.3, "init-seed": 0.0,
                             "causal": 0.1}, 5, 0.03, rng)  # fmt: skip
    effects = main_effects(values, ARCHITECTURES, FACTORS, MARGIN, 0.9)  # a non-default level
    assert effects.words == WORDS  # each word once, at the margin's value for causal
    for term, low, high in zip(effects.terms, effects.low, effects.high, strict=True):
        if low > MARGIN or high < -MARGIN:
            expected = "raises" if low > MARGIN else "lowers"
        else:
            expected = "negligible" if low > -MARGIN and high < MARGIN else "unresolved"
        assert effects.word(term) == expected


def test_the_coefficients_are_linear_so_per_seed_fits_average_to_the_fit_of_the_means():
    """Computed three ways: the mean of per-seed least squares, least squares of the seeds'
    mean, and (a two-level factor in a balanced design) the mean of its second level minus
    that of its first over every architecture and seed."""
    rng = np.random.default_rng(1)
    values = planted_values({"norm": 0.2, "init-pytorch": 0.1, "init-seed": 0.4,
                             "causal": -0.2}, 5, 0.3, rng)  # fmt: skip
    matrix = design(ARCHITECTURES, FACTORS).matrix
    effects = main_effects(values, ARCHITECTURES, FACTORS, MARGIN, 0.95)
    of_means = np.linalg.lstsq(matrix, values.mean(axis=0), rcond=None)[0][1:]
    np.testing.assert_allclose(effects.value, of_means, atol=1e-12)
    np.testing.assert_allclose(per_seed_coefficients(values, matrix).mean(axis=0), of_means,
                               atol=1e-12)  # fmt: skip
    post = np.array([cell["norm"] == "post" for cell in ARCHITECTURES])
    assert effects.value[0] == pytest.approx(values[:, post].mean() - values[:, ~post].mean())


def test_the_interval_is_students_t_across_whole_seeds():
    """Computed two ways: each term's interval is the t-interval of its per-seed coefficients
    (each seed's own least squares, by lstsq). A seed-level swing of the norm effect is in the
    interval; an analysis that took the (architecture, seed) cells as replicates would not see
    it (its spread is that of the cells' noise, 0.01)."""
    rng = np.random.default_rng(2)
    values = planted_values({"norm": 0.3, "init-pytorch": 0.0, "init-seed": 0.0,
                             "causal": 0.0}, 6, 0.01, rng, swing=0.2)  # fmt: skip
    matrix = design(ARCHITECTURES, FACTORS).matrix
    effects = fitted_effects(values, matrix, TERMS, TERMS, MARGIN, 0.99)
    per_seed = np.linalg.lstsq(matrix, values.T, rcond=None)[0][1:].T  # [seeds, T]
    low, high = scipy.stats.t.interval(0.99, 5, loc=per_seed.mean(axis=0),
                                       scale=scipy.stats.sem(per_seed, axis=0))  # fmt: skip
    np.testing.assert_allclose(effects.low, low, atol=1e-12)
    np.testing.assert_allclose(effects.high, high, atol=1e-12)
    assert effects.high[0] - effects.low[0] > 0.2  # the swing (SD 0.2) widens the norm term
    assert effects.high[1] - effects.low[1] < 0.1  # and no other


def simulated_family(rng, planted: dict, both: float, seeds: int, level: float):
    """One simulated sweep of 3 statistics (the same truth, independent noise and seed-level
    swings), each with its main effects and the interaction of its two largest factors, as the
    sweep fits them: [(Effects of main effects, Effects of the interaction, true interaction)]."""
    fitted = []
    for _ in STATISTICS:
        values = planted_values(planted, seeds, 0.2, rng, swing=0.1, both=both)
        effects = main_effects(values, ARCHITECTURES, FACTORS, MARGIN, level)
        pair = largest_factors(effects)
        joint = interaction(values, ARCHITECTURES, FACTORS, pair, MARGIN, level)
        truth = both if set(pair) == {"norm", "causal"} else 0.0
        fitted.append((effects, joint, truth))
    return fitted


def test_the_familys_intervals_cover_every_true_effect_at_once_at_the_stated_level():
    """Simulated sweeps on the registry's 5 seeds: the intervals of every main effect and
    interaction term of 3 statistics (18 terms at most) all cover their true effects in at
    least 95% of sweeps (Bonferroni's bound; each at 95% they would all cover in far fewer).
    When they do, every word is right; a planted effect beyond the margin is raised, a tie is
    not, nor (beyond the term's share of the family's error rate) an effect at the margin."""
    rng = np.random.default_rng(3)
    planted = {"norm": 1.0, "init-pytorch": 0.0, "init-seed": MARGIN, "causal": 0.3}
    family_error, runs = 0.05, 600
    level = term_confidence(family_error, family_size(FACTORS))
    covered, raised = 0, np.zeros(len(TERMS))
    for _ in range(runs):
        family = simulated_family(rng, planted, 0.0, 5, level)
        covered += all(
            np.all((main.low < list(planted.values())) & (list(planted.values()) < main.high))
            and np.all((joint.low < truth) & (truth < joint.high))
            for main, joint, truth in family
        )
        main = family[0][0]
        raised += [main.word(term) == "raises" for term in TERMS]
    assert covered >= scipy.stats.binom.ppf(0.001, runs, 0.95)  # not below 95%, beyond chance
    assert raised[0] / runs >= 0.95  # norm, 10 margins: found
    assert raised[1] == 0  # a tie is not raised
    # an effect at the margin is raised at most at its share of the family's error rate
    assert raised[2] <= scipy.stats.binom.ppf(0.999, runs, family_error / (2 * 18))


def test_a_planted_interaction_is_recovered_and_words_hold_it_against_the_margin():
    rng = np.random.default_rng(5)
    values = planted_values({"norm": 0.6, "init-pytorch": 0.0, "init-seed": 0.0,
                             "causal": 0.4}, 8, 0.05, rng, both=0.25)  # fmt: skip
    effects = main_effects(values, ARCHITECTURES, FACTORS, MARGIN, 0.95)
    pair = largest_factors(effects)
    assert pair == ("norm", "causal")
    joint = interaction(values, ARCHITECTURES, FACTORS, pair, MARGIN, term_confidence(0.05, 18))
    assert joint.terms == ("norm × causal",)
    assert joint.value[0] == pytest.approx(0.25, abs=0.05)
    assert joint.low[0] < 0.25 < joint.high[0]
    assert joint.word("norm × causal") == "raises"
    # 0.25, measured within ±0.3: smaller than a margin of 0.3
    assert interaction(values, ARCHITECTURES, FACTORS, pair, 0.3, 0.95).word(
        "norm × causal") == "negligible"  # fmt: skip


def test_values_are_network_minus_null_of_the_same_architecture_and_seed():
    """The paired difference cancels what network and null share on a seed's inputs: a
    planted difference per architecture comes out exact, though the seeds swing widely."""
    rng = np.random.default_rng(4)
    shared = rng.normal(0.0, 5.0, (3, 4))  # [seeds, A]: a seed's inputs move both alike
    planted = np.array([0.0, 0.1, 0.2, 0.3])
    results = [
        [
            {"circuits": {"network": shared[s, a] + planted[a], "null": shared[s, a]}}
            for s in range(3)
        ]
        for a in range(4)
    ]
    np.testing.assert_allclose(paired_values(results, "circuits"), np.tile(planted, (3, 1)))


@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_the_margin_p_value_is_below_its_level_exactly_when_the_margin_rule_supports(confidence):
    """Two computations of one rule: an architecture's one-sided p-value against the margin is
    below (1 - confidence) / 2 exactly when margin_verdict at that confidence says supported;
    columns without spread too (above the margin: p = 0; at or below: 1)."""
    rng = np.random.default_rng(6)
    values = MARGIN + rng.normal(0.0, 0.1, (5, 200)) * rng.uniform(0.2, 2.0, 200)
    values = np.column_stack([values, np.full((5, 2), [2 * MARGIN, MARGIN])])
    p = margin_p_values(values, MARGIN)
    supported = [margin_verdict(column, MARGIN, confidence).verdict == "supported"
                 for column in values.T]  # fmt: skip
    np.testing.assert_array_equal(p < (1 - confidence) / 2, supported)
    assert p[-2:].tolist() == [0.0, 1.0]
    assert np.all(margin_p_values(values[:1], MARGIN) == 1.0)  # one seed decides nothing


def test_architectures_beyond_the_margin_keep_their_false_discovery_rate():
    """Simulated sweeps of 96 architectures on 5 seeds, each seed's noise shared by all its
    architectures (positive dependence): with every architecture exactly at the margin (the
    hardest truth), any architecture is called beyond in at most 5% of sweeps (uncorrected,
    2.5% of 96, about 2 a sweep, would be called); with a third far beyond, they are found and
    the share of false ones among those called stays at most 5%."""
    rng = np.random.default_rng(7)
    runs, architectures, fdr = 2000, 96, 0.05
    at_margin = np.full(architectures, MARGIN)
    planted = np.where(np.arange(architectures) < 32, MARGIN + 1.0, MARGIN)

    def called(truth: np.ndarray) -> np.ndarray:
        noise = rng.normal(0.0, 0.2, (5, 1)) + rng.normal(0.0, 0.2, (5, architectures))
        return beyond_null_by_margin(truth + noise, MARGIN, fdr)

    any_false = np.mean([called(at_margin).any() for _ in range(runs)])
    assert any_false <= fdr + 3 * np.sqrt(fdr * (1 - fdr) / runs)
    false_shares, found = [], []
    for _ in range(runs):
        beyond = called(planted)
        false_shares.append(beyond[32:].sum() / max(beyond.sum(), 1))
        found.append(beyond[:32].mean())
    assert np.mean(false_shares) <= fdr
    assert np.mean(found) >= 0.9
