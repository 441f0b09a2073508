"""The architecture sweep: which architectural choices move structure beyond each claim's null.

A factorial design over config fields (the registry's `factors`, e.g. norm, act_fn, attention,
init, causal, d_model), every combination of their levels an architecture (`cells`), each the
registry's base preset with those levels (`architecture`). On each architecture and seed the
controlled statistics of claims 1, 3 and 4, of the network and of the claim's studied null, the
one its controlled reading is decided against (claims 3's and 4's rotated basis, claim 1's
embedding alone; `measured.beyond_null`), on the same inputs (`measure`); the statistic the
sweep explains is their paired difference, network - null, per (architecture, seed).

Main effects: least squares of the architectures' values on factor indicators (treatment
coding: a factor's first level is its reference, each other level a term whose coefficient is
its mean difference from the reference, all other factors held balanced). The coefficients are
linear in the values, so they are fitted on each seed (`per_seed_coefficients`): their mean over
seeds is the fit of the seeds' mean, and the seeds are independent replications (at one seed
the architectures share inputs and weight draws, so a seed, not a cell, is the unit). Each
term's interval is Student's t across seeds, exact for normal per-seed coefficients on any
number of seeds. (Until issue 20: a percentile bootstrap over whole seeds, its level expanded
for few seeds; at a family-wise level on 5 seeds the expanded level rounds to 1 and the
interval is just the range of the resamples.)

Multiplicity: the sweep says a word for every term of every statistic, so its words are one
family of K = statistics x (main-effect terms + the most interaction terms a pair of factors
has) (`family_size`: 3 x (7 + 2) = 27 for the registry's factors), each interval at the level
1 - family_error / K (`term_confidence`, Bonferroni): all of them cover their true effects at
once with probability at least 1 - family_error, and then every word is right. A word holds a
term against the claim's margin m of its studied null, the margin rule on both sides
(mechclaims.interp.verdicts.margin_side): raises if the interval lies above +m, lowers if below
-m, negligible if inside (-m, +m) (an equivalence: an effect of size m excluded both ways),
else unresolved. The interaction of the two factors with the largest main effects is fitted the
same way, in the same family (the pair is chosen by the main effects, contrasts orthogonal to
the interaction's in a full factorial).

Per architecture: is it beyond its null by the margin? The one-sided t-test across seeds of
network - null against m (`margin_p_values`: p < (1 - c) / 2 exactly when the margin rule at
confidence c says supported), Benjamini-Hochberg across a statistic's architectures at
`architecture_fdr` (`beyond_null_by_margin`): of the architectures called beyond, at most that
share is expected to be false (the architectures of a seed share its inputs, a positive
dependence under which BH holds; simulated in tests/interp/test_sweep_effects.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats

from mechclaims.interp.claims.measured import beyond_null
from mechclaims.interp.sources import ModelSource
from mechclaims.interp.stats import benjamini_hochberg
from mechclaims.interp.verdicts import margin_side
from mechclaims.model.config import TransformerConfig

STATISTICS = ("feature-detectors", "selectivity", "circuits")  # the claims measured per cell
MLP_RATIO = 4  # d_mlp = 4 d_model, GPT-2's ratio (tiny-mha's and gpt2-style's too)
WORD_OF_SIDE = {"above": "raises", "below": "lowers", "within": "negligible",
                "undecided": "unresolved"}  # fmt: skip
WORDS = tuple(WORD_OF_SIDE.values())


def cells(factors: Mapping[str, Sequence]) -> dict[str, dict]:
    """{id: {field: level}}: every combination of the factors' levels (a full factorial),
    ids like `norm=pre,act_fn=relu`, in the order of the factors and their levels."""
    return {
        ",".join(f"{field}={level}" for field, level in zip(factors, levels, strict=True)): dict(
            zip(factors, levels, strict=True)
        )
        for levels in itertools.product(*factors.values())
    }


def architecture(base: TransformerConfig, levels: Mapping) -> TransformerConfig:
    """`base` with the cell's `levels`. One attention head always (parameter-free attention
    has one; standard attention gets one too, so that changing the attention changes nothing
    else) unless a level sets it; d_mlp = MLP_RATIO x d_model (width scales the whole block)."""
    d_model = levels.get("d_model", base.d_model)
    return base.replace(**{"n_heads": 1, "d_mlp": MLP_RATIO * d_model, **levels})


def measure(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """{claim: {"network": ..., "null": ...}} for each of STATISTICS on (source, seed)."""
    model = source.model(seed)
    return {claim: beyond_null(claim, model, source, seed, thresholds) for claim in STATISTICS}


def paired_values(results: Sequence[Sequence[Mapping]], statistic: str) -> np.ndarray:
    """[seeds, A]: network - null of `statistic` from `results` [A][seeds] of `measure`, each
    difference within one architecture and seed (the same model and inputs)."""
    return np.array(
        [[seed[statistic]["network"] - seed[statistic]["null"] for seed in architecture]
         for architecture in results]
    ).T  # fmt: skip


@dataclass(frozen=True)
class Design:
    """Treatment-coded indicators of the architectures' levels: `matrix` [A, 1 + T] (an
    intercept, then one column per term), `terms` [T] their names, `factor_of` [T] the factor
    each belongs to."""

    matrix: np.ndarray
    terms: tuple[str, ...]
    factor_of: tuple[str, ...]


def factor_terms(factors: Mapping[str, Sequence]) -> list[tuple[str, str, object]]:
    """(term, field, level) of every level but each factor's first (its reference). A
    two-level factor's term is named by the factor (`norm`: post - pre), a term of a factor
    with more levels by factor and level (`init-seed`: seed - gpt2)."""
    return [
        (field if len(levels) == 2 else f"{field}-{level}", field, level)
        for field, levels in factors.items()
        for level in levels[1:]
    ]


def family_size(factors: Mapping[str, Sequence], statistics: int = len(STATISTICS)) -> int:
    """K, the terms the sweep can say a word of: per statistic, every main-effect term and the
    interaction terms of one pair of factors, counted for the pair with the most."""
    extra = [len(levels) - 1 for levels in factors.values()]
    most = max((a * b for a, b in itertools.combinations(extra, 2)), default=0)
    return statistics * (sum(extra) + most)


def term_confidence(family_error: float, family: int) -> float:
    """The level of each of `family` intervals that all cover at once with probability at
    least 1 - family_error (Bonferroni)."""
    if not 0 < family_error < 1 or family < 1:
        raise ValueError(f"need 0 < family_error < 1 and family >= 1, got {family_error}, "
                         f"{family}")  # fmt: skip
    return 1 - family_error / family


def design(architectures: Sequence[Mapping], factors: Mapping[str, Sequence]) -> Design:
    """The treatment-coded design of `architectures` (their levels) for `factors`."""
    terms = factor_terms(factors)
    indicators = [[cell[field] == level for cell in architectures] for _, field, level in terms]
    matrix = np.column_stack([np.ones(len(architectures)), *np.array(indicators, float)])
    if np.linalg.matrix_rank(matrix) < matrix.shape[1]:  # [A, 1 + T]
        raise ValueError(
            f"the {len(architectures)} architectures cannot separate the terms "
            f"{[term for term, _, _ in terms]}: a level has no architecture, or two terms "
            "always change together"
        )
    return Design(matrix, tuple(term for term, _, _ in terms),
                  tuple(field for _, field, _ in terms))  # fmt: skip


@dataclass(frozen=True)
class Effects:
    """Per term: the least-squares coefficient, its t-interval across seeds and its word."""

    terms: tuple[str, ...]
    factor_of: tuple[str, ...]  # [T] the factor (or factors, `a × b`) of each term
    value: np.ndarray  # [T]
    low: np.ndarray  # [T]
    high: np.ndarray  # [T]
    words: tuple[str, ...]  # [T] each one of WORDS
    margin: float  # the claim's margin of its studied null
    confidence: float  # each interval's level

    def word(self, term: str) -> str:
        """raises, lowers, negligible or unresolved (module docstring)."""
        return self.words[self.terms.index(term)]


def per_seed_coefficients(values: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[seeds, T]: each seed's least-squares coefficients of its `values` [seeds, A] on
    `matrix` [A, 1 + T], the intercept dropped."""
    return (values @ np.linalg.pinv(matrix).T)[:, 1:]  # [seeds, 1 + T] -> [seeds, T]


def fitted_effects(
    values: np.ndarray,
    matrix: np.ndarray,
    terms: Sequence[str],
    factor_of: Sequence[str],
    margin: float,
    confidence: float,
) -> Effects:
    """Least-squares coefficients of `values` [seeds, A] (each architecture's value on each
    seed) on `matrix` [A, 1 + T]: fitted per seed, with t-intervals across seeds at
    `confidence` and each term's word against ±`margin`."""
    coefficients = per_seed_coefficients(values, matrix)  # [seeds, T]
    sides = [margin_side(column, margin, confidence) for column in coefficients.T]
    return Effects(
        tuple(terms), tuple(factor_of),
        np.array([account.mean for _, account in sides]),
        np.array([account.low for _, account in sides]),
        np.array([account.high for _, account in sides]),
        tuple(WORD_OF_SIDE[side] for side, _ in sides), float(margin), float(confidence),
    )  # fmt: skip


def main_effects(
    values: np.ndarray, architectures: Sequence[Mapping], factors: Mapping[str, Sequence],
    margin: float, confidence: float,
) -> Effects:  # fmt: skip
    """Every term's main effect on `values` [seeds, A] (a model of main effects only)."""
    coded = design(architectures, factors)
    return fitted_effects(values, coded.matrix, coded.terms, coded.factor_of, margin, confidence)


def largest_factors(effects: Effects) -> tuple[str, str]:
    """The two factors whose largest |main effect| (over their terms) is largest."""
    size: dict[str, float] = {}
    for field, value in zip(effects.factor_of, effects.value, strict=True):
        size[field] = max(size.get(field, 0.0), abs(float(value)))
    first, second = sorted(size, key=lambda field: -size[field])[:2]
    return first, second


def interaction(
    values: np.ndarray, architectures: Sequence[Mapping], factors: Mapping[str, Sequence],
    pair: tuple[str, str], margin: float, confidence: float,
) -> Effects:  # fmt: skip
    """The interaction terms of `pair` (products of their indicators, `a × b`), fitted beside
    every main effect: how much the effect of one factor changes with the other's level."""
    coded = design(architectures, factors)
    first = [i + 1 for i, field in enumerate(coded.factor_of) if field == pair[0]]
    second = [i + 1 for i, field in enumerate(coded.factor_of) if field == pair[1]]
    products = [coded.matrix[:, i] * coded.matrix[:, j] for i in first for j in second]
    names = [f"{coded.terms[i - 1]} × {coded.terms[j - 1]}" for i in first for j in second]
    matrix = np.column_stack([coded.matrix, *products])  # [A, 1 + T + I]
    joint = " × ".join(pair)
    full = fitted_effects(values, matrix, [*coded.terms, *names],
                          [*coded.factor_of, *[joint] * len(names)], margin,
                          confidence)  # fmt: skip
    kept = slice(len(coded.terms), None)
    return Effects(tuple(names), full.factor_of[kept], full.value[kept], full.low[kept],
                   full.high[kept], full.words[kept], full.margin, full.confidence)  # fmt: skip


def margin_p_values(values: np.ndarray, margin: float) -> np.ndarray:
    """[A]: one-sided p-values of the t-test across seeds that the mean of each column of
    `values` [seeds, A] exceeds `margin` (a column without spread: 0 if its value exceeds the
    margin, else 1, as the margin rule decides it; on one seed, 1: one seed decides nothing)."""
    seeds = len(values)
    if seeds < 2:
        return np.ones(values.shape[1])
    mean, spread = values.mean(axis=0), values.std(axis=0, ddof=1)  # [A]
    flat = spread == 0
    t = (mean - margin) / np.where(flat, 1.0, spread / np.sqrt(seeds))
    return np.where(flat, (mean <= margin).astype(float), scipy.stats.t.sf(t, seeds - 1))


def beyond_null_by_margin(values: np.ndarray, margin: float, fdr: float) -> np.ndarray:
    """[A] bool: the architectures whose network - null `values` [seeds, A] exceed `margin`,
    Benjamini-Hochberg at `fdr` across them."""
    return benjamini_hochberg(margin_p_values(values, margin), fdr)
