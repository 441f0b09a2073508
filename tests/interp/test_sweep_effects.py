"""The architecture sweep's design and statistics: the factorial cells and their configs, least
squares main effects on treatment-coded indicators (a planted effect recovered and covered by its
interval, a null factor's interval covering 0), the bootstrap over whole seeds, the paired
difference network - embedding, the interaction of the two largest factors."""

from __future__ import annotations

import numpy as np
import pytest

from mechclaims.interp.claims.sweep import (
    Effects,
    architecture,
    cells,
    design,
    expanded_confidence,
    factor_terms,
    fitted_effects,
    interaction,
    largest_factors,
    main_effects,
    paired_values,
)
from mechclaims.interp.stats import bootstrap_interval
from mechclaims.model.config import TransformerConfig

FACTORS = {"norm": ["pre", "post"], "init": ["gpt2", "pytorch", "seed"], "causal": [True, False]}
RESAMPLES = 2000


def planted_values(effects: dict, seeds: int, noise: float, rng) -> tuple[np.ndarray, list]:
    """values [seeds, A] = the planted term effects of each architecture + Gaussian noise."""
    architectures = list(cells(FACTORS).values())
    truth = np.array([
        sum(size for (term, field, level), size in zip(factor_terms(FACTORS), effects.values(),
                                                        strict=True) if cell[field] == level)
        for cell in architectures
    ])  # fmt: skip
    return truth + rng.normal(0.0, noise, (seeds, len(architectures))), architectures


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
    terms = [term for term, _, _ in factor_terms(FACTORS)]
    assert terms == ["norm", "init-pytorch", "init-seed", "causal"]
    coded = design(list(cells(FACTORS).values()), FACTORS)
    assert coded.matrix.shape == (12, 5)
    assert coded.factor_of == ("norm", "init", "init", "causal")
    first = coded.matrix[0]  # norm=pre, init=gpt2, causal=True: every reference level
    assert first.tolist() == [1, 0, 0, 0, 0]


def test_a_design_that_cannot_separate_its_terms_is_refused():
    kept = [cell for cell in cells(FACTORS).values() if cell["init"] != "seed"]
    with pytest.raises(ValueError, match="cannot separate the terms"):
        design(kept, FACTORS)


def test_a_planted_effect_is_recovered_and_covered_and_a_null_factor_covers_zero():
    rng = np.random.default_rng(0)
    planted = {"norm": 0.5, "init-pytorch": 0.0, "init-seed": -0.3, "causal": 0.0}
    values, architectures = planted_values(planted, seeds=8, noise=0.1, rng=rng)
    effects = main_effects(values, architectures, FACTORS, rng, 0.95, RESAMPLES)
    assert effects.terms == tuple(planted)
    np.testing.assert_allclose(effects.value, list(planted.values()), atol=0.06)
    assert [effects.word(term) for term in planted] == ["raises", "unresolved", "lowers",
                                                        "unresolved"]  # fmt: skip


@pytest.mark.parametrize("seeds", [5, 8])
def test_the_intervals_cover_planted_and_null_effects_at_about_their_level(seeds):
    """Simulated sweeps on as few seeds as the registry's: each term's 95% interval covers its
    planted effect (0 for a null factor) in about 95% of them (a plain percentile bootstrap
    covers about 83% on 5 seeds; the expanded one about 92%)."""
    rng = np.random.default_rng(seeds)
    planted = {"norm": 0.5, "init-pytorch": 0.0, "init-seed": -0.3, "causal": 0.0}
    covered = np.zeros(len(planted))
    runs = 200
    for _ in range(runs):
        values, architectures = planted_values(planted, seeds, 0.3, rng)
        effects = main_effects(values, architectures, FACTORS, rng, 0.95, 999)
        truth = np.array(list(planted.values()))
        covered += (effects.low < truth) & (truth < effects.high)
    assert np.all(covered / runs >= 0.87)


def test_least_squares_on_a_balanced_design_is_the_difference_of_level_means():
    """Computed two ways: the coefficient of a two-level factor is the mean of its second level
    minus the mean of its first, over every architecture and seed."""
    rng = np.random.default_rng(1)
    values, architectures = planted_values({"norm": 0.2, "init-pytorch": 0.1, "init-seed": 0.4,
                                            "causal": -0.2}, 5, 0.3, rng)  # fmt: skip
    effects = main_effects(values, architectures, FACTORS, rng, 0.95, 99)
    post = np.array([cell["norm"] == "post" for cell in architectures])
    assert effects.value[0] == pytest.approx(values[:, post].mean() - values[:, ~post].mean())


def test_the_bootstrap_resamples_whole_seeds():
    """Computed two ways: the interval of the fitted effects equals the bootstrap interval of
    the mean of per-seed effects (each seed's own least squares) with the same draws. A
    bootstrap over single (architecture, seed) values, which ignores that one seed's
    architectures share its draws, would not: here a seed-level swing of the norm effect makes
    whole seeds the unit of replication."""
    rng = np.random.default_rng(2)
    values, architectures = planted_values({"norm": 0.3, "init-pytorch": 0.0, "init-seed": 0.0,
                                            "causal": 0.0}, 6, 0.01, rng)  # fmt: skip
    post = np.array([cell["norm"] == "post" for cell in architectures])
    values[:, post] += rng.normal(0.0, 0.2, (6, 1))  # the norm effect swings from seed to seed
    matrix = design(architectures, FACTORS).matrix
    effects = fitted_effects(values, matrix, ["a", "b", "c", "d"], ["a", "b", "c", "d"],
                             np.random.default_rng(3), 0.95, RESAMPLES)  # fmt: skip
    per_seed = np.linalg.lstsq(matrix, values.T, rcond=None)[0][1:].T  # [seeds, T]
    twin = bootstrap_interval(per_seed, np.mean, rng=np.random.default_rng(3),
                              n_resamples=RESAMPLES, method="percentile",
                              confidence=expanded_confidence(6, 0.95))  # fmt: skip
    np.testing.assert_allclose(effects.low, twin.low, atol=1e-12)
    np.testing.assert_allclose(effects.high, twin.high, atol=1e-12)
    spread = per_seed[:, 0].std(ddof=1) / np.sqrt(6)
    assert effects.high[0] - effects.low[0] > 2 * spread  # the swing is in the interval


def test_values_are_network_minus_embedding_of_the_same_architecture_and_seed():
    """The paired difference cancels what network and embedding share on a seed's inputs: a
    planted difference per architecture comes out exact, though the seeds swing widely."""
    rng = np.random.default_rng(4)
    shared = rng.normal(0.0, 5.0, (3, 4))  # [seeds, A]: a seed's inputs move both alike
    planted = np.array([0.0, 0.1, 0.2, 0.3])
    results = [
        [
            {"circuits": {"network": shared[s, a] + planted[a], "embedding": shared[s, a]}}
            for s in range(3)
        ]
        for a in range(4)
    ]
    np.testing.assert_allclose(paired_values(results, "circuits"), np.tile(planted, (3, 1)))


def test_the_interaction_of_the_two_largest_factors_is_recovered():
    rng = np.random.default_rng(5)
    values, architectures = planted_values({"norm": 0.6, "init-pytorch": 0.0, "init-seed": 0.0,
                                            "causal": 0.4}, 8, 0.05, rng)  # fmt: skip
    both = np.array([cell["norm"] == "post" and cell["causal"] is False
                     for cell in architectures])  # fmt: skip
    values[:, both] += 0.25
    effects = main_effects(values, architectures, FACTORS, rng, 0.95, RESAMPLES)
    pair = largest_factors(effects)
    assert pair == ("norm", "causal")
    joint = interaction(values, architectures, FACTORS, pair, rng, 0.95, RESAMPLES)
    assert joint.terms == ("norm × causal",)
    assert joint.value[0] == pytest.approx(0.25, abs=0.05)
    assert joint.low[0] < 0.25 < joint.high[0]
    assert joint.word("norm × causal") == "raises"


def test_the_expanded_level_is_wider_for_fewer_seeds_and_tends_to_the_nominal_one():
    assert expanded_confidence(5, 0.95) == pytest.approx(0.9981, abs=1e-4)
    assert 0.95 < expanded_confidence(1000, 0.95) < 0.9505


def test_effect_words():
    effects = Effects(("a", "b", "c"), ("a", "b", "c"), np.array([1.0, -1.0, 0.1]),
                      np.array([0.5, -1.5, -0.2]), np.array([1.5, -0.5, 0.4]))  # fmt: skip
    assert [effects.word(term) for term in "abc"] == ["raises", "lowers", "unresolved"]
