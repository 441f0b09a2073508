"""The architecture sweep: which architectural choices move structure beyond the embedding.

A factorial design over config fields (the registry's `factors`, e.g. norm, act_fn, attention,
init, causal, d_model), every combination of their levels an architecture (`cells`), each the
registry's base preset with those levels (`architecture`). On each architecture and seed the
controlled statistics of claims 1, 3 and 4 and the embedding alone's (`measure`); the statistic
the sweep explains is their paired difference, network - embedding, per (architecture, seed).

Main effects: least squares of the per-architecture means on factor indicators (treatment
coding: a factor's first level is its reference, each other level a term whose coefficient is
its mean difference from the reference, all other factors held balanced), with bootstrap
intervals over seeds (whole seeds resampled: at one seed architectures share weight draws and
inputs, so their values are correlated and a seed is the unit of replication; percentile
intervals expanded for few seeds, `expanded_confidence`). A term raises the statistic if its
interval lies above 0, lowers it if below, else it is unresolved. The interaction of the two
factors with the largest main effects is fitted the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats

from mechclaims.interp.claims.measured import beyond_embedding
from mechclaims.interp.sources import ModelSource
from mechclaims.interp.stats import bootstrap_interval
from mechclaims.model.config import TransformerConfig

STATISTICS = ("feature-detectors", "selectivity", "circuits")  # the claims measured per cell
MLP_RATIO = 4  # d_mlp = 4 d_model, GPT-2's ratio (tiny-mha's and gpt2-style's too)
WORDS = ("raises", "lowers", "unresolved")


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
    """{claim: {"network": ..., "embedding": ...}} for each of STATISTICS on (source, seed)."""
    model = source.model(seed)
    return {claim: beyond_embedding(claim, model, source, seed, thresholds) for claim in STATISTICS}


def paired_values(results: Sequence[Sequence[Mapping]], statistic: str) -> np.ndarray:
    """[seeds, A]: network - embedding of `statistic` from `results` [A][seeds] of `measure`,
    each difference within one architecture and seed (the same model and inputs)."""
    return np.array(
        [[seed[statistic]["network"] - seed[statistic]["embedding"] for seed in architecture]
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
    """Per term: the least-squares coefficient and its bootstrap interval over seeds."""

    terms: tuple[str, ...]
    factor_of: tuple[str, ...]  # [T] the factor (or factors, `a × b`) of each term
    value: np.ndarray  # [T]
    low: np.ndarray  # [T]
    high: np.ndarray  # [T]

    def word(self, term: str) -> str:
        """raises (interval above 0), lowers (below 0) or unresolved (it covers 0)."""
        i = self.terms.index(term)
        if self.low[i] > 0:
            return "raises"
        if self.high[i] < 0:
            return "lowers"
        return "unresolved"


def fitted_effects(
    values: np.ndarray,
    matrix: np.ndarray,
    terms: Sequence[str],
    factor_of: Sequence[str],
    rng: np.random.Generator,
    confidence: float,
    n_resamples: int,
) -> Effects:
    """Least-squares coefficients of `values` [seeds, A] (each architecture's value on each
    seed) on `matrix` [A, 1 + T], with bootstrap intervals from resampling whole seeds (rows)."""
    solve = np.linalg.pinv(matrix)  # [1 + T, A]

    def coefficients(samples: np.ndarray, axis: int) -> np.ndarray:
        # [seeds, A] or, resampled, [A, ..., seeds]: the mean over seeds, then least squares
        means = np.mean(samples, axis=axis)  # [A, ...]
        return np.tensordot(solve, means, axes=([1], [0]))[1:]  # [T, ...], intercept dropped

    # on very few seeds the expanded level rounds to 1: the resamples' range is the widest
    level = min(expanded_confidence(len(values), confidence), 1 - 1 / n_resamples)
    estimate = bootstrap_interval(values, coefficients, rng=rng, n_resamples=n_resamples,
                                  confidence=level, method="percentile")  # fmt: skip
    return Effects(tuple(terms), tuple(factor_of), estimate.value, estimate.low, estimate.high)


def expanded_confidence(n: int, confidence: float) -> float:
    """The level of the expanded percentile interval (Hesterberg 2015, "What teachers should
    know about the bootstrap"): the percentile bootstrap of a mean over n replicates is too
    narrow for small n (95% covers about 83% at n = 5); its level is widened so that its normal
    quantile is sqrt(n / (n - 1)) times Student's t quantile with n - 1 degrees of freedom."""
    tail = scipy.stats.t.ppf((1 - confidence) / 2, n - 1)  # < 0
    return float(1 - 2 * scipy.stats.norm.cdf(np.sqrt(n / (n - 1)) * tail))


def main_effects(
    values: np.ndarray, architectures: Sequence[Mapping], factors: Mapping[str, Sequence],
    rng: np.random.Generator, confidence: float, n_resamples: int,
) -> Effects:  # fmt: skip
    """Every term's main effect on `values` [seeds, A] (a model of main effects only)."""
    coded = design(architectures, factors)
    return fitted_effects(values, coded.matrix, coded.terms, coded.factor_of, rng, confidence,
                          n_resamples)  # fmt: skip


def largest_factors(effects: Effects) -> tuple[str, str]:
    """The two factors whose largest |main effect| (over their terms) is largest."""
    size: dict[str, float] = {}
    for field, value in zip(effects.factor_of, effects.value, strict=True):
        size[field] = max(size.get(field, 0.0), abs(float(value)))
    first, second = sorted(size, key=lambda field: -size[field])[:2]
    return first, second


def interaction(
    values: np.ndarray, architectures: Sequence[Mapping], factors: Mapping[str, Sequence],
    pair: tuple[str, str], rng: np.random.Generator, confidence: float, n_resamples: int,
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
                          [*coded.factor_of, *[joint] * len(names)], rng, confidence,
                          n_resamples)  # fmt: skip
    kept = slice(len(coded.terms), None)
    return Effects(tuple(names), full.factor_of[kept], full.value[kept], full.low[kept],
                   full.high[kept])  # fmt: skip
