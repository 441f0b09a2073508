"""Correlated unit pairs ("circuits"): the seed's partner print-out, strong pairs tested with the
number of distinct inputs they rest on, and whether opposing pairs partition the inputs.

Features are [n inputs, U units] of one unit set at one position; a correlation matrix is [U, U]
(`stats.correlation_matrix`: a constant unit has r = 0). A source's correlations and their tests
rest on its own distinct rows (`distinct_rows`): the embedding alone at the last position is a
function of the last token only, so 1000 distinct sequences give it 10 distinct rows, and a
test with n = 1000 would count each of them 100 times (pseudo-replication).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats

from mechclaims.interp.inputs import all_sequences
from mechclaims.interp.stats import (
    benjamini_hochberg,
    bh_adjust,
    correlation_matrix,
    correlation_p_value,
)


def distinct_sequences(rng: np.random.Generator, n: int, vocab: int, length: int) -> np.ndarray:
    """`n` distinct sequences drawn uniformly without replacement from all vocab**length of them,
    in lexicographic order: [n, length]. Every row is a distinct input, so n_effective = n."""
    total = vocab**length
    if not 2 <= n <= total:
        raise ValueError(f"n must lie in [2, {total}] (vocab**length), got {n}")
    rows = np.sort(rng.choice(total, size=n, replace=False))  # [n]
    return all_sequences(vocab, length)[rows]


def distinct_rows(features: np.ndarray) -> np.ndarray:
    """Each distinct row of features [n, U] once, at its first occurrence: [m, U], m the number
    of distinct inputs the features really have (an input repeated, or two inputs the source
    does not tell apart, add no evidence). Rows are equal when their bytes are (as for
    `np.unique(axis=0)`, 7x slower on a [1000, 256] unit set)."""
    first: dict[bytes, int] = {}  # a row's bytes -> where it first occurs
    for index, row in enumerate(features):
        first.setdefault(row.tobytes(), index)
    return features[list(first.values())]


def rotated_correlation(corr: np.ndarray, std: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Correlation matrix of features [n, U] @ rotation, from the features' correlation [U, U]
    and standard deviations [U]: the rotated covariance is rotation.T @ cov @ rotation, so the
    random-rotation null costs O(U^3) instead of rotating and correlating n rows again.
    A direction of zero variance has r = 0 with every direction, as in `correlation_matrix`."""
    covariance = corr * np.outer(std, std)  # [U,U]; constant units give zero rows
    rotated = rotation.T @ covariance @ rotation  # [U,U]
    variance = np.diag(rotated)
    scale = np.sqrt(np.where(variance > 0, variance, 1.0))  # [U]
    r = np.where(np.outer(variance > 0, variance > 0), rotated / np.outer(scale, scale), 0.0)
    np.fill_diagonal(r, np.where(variance > 0, 1.0, 0.0))
    return np.clip(r, -1.0, 1.0)


# ---------------------------------------------------------------------------------------------
# The seed's reading


@dataclass(frozen=True)
class SeedPartners:
    """What the seed printed: each listed unit's partner of largest |r|, if above a cut-off."""

    partner: np.ndarray  # [..., k] partner index, -1 where |r| <= threshold (nothing printed)
    r: np.ndarray  # [..., k] the printed r, 0 where nothing printed


def strongest_partners(corr: np.ndarray, units: np.ndarray, threshold: float) -> SeedPartners:
    """For each of `units`, the other unit with the largest |r| in corr [..., U, U] (one matrix
    or a batch of them), kept if |r| > threshold (the seed's print rule).

    As the seed's code ran: its `correlations = correlation[i, :]` is a view, so
    `correlations[i] = 0` zeroes the matrix's diagonal entry, which no later row reads (the
    partners are as if the self-correlation were left out). A unit of zero variance (diagonal 0,
    `correlation_matrix`'s convention) made the seed's `np.corrcoef` NaN in every row, where
    `np.argmax` stops at the first NaN and `abs(nan) > 0.5` is false: nothing was printed."""
    units = np.asarray(units)
    rows = corr[..., units, :]  # [..., k, U]
    magnitude = np.abs(rows)
    magnitude[..., np.arange(len(units)), units] = -1.0  # a unit is not its own partner
    best = np.argmax(magnitude, axis=-1)  # [..., k]
    r = np.take_along_axis(rows, best[..., None], axis=-1)[..., 0]  # [..., k]
    varies = np.all(np.diagonal(corr, axis1=-2, axis2=-1) != 0, axis=-1)  # [...]
    printed = (np.abs(r) > threshold) & varies[..., None]
    return SeedPartners(np.where(printed, best, -1), np.where(printed, r, 0.0))


def printout_holds(printed_r: np.ndarray, strong_r: float) -> np.ndarray:
    """The README's sentence read off a printout [..., k] (a line not printed has r = 0): a
    printed partner with r > strong_r and one with r < -strong_r. [..., k] -> [...] bool."""
    return np.any(printed_r > strong_r, axis=-1) & np.any(printed_r < -strong_r, axis=-1)


def chance_printout(
    inputs: np.ndarray, units: int, listed: np.ndarray, print_r: float, strong_r: float,
    rng: np.random.Generator, draws: int,
) -> float:  # fmt: skip
    """Share of `draws` in which i.i.d. Gaussian units print as the README reads (`printout_holds`
    at strong_r): `units` standard normal values per distinct input, on as many rows of each as
    `inputs` [n] hold (the seed's 500 rows hold 10 distinct first tokens), the partners of
    `listed` printed where |r| > print_r."""
    _, counts = np.unique(inputs, return_counts=True)  # [m] rows of each distinct input
    features = rng.standard_normal((draws, len(counts), units))  # [b,m,u]
    partners = strongest_partners(repeated_correlation(features, counts), listed, print_r)
    return float(np.mean(printout_holds(partners.r, strong_r)))  # [b,k] -> [b] -> share


def repeated_correlation(features: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pearson r of each batch member's units over its distinct rows each repeated `counts`
    times: features [b, m, U], counts [m] -> [b, U, U], without building the repeated rows (the
    row-weighted mean and products). For features no unit of which is constant (Gaussian draws).
    """
    weights = counts / counts.sum()  # [m]
    centered = features - np.einsum("m,bmu->bu", weights, features)[:, None, :]  # [b,m,U]
    scaled = np.sqrt(weights)[:, None] * centered  # [b,m,U]: products weighted by the counts
    unit = scaled / np.linalg.norm(scaled, axis=1, keepdims=True)
    return np.clip(np.swapaxes(unit, 1, 2) @ unit, -1.0, 1.0)  # [b,U,m] @ [b,m,U] -> [b,U,U]


def upper_pairs(corr: np.ndarray) -> np.ndarray:
    """r of every unordered pair of units i < j: [U, U] -> [U (U - 1) / 2]."""
    first, second = np.triu_indices(len(corr), k=1)
    return corr[first, second]


def count_signed_pairs(corr: np.ndarray, threshold: float) -> tuple[int, int]:
    """Pairs with r > threshold and pairs with r < -threshold in corr [U, U] (the seed's
    "strong" and "opposing" pairs)."""
    r = upper_pairs(corr)
    return int(np.sum(r > threshold)), int(np.sum(r < -threshold))


# ---------------------------------------------------------------------------------------------
# Strong pairs, tested with the number of distinct inputs


@dataclass(frozen=True)
class StrongPairs:
    """Every pair of every unit set of one source, with its test."""

    r: np.ndarray  # [pairs] Pearson r
    discovered: np.ndarray  # [pairs] bool: survives Benjamini-Hochberg across all pairs
    strong_r: float

    @property
    def strong(self) -> np.ndarray:
        """[pairs] bool: |r| above the strong cut-off."""
        return np.abs(self.r) > self.strong_r

    @property
    def rate(self) -> float:
        """Share of pairs that are strong and survive BH: the strong-pair rate."""
        return float(np.mean(self.strong & self.discovered))


def strong_pairs(
    correlations: list[np.ndarray], n_effective: int, strong_r: float, fdr: float
) -> StrongPairs:
    """Pairs of all unit sets (correlation matrices [U_s, U_s]) as one family: the t-test p-value
    of each r with n_effective distinct inputs, Benjamini-Hochberg at `fdr` across all of them."""
    r = np.concatenate([upper_pairs(corr) for corr in correlations])  # [pairs]
    # BH never discovers a p-value above its level and p falls as |r| rises, so only pairs with
    # |r| >= r(p = fdr) need a p-value (the costly part): the rest keep p = 1, same discoveries.
    p_values = np.ones_like(r)
    candidates = np.abs(r) >= critical_r(n_effective, fdr)
    p_values[candidates] = correlation_p_value(r[candidates], n_effective)
    return StrongPairs(r, benjamini_hochberg(p_values, fdr), strong_r)


class PairTally:
    """One source's pairs (every unit set's), tallied set by set: what `strong_pairs` finds,
    without holding them all (a gpt2-small source has 60 million). Each set's pairs are tested
    with the set's own number of distinct inputs; only the pairs BH could discover
    (|r| >= critical_r) keep a p-value, the others count as p = 1."""

    def __init__(self, strong_r: float, fdr: float, bins: np.ndarray):
        self.strong_r, self.fdr, self.bins = strong_r, fdr, bins
        self.pairs, self.r_sum, self.strong = 0, 0.0, 0
        self.histogram = np.zeros(len(bins) - 1, dtype=np.int64)  # of |r|
        self.candidates: list[np.ndarray] = []  # r of the pairs BH could discover
        self.p_values: list[np.ndarray] = []  # and their p-values
        self.n_effective: list[int] = []  # of each set

    def add(self, corr: np.ndarray, n_effective: int) -> None:
        """One unit set's correlation matrix [u, u] over n_effective distinct inputs."""
        r = upper_pairs(corr)  # [pairs]
        magnitude = np.abs(r)
        self.pairs += r.size
        self.r_sum += float(r.sum())
        self.strong += int(np.count_nonzero(magnitude > self.strong_r))
        self.histogram += np.histogram(magnitude, self.bins)[0]
        candidates = r[magnitude >= critical_r(n_effective, self.fdr)]
        self.candidates.append(candidates)
        self.p_values.append(correlation_p_value(candidates, n_effective))
        self.n_effective.append(int(n_effective))

    def add_features(self, features: np.ndarray) -> None:
        """One unit set's features [n, u], correlated and tested over their distinct rows."""
        rows = distinct_rows(features)  # [m,u]
        self.add(correlation_matrix(rows), len(rows))

    def summary(self) -> dict:
        """rate (strong and discovered, a share of all pairs), strong, mean_r, abs_r (counts),
        n (the fewest distinct inputs a set of the source rests on)."""
        r, p_values = np.concatenate(self.candidates), np.concatenate(self.p_values)  # [cand.]
        discovered = np.zeros(0, dtype=bool)
        if r.size:
            discovered = bh_adjust(p_values, self.pairs) <= self.fdr
        found = np.count_nonzero(discovered & (np.abs(r) > self.strong_r))
        return {"rate": found / self.pairs, "strong": self.strong,
                "mean_r": self.r_sum / self.pairs, "abs_r": self.histogram,
                "n": min(self.n_effective)}  # fmt: skip


def critical_r(n_effective: int, alpha: float) -> float:
    """|r| at which the two-sided t-test p-value with n_effective inputs is alpha, rounded down
    (by a relative 1e-9) so that no pair with p <= alpha lies below it."""
    df = n_effective - 2
    t = scipy.stats.t.isf(alpha / 2, df)
    return float(t / np.sqrt(df + t**2)) * (1 - 1e-9)


# ---------------------------------------------------------------------------------------------
# Do opposing pairs partition the inputs?


@dataclass(frozen=True)
class Partition:
    """Opposing pairs chosen on discovery inputs, measured on held-out inputs."""

    r: np.ndarray  # [pairs] held-out r
    share: np.ndarray  # [pairs] held-out share of inputs on which exactly one unit is active

    @property
    def gaussian_share(self) -> np.ndarray:
        """[pairs] the share a bivariate Gaussian with the same r would give (median splits)."""
        return gaussian_exactly_one_share(self.r)


def gaussian_exactly_one_share(r: np.ndarray) -> np.ndarray:
    """P(exactly one of X, Y above its median) for a bivariate Gaussian with correlation r:
    1 - 2 P(both above) = 1 - 2 (1/4 + arcsin(r) / (2 pi)) = 1/2 - arcsin(r) / pi."""
    return 0.5 - np.arcsin(r) / np.pi


def above_median(features: np.ndarray) -> np.ndarray:
    """[n, U] bool: each unit active where strictly above its own median over the n inputs.

    One rule for residual dims (no natural zero) and MLP neurons: for a neuron silent on half
    the inputs or more, the median is its floor and "active" means above it."""
    return features > np.median(features, axis=0)  # [n, U] > [U]


def exactly_one_active(features: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Share of inputs on which exactly one unit of each pair (first[k], second[k]) is active:
    features [n, U] -> [pairs]."""
    active = above_median(features)  # [n, U]
    return np.mean(active[:, first] != active[:, second], axis=0)  # [n, pairs] -> [pairs]


def opposing_pairs(corr: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs i < j with r < -threshold in corr [U, U]: (first [pairs], second [pairs])."""
    return np.nonzero(np.triu(corr < -threshold, k=1))


def partition_test(
    features: np.ndarray, discovery: np.ndarray, holdout: np.ndarray, threshold: float
) -> Partition:
    """Opposing pairs (r < -threshold) chosen on the discovery rows of features [n, U], their r
    and exactly-one share measured on the holdout rows."""
    first, second = opposing_pairs(correlation_matrix(features[discovery]), threshold)
    involved, paired = np.unique(np.concatenate([first, second]), return_inverse=True)
    held_out = features[holdout][:, involved]  # [n_holdout, units in a pair]
    first, second = np.split(paired.reshape(-1), 2)  # indices into `involved`
    r = correlation_matrix(held_out)[first, second]  # [pairs]
    return Partition(r, exactly_one_active(held_out, first, second))


def concatenate_partitions(partitions: list[Partition]) -> Partition:
    """The pairs of several unit sets as one Partition."""
    return Partition(
        np.concatenate([part.r for part in partitions]),
        np.concatenate([part.share for part in partitions]),
    )
