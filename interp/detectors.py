"""Feature detectors and hand-picked hypotheses: which input feature moves a unit, and how much.

A feature is "token t at position p", indexed p * vocab + t. Responses are [n sequences, units]
(a unit's response to a whole sequence, e.g. its maximum over positions); tokens are [n, T].

- The seed's reading (claim 1): the top sequences of one unit, and the feature they share.
- Controlled (claim 1): per unit, the feature with the largest Cohen's d on a discovery split,
  confirmed on a held-out split with a permutation p-value.
- The seed's hand-picked hypothesis (claim 2): Glass's delta of "token t at position p" on the
  activation at p, computed for every token and unit at once so that one hypothesis can be
  tested within the whole family it was picked from.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np
import scipy.stats

from mechclaims.interp.stats import (
    Estimate,
    Split,
    benjamini_hochberg,
    center_columns,
    permutation_p_value,
    permute_labels,
)

# Null draws are handled in chunks of at most this many float64 elements (32 MiB).
_MAX_CHUNK_ELEMENTS = 2**22


# ---------------------------------------------------------------------------------------------
# Features and the seed's top sequences


def feature_indicators(tokens: np.ndarray, vocab: int) -> np.ndarray:
    """Whether each sequence holds each feature: tokens [n, T] -> float [n, T * vocab].

    Column p * vocab + t is 1 where x_p = t.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [n, T], got shape {tokens.shape}")
    one_hot = tokens[..., None] == np.arange(vocab)  # [n,T,V]
    return one_hot.reshape(len(tokens), -1).astype(np.float64)  # [n,T*V]


def top_sequences(responses: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest responses [n], largest first; ties keep the input order."""
    order = np.argsort(-np.asarray(responses), kind="stable")
    return order[:k]


def most_shared_feature(tokens: np.ndarray, vocab: int) -> tuple[int, int, int]:
    """(token, position, count): the feature held by most of the sequences tokens [k, T].

    Ties go to the lowest position, then the lowest token.
    """
    counts = feature_indicators(tokens, vocab).sum(axis=0)  # [T*V]
    best = int(np.argmax(counts))
    position, token = divmod(best, vocab)
    return token, position, int(counts[best])


def chance_of_shared_feature(vocab: int, length: int, k: int, min_count: int) -> float:
    """Probability that k uniformly random sequences share some feature in >= min_count of them.

    Positions are independent; at one position, the k tokens have all multiplicities below
    min_count in k! [x^k] (sum_{j < min_count} x^j / j!)^vocab of the vocab^k draws.
    """
    if not 1 <= min_count <= k:
        raise ValueError(f"min_count must lie in [1, k={k}], got {min_count}")
    truncated_exp = np.array([1 / factorial(j) for j in range(min_count)])  # [min_count]
    power = np.array([1.0])
    for _ in range(vocab):
        power = np.convolve(power, truncated_exp)[: k + 1]
    coefficient = power[k] if len(power) > k else 0.0
    all_below = factorial(k) * coefficient / vocab**k  # one position
    return float(1 - all_below**length)


# ---------------------------------------------------------------------------------------------
# Effect sizes of every feature on every unit


@dataclass(frozen=True)
class _Groups:
    """Mean and sum of squared deviations of each unit within and without each feature."""

    n_with: np.ndarray  # [F,1], or [U] when paired
    n_without: np.ndarray
    mean_with: np.ndarray  # [F,U], or [U] when paired
    mean_without: np.ndarray
    ss_with: np.ndarray
    ss_without: np.ndarray

    @property
    def difference(self) -> np.ndarray:
        return self.mean_with - self.mean_without


def _groups(values: np.ndarray, indicators: np.ndarray, paired: bool = False) -> _Groups:
    """Group moments of values [n, U] by indicators [n, F] (every unit by every feature), or,
    paired, by indicators [n, U] (each unit by its own feature)."""
    if values.ndim != 2 or len(indicators) != len(values):
        raise ValueError(
            f"values must be [n, units] and indicators [n, features]; got {values.shape} "
            f"and {indicators.shape}"
        )
    centered = center_columns(values)  # [n,U]; a constant unit is exactly 0
    if paired:
        n_with = indicators.sum(axis=0)  # [U]
        sums = np.sum(indicators * centered, axis=0)  # [U]
        squares = np.sum(indicators * centered**2, axis=0)  # [U]
    else:
        n_with = indicators.sum(axis=0)[:, None]  # [F,1]
        both = indicators.T @ np.hstack([centered, centered**2])  # [F,n] @ [n,2U] -> [F,2U]
        sums, squares = np.split(both, 2, axis=1)  # [F,U] each
    n_without = len(values) - n_with
    if np.any(n_with < 1) or np.any(n_without < 1):
        raise ValueError("every feature needs samples with it and without it")
    rest = centered.sum(axis=0) - sums
    rest_squares = np.sum(centered**2, axis=0) - squares
    mean_with, mean_without = sums / n_with, rest / n_without
    return _Groups(
        n_with,
        n_without,
        mean_with,
        mean_without,
        np.maximum(squares - sums * mean_with, 0.0),
        np.maximum(rest_squares - rest * mean_without, 0.0),
    )


def _ratio(difference: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """difference / scale; where scale is 0, 0 for no difference and ±inf otherwise."""
    safe = np.where(scale > 0, scale, 1.0)
    degenerate = np.where(difference == 0, 0.0, np.copysign(np.inf, difference))
    return np.where(scale > 0, difference / safe, degenerate)


def feature_cohens_d(
    values: np.ndarray, indicators: np.ndarray, paired: bool = False
) -> np.ndarray:
    """Cohen's d of every unit between samples with and without every feature.

    values [n, U], indicators [n, F] (0/1) -> d [F, U], as `stats.cohens_d` per pair;
    paired, indicators [n, U] (each unit's own feature) -> d [U].
    """
    groups = _groups(values, indicators, paired)
    pooled_sd = np.sqrt((groups.ss_with + groups.ss_without) / (len(values) - 2))
    return _ratio(groups.difference, pooled_sd)


def feature_glass_delta(values: np.ndarray, indicators: np.ndarray) -> np.ndarray:
    """The seed's effect `(mean_with - mean_without) / std_without` (ddof 0) for every feature
    and unit: values [n, U], indicators [n, F] -> delta [F, U], as `stats.glass_delta`."""
    groups = _groups(values, indicators)
    return _ratio(groups.difference, np.sqrt(groups.ss_without / groups.n_without))


def glass_delta_interval(
    treated: np.ndarray, control: np.ndarray, confidence: float = 0.95
) -> Estimate:
    """Glass's delta (ddof 0) per unit with a normal-approximation (delta-method) interval.

    treated [n1, ...], control [n0, ...]. With skewness g and kurtosis k of the control group,
    Var(delta) ~ s1² / (s0² n1) + (1 + g delta + (k - 1) delta² / 4) / n0, which reduces to the
    textbook 1/n0 + s1²/(s0² n1) + delta²/(2 n0) for normal data. A cheap stand-in for
    `stats.bootstrap_interval` on thousands of samples; a constant control gives
    (delta, delta). Returns Estimate(value [...], low [...], high [...]).
    """
    treated, control = np.asarray(treated, float), np.asarray(control, float)
    m2_treated = np.mean(center_columns(treated) ** 2, axis=0)
    deviations = center_columns(control)  # [n0,...]; exactly 0 in a constant unit
    m2, m3, m4 = (np.mean(deviations**order, axis=0) for order in (2, 3, 4))
    sd = np.sqrt(m2)
    delta = _ratio(np.mean(treated, axis=0) - np.mean(control, axis=0), sd)
    positive = m2 > 0
    safe_m2 = np.where(positive, m2, 1.0)
    skewness, kurtosis = m3 / safe_m2**1.5, m4 / safe_m2**2
    finite = np.where(positive, delta, 0.0)
    variance = m2_treated / (safe_m2 * len(treated)) + (
        1 + skewness * finite + (kurtosis - 1) * finite**2 / 4
    ) / len(control)
    half = scipy.stats.norm.ppf(0.5 + confidence / 2) * np.sqrt(np.maximum(variance, 0.0))
    half = np.where(positive, half, 0.0)
    return Estimate(delta, delta - half, delta + half)


# ---------------------------------------------------------------------------------------------
# Claim 1: discovered detectors confirmed on held-out sequences


@dataclass(frozen=True)
class DetectorTest:
    """Each unit's best feature on the discovery split and its effect on the held-out split."""

    feature: np.ndarray  # [U] index p * vocab + t of the feature chosen on discovery
    discovery_d: np.ndarray  # [U] Cohen's d of that feature on discovery (the largest)
    holdout_d: np.ndarray  # [U] its Cohen's d on the held-out split
    p_values: np.ndarray  # [U] one-sided permutation p-value of the held-out effect

    def confirmed(self, fdr: float, min_effect: float) -> np.ndarray:
        """[U] bool: the held-out effect survives Benjamini-Hochberg at `fdr` across units and
        is at least `min_effect` (Cohen's d)."""
        return benjamini_hochberg(self.p_values, fdr) & (self.holdout_d >= min_effect)


def detector_test(
    responses: np.ndarray,
    tokens: np.ndarray,
    vocab: int,
    split: Split,
    rng: np.random.Generator,
    n_permutations: int,
) -> DetectorTest:
    """Pick each unit's feature on `split.discovery`, confirm it on `split.holdout`.

    responses [n, U], tokens [n, T]. The feature a unit "fires for" is the one that raises its
    response most (largest Cohen's d, signed). The held-out p-value permutes the chosen
    feature's indicator among held-out sequences; with group sizes fixed, d grows with the
    with-group's sum, so that sum is the permuted statistic.
    """
    indicators = feature_indicators(tokens, vocab)  # [n,F]
    discovery = feature_cohens_d(responses[split.discovery], indicators[split.discovery])  # [F,U]
    chosen = np.argmax(discovery, axis=0)  # [U]
    held_responses, held_indicators = responses[split.holdout], indicators[split.holdout]
    return DetectorTest(
        chosen,
        np.take_along_axis(discovery, chosen[None, :], axis=0)[0],
        feature_cohens_d(held_responses, held_indicators[:, chosen], paired=True),
        _chosen_feature_p_values(held_responses, held_indicators, chosen, rng, n_permutations),
    )


def _chosen_feature_p_values(responses, indicators, chosen, rng, n_permutations) -> np.ndarray:
    """One-sided permutation p-value of each unit's with-group sum for its chosen feature.

    Units are grouped by chosen feature (at most T * vocab groups): one matrix product
    [1 + m, n] @ [n, units of the group] per group, the observed indicator in row 0.
    """
    centered = center_columns(responses)  # [n,U]
    shuffled = permute_labels(np.arange(len(responses)), rng, n_permutations)  # [m,n]
    sums = np.empty((1 + n_permutations, responses.shape[1]))  # [1+m,U]
    for feature in np.unique(chosen):
        units = chosen == feature
        column = indicators[:, feature]  # [n]
        draws = np.vstack([column, column[shuffled]])  # [1+m,n]
        sums[:, units] = draws @ centered[:, units]  # [1+m,n] @ [n,u] -> [1+m,u]
    return permutation_p_value(sums[0], sums[1:])


# ---------------------------------------------------------------------------------------------
# Claim 2: one hypothesis within the family of every (token, unit) at a position


def token_effects(values: np.ndarray, labels: np.ndarray, vocab: int) -> np.ndarray:
    """Glass's delta of "label == t" against "label != t" for every token t and unit.

    values [n, U] (activations at one position), labels [n] (the token there) -> [vocab, U].
    """
    return feature_glass_delta(values, feature_indicators(labels[:, None], vocab)).reshape(
        vocab, values.shape[1]
    )


def token_effect_test(
    values: np.ndarray,
    labels: np.ndarray,
    vocab: int,
    rng: np.random.Generator,
    n_permutations: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Glass's deltas [vocab, U] and two-sided permutation p-values [vocab, U].

    The null permutes the labels among the samples (each token keeps its count); the permuted
    statistic is the difference of means, whose null is centred at 0, so |difference| is
    compared. The same permutations serve every token and unit.
    """
    effects = token_effects(values, labels, vocab)
    centered = center_columns(values)  # [n,U]
    counts = np.bincount(labels, minlength=vocab)[:, None]  # [V,1]
    total = centered.sum(axis=0)  # [U]
    chunk = max(1, _MAX_CHUNK_ELEMENTS // (vocab * len(values)))
    null = []
    for start in range(0, n_permutations, chunk):
        permuted = permute_labels(labels, rng, min(chunk, n_permutations - start))  # [c,n]
        one_hot = (permuted[:, None, :] == np.arange(vocab)[:, None]).astype(np.float64)
        sums = one_hot.reshape(-1, len(values)) @ centered  # [c*V,n] @ [n,U] -> [c*V,U]
        null.append(_difference(sums.reshape(len(permuted), vocab, -1), total, counts))
    observed = _difference(
        feature_indicators(labels[:, None], vocab).T @ centered, total, counts
    )  # [V,U]
    p_values = permutation_p_value(np.abs(observed), np.abs(np.concatenate(null)))
    return effects, p_values


def _difference(sums: np.ndarray, total: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """mean_with - mean_without from with-group sums [..., V, U], the total [U], counts [V, 1]."""
    return sums / counts - (total - sums) / (counts.sum() - counts)
