"""Consistency of responses to pattern families: z-scores against a reference, agreement within
families and a held-out decoder of the family, each against a null of random relations.

A difference pattern is the relation (x1 - x0, x2 - x1, ...) mod vocab between a sequence's
tokens; its V members start at each token once. The seed's families are unions of them:
ascending (1, 1, 1), descending (-1, -1, -1), repeating (0, 0, 0), alternating (d, -d, d) for
d = 1..V-1. Members of one pattern never share a token at a position, so individual sequences
are not exchangeable with random ones (even a network that adds up per-position token effects
makes them agree LESS than random sequences); whole patterns are. The nulls therefore permute
family labels among patterns, the seed's and random ones alike: do the seed's relations get a
more consistent response than arbitrary relations with the same structure?

Responses are one position's activations, [n inputs, U units]. A labeling gives each pattern a
family code (-1 for none), [P]; many labelings stack as [L, P], the observed one first. All
statistics are computed from per-pattern sums, so L labelings cost one small product each.
Constant responses show no effect: cosine 0, eta² 0, a decoder that predicts one class; never NaN.
The cosine agreement and the nearest-centroid decoder are invariant under a rotation of the unit
basis; the per-unit eta² is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats

from mechclaims.interp.inputs import family_sequences
from mechclaims.interp.stats import (
    PermutationTest,
    permutation_p_value,
    permute_labels,
    stratified_split,
)

# ---------------------------------------------------------------------------------------------
# The seed's reading: how unusual are a few responses among those to random inputs?


def z_scores(responses: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(responses - mean) / std of the reference, per unit: responses [k, U], reference [n, U].

    std is the population std (ddof 0). Against a constant reference, z is 0 for a response equal
    to it and ±inf otherwise. Returns z [k, U].
    """
    mean, std = reference.mean(axis=0), reference.std(axis=0)  # [U], [U]
    constant = np.all(reference == reference[:1], axis=0)  # [U]
    difference = np.where(constant, responses - reference[:1], responses - mean)  # [k, U]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = difference / std
    degenerate = np.where(difference == 0, 0.0, np.copysign(np.inf, difference))
    return np.where(constant, degenerate, z)


def chance_of_extreme(k: int, z_threshold: float) -> float:
    """P(max |z| > z_threshold) over k independent standard normal draws: 1 - P(|z| <= t)^k."""
    inside = 1.0 - 2.0 * scipy.stats.norm.sf(z_threshold)
    return float(1.0 - inside**k)


def empirical_chance_of_extreme(reference_z: np.ndarray, k: int, z_threshold: float) -> float:
    """The same chance from the reference's own z-scores [n], without assuming normality."""
    inside = np.mean(np.abs(reference_z) <= z_threshold)
    return float(1.0 - inside**k)


# ---------------------------------------------------------------------------------------------
# The design: the seed's families and random relations, as whole difference patterns


def difference_patterns(tokens: np.ndarray, vocab: int) -> np.ndarray:
    """Each sequence's relation (x1 - x0, x2 - x1, ...) mod vocab as one base-vocab number.

    tokens [n, L]; returns ids [n] in 0..vocab**(L-1) - 1.
    """
    steps = np.diff(tokens, axis=1) % vocab  # [n, L-1]
    weights = vocab ** np.arange(tokens.shape[1] - 2, -1, -1)  # [L-1], most significant first
    return steps @ weights


def pattern_members(ids: np.ndarray, vocab: int, length: int) -> np.ndarray:
    """All vocab members of each difference pattern, pattern by pattern: [len(ids) * vocab, L]."""
    digits = (ids[:, None] // vocab ** np.arange(length - 2, -1, -1)) % vocab  # [P, L-1]
    offsets = np.concatenate([np.zeros((len(ids), 1), dtype=np.int64), np.cumsum(digits, 1)], 1)
    starts = np.arange(vocab)  # [V]
    return ((starts[None, :, None] + offsets[:, None, :]) % vocab).reshape(-1, length)


@dataclass(frozen=True)
class FamilyDesign:
    """Inputs grouped into difference patterns, some of which form the seed's families."""

    tokens: np.ndarray  # [n, L]
    patterns: np.ndarray  # [n] pattern index of each input, 0..P-1
    families: np.ndarray  # [P] family code of each pattern, -1 for a random relation
    family_names: tuple[str, ...]
    discovery: np.ndarray  # [n] bool: the input trains the decoder; the others test it

    @property
    def n_families(self) -> int:
        return len(self.family_names)

    def labelings(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """The observed family codes of the patterns, then m permutations of them among all
        patterns: [1 + m, P]."""
        return np.concatenate([self.families[None], permute_labels(self.families, rng, m)])


def family_design(
    vocab: int, length: int, n_random_patterns: int, discovery_fraction: float, rng
) -> FamilyDesign:
    """Every member of the seed's families and of `n_random_patterns` other difference patterns
    drawn at random; each pattern split into discovery and holdout members."""
    families = family_sequences(vocab, length)
    family_tokens = np.concatenate(list(families.values()))  # [F, L]
    family_codes = np.repeat(np.arange(len(families)), [len(m) for m in families.values()])
    family_ids = difference_patterns(family_tokens, vocab)  # [F]
    others = np.setdiff1d(np.arange(vocab ** (length - 1)), family_ids)
    random_ids = rng.choice(others, n_random_patterns, replace=False)
    tokens = np.concatenate([family_tokens, pattern_members(random_ids, vocab, length)])
    ids = np.concatenate([family_ids, np.repeat(random_ids, vocab)])  # [n]
    _, first, patterns = np.unique(ids, return_index=True, return_inverse=True)
    row_families = np.concatenate([family_codes, np.full(len(ids) - len(family_ids), -1)])
    split = stratified_split(patterns.reshape(-1), discovery_fraction, rng)
    discovery = np.zeros(len(ids), dtype=bool)
    discovery[split.discovery] = True
    return FamilyDesign(
        tokens=tokens,
        patterns=patterns.reshape(-1),
        families=row_families[first],
        family_names=tuple(families),
        discovery=discovery,
    )


def additive_basis(tokens: np.ndarray, vocab: int) -> np.ndarray:
    """An orthonormal basis [n, r] of every response that adds up one effect per (position,
    token) over the inputs tokens [n, L]: the column space of their indicators."""
    n, length = tokens.shape
    indicators = (tokens[:, :, None] == np.arange(vocab)).reshape(n, length * vocab)  # [n, L*V]
    basis, singular, _ = np.linalg.svd(indicators.astype(np.float64), full_matrices=False)
    return basis[:, singular > 1e-10 * singular[0]]  # [n, r], r = L (V - 1) + 1 if all occur


def additive_residuals(responses: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, float]:
    """What remains of responses [n, U] after their projection on the additive responses
    (`additive_basis`): the part that depends on how the tokens relate. Label-free, so the
    permutation nulls stay exact.

    A unit the additive fit explains to within 1e-9 of its spread (the embedding alone, a
    constant unit) is set to exact zeros rather than rounding noise. Returns (residuals [n, U],
    the share of the total variance the fit explains, 0 for constant responses).
    """
    shifted = responses - responses[:1]  # constant units become exact zeros
    centered = shifted - shifted.mean(axis=0)  # [n, U]
    residuals = shifted - basis @ (basis.T @ shifted)  # [n, r] @ [r, U] -> [n, U]
    spread = np.linalg.norm(centered, axis=0)  # [U]
    residuals[:, np.linalg.norm(residuals, axis=0) <= 1e-9 * spread] = 0.0
    total = np.sum(spread**2)
    share = float(1.0 - np.sum(residuals**2) / total) if total > 0 else 0.0
    return residuals, share


def against_null(values: np.ndarray) -> PermutationTest:
    """values [1 + m, ...] of a statistic under the observed labeling, then m permuted ones."""
    return PermutationTest(values[0], values[1:], permutation_p_value(values[0], values[1:]))


# ---------------------------------------------------------------------------------------------
# Statistics under many labelings


def centered_directions(responses: np.ndarray) -> np.ndarray:
    """Responses [n, U] minus their mean over inputs, each row scaled to unit length.

    Rows that are zero after centering (an input answered like the mean, or constant
    responses) stay zero: their cosine with anything is 0. Returns [n, U].
    """
    shifted = responses - responses[:1]  # constant columns become exact zeros
    centered = shifted - shifted.mean(axis=0)  # [n, U]
    norms = np.linalg.norm(centered, axis=1, keepdims=True)  # [n, 1]
    return centered / np.where(norms > 0, norms, 1.0)


def family_agreement(responses: np.ndarray, design: FamilyDesign, labelings: np.ndarray):
    """Mean pairwise cosine of centered responses within each family, per labeling.

    The sum over a family's pairs is |sum of its rows|² minus its rows' squared lengths, both
    summed pattern by pattern. labelings [L, P]; returns [L, families].
    """
    directions = centered_directions(responses)  # [n, U]
    sums, _ = _pattern_sums(directions, design)  # [P, U]
    self_terms, sizes = _pattern_sums(np.sum(directions**2, axis=1, keepdims=True), design)
    one_hot = _family_one_hot(labelings, design.n_families)  # [L, k, P]
    family_sums = _per_family(one_hot, sums)  # [L, k, U]
    counts = one_hot @ sizes  # [L, k]
    pair_sums = np.sum(family_sums**2, axis=-1) - (one_hot @ self_terms[:, 0])  # [L, k]
    return pair_sums / (counts * (counts - 1))


def family_eta_squared(responses: np.ndarray, design: FamilyDesign, labelings: np.ndarray):
    """Share of each unit's variance over the family members explained by the family, per
    labeling: [L, U]. 0 for a unit constant over them."""
    shifted = responses - responses[:1]  # [n, U]; constant units become exact zeros
    sums, sizes = _pattern_sums(shifted, design)  # [P, U], [P]
    squares, _ = _pattern_sums(shifted**2, design)  # [P, U]
    one_hot = _family_one_hot(labelings, design.n_families)  # [L, k, P]
    family_sums = _per_family(one_hot, sums)  # [L, k, U]
    counts = one_hot @ sizes  # [L, k]
    total = family_sums.sum(axis=1)  # [L, U]
    correction = total**2 / counts.sum(axis=1, keepdims=True)  # [L, U]
    ss_between = np.sum(family_sums**2 / counts[..., None], axis=1) - correction
    ss_total = one_hot.sum(axis=1) @ squares - correction  # [L, U]
    safe_total = np.where(ss_total > 0, ss_total, 1.0)
    return np.where(ss_total > 0, np.clip(ss_between / safe_total, 0.0, 1.0), 0.0)


def decoder_accuracy(responses: np.ndarray, design: FamilyDesign, labelings: np.ndarray):
    """Balanced holdout accuracy of a nearest-centroid family decoder, per labeling: [L].

    Centroids are the family means of the discovery members; each holdout member of a labelled
    pattern is assigned the family of the nearest centroid (Euclidean; ties to the lowest code).
    Chance is 1 / families whatever the family sizes.
    """
    k = design.n_families
    disc = design.discovery
    sums, sizes = _pattern_sums(responses[disc], design, disc)  # [P, U], [P]
    one_hot = _family_one_hot(labelings, k)  # [L, k, P]
    centroids = _per_family(one_hot, sums) / (one_hot @ sizes)[..., None]  # [L, k, U]
    centroids = centroids.reshape(-1, responses.shape[1])  # [L*k, U]
    holdout = responses[~disc]  # [t, U]
    # |x - c|² = |x|² - 2 x.c + |c|²; |x|² is the same for every centroid of a holdout row.
    distances = np.sum(centroids**2, axis=1) - 2.0 * (holdout @ centroids.T)  # [t, L*k]
    predictions = np.argmin(distances.reshape(len(holdout), -1, k), axis=-1).T  # [L, t]
    truth = labelings[:, design.patterns[~disc]]  # [L, t], -1 for unlabelled patterns
    truth_one_hot = truth[:, None, :] == np.arange(k)[:, None]  # [L, k, t]
    correct = truth_one_hot & (predictions == truth)[:, None, :]  # [L, k, t]
    return np.mean(correct.sum(axis=-1) / truth_one_hot.sum(axis=-1), axis=-1)


def _pattern_sums(values: np.ndarray, design: FamilyDesign, rows=None):
    """Sums of values [n, U] over each pattern's rows, [P, U], and the rows per pattern [P]
    (only `rows`, a boolean mask, if given: values then hold those rows only)."""
    patterns = design.patterns if rows is None else design.patterns[rows]
    n_patterns = len(design.families)
    one_hot = (patterns[None, :] == np.arange(n_patterns)[:, None]).astype(np.float64)  # [P, n]
    return one_hot @ values, one_hot.sum(axis=1)


def _family_one_hot(labelings: np.ndarray, k: int) -> np.ndarray:
    """Family codes of the patterns [L, P] (-1: none) as indicators [L, k, P]."""
    return (labelings[:, None, :] == np.arange(k)[:, None]).astype(np.float64)


def _per_family(one_hot: np.ndarray, pattern_sums: np.ndarray) -> np.ndarray:
    """Family sums [L, k, U] from pattern sums [P, U], as one 2-D product."""
    L, k, P = one_hot.shape
    return (one_hot.reshape(L * k, P) @ pattern_sums).reshape(L, k, -1)
