"""Consistency of responses to pattern families: z-scores against a reference, agreement within
families and a held-out decoder of the family, each against a null of random relations; the
seed's families against layout-matched stand-ins.

A difference pattern is the relation (x1 - x0, x2 - x1, ...) mod vocab between a sequence's
tokens; its V members start at each token once. The seed's families are unions of them:
ascending (1, 1, 1), descending (-1, -1, -1), repeating (0, 0, 0), alternating (d, -d, d) for
d = 1..V-1. Members of one pattern never share a token at a position, so individual sequences
are not exchangeable with random ones (even a network that adds up per-position token effects
makes them agree LESS than random sequences); whole patterns are. The nulls therefore permute
family labels among patterns, the seed's and random ones alike: do the seed's relations get a
more consistent response than arbitrary relations with the same structure?

That null does not ask whether the seed's relations are the ones that matter. A relation's
layout (which positions hold the same token) already sets the seed's families apart: ascending
and descending hold four distinct tokens, repeating one, alternating two twice (ABAB). A network
that encodes only the layout makes them consistent beyond random relations, most of which have
other layouts. The layout-matched design (`layout_matched`, `family_designs`) puts in each
family's place relations the seed did not name with the same layout shape: one random
all-distinct relation each for ascending and descending, every relation of AABB or ABBA for
alternating; repeating (all equal: one relation of its shape) stands for itself. The same
statistics on both designs, paired, ask what the seed's relations add to their layout.

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

from mechclaims.interp.inputs import family_sequences, token_layouts
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


def pattern_starts(ids: np.ndarray, vocab: int, length: int) -> np.ndarray:
    """The member of each difference pattern that starts at token 0: [len(ids), L]."""
    digits = (ids[:, None] // vocab ** np.arange(length - 2, -1, -1)) % vocab  # [P, L-1]
    steps = np.concatenate([np.zeros((len(ids), 1), dtype=np.int64), digits], axis=1)  # [P, L]
    return np.cumsum(steps, axis=1) % vocab


def pattern_members(ids: np.ndarray, vocab: int, length: int) -> np.ndarray:
    """All vocab members of each difference pattern, pattern by pattern, each pattern's in order
    of their start token: [len(ids) * vocab, L]."""
    starts = np.arange(vocab)  # [V]
    offsets = pattern_starts(ids, vocab, length)  # [P, L]
    return ((starts[None, :, None] + offsets[:, None, :]) % vocab).reshape(-1, length)


def layout_matched(
    family_ids: list[np.ndarray], vocab: int, length: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Stand-ins of families of difference patterns (their ids, family by family) with the same
    layout of repeated tokens, built from relations no family holds, drawn at random.

    A relation's layout is which positions hold the same token (`token_layouts`), its shape the
    sizes of those groups. A family of one relation gets one relation of the same shape (for
    ascending and descending: a random all-distinct relation, each its own); a family of several
    relations, every relation of its layout (alternating: the V - 1 of ABAB), gets every relation
    of another layout with as many (AABB or ABBA). A family whose shape no other relation has
    (repeating: all equal is one relation) stands for itself. Returns pattern ids per family.
    """
    every = np.arange(vocab ** (length - 1))  # [N] every relation, as its id
    layouts = token_layouts(pattern_starts(every, vocab, length))  # [N, L]
    layout = np.unique(layouts, axis=0, return_inverse=True)[1].reshape(-1)  # [N]
    group_sizes = np.sort((layouts[:, :, None] == np.arange(length)).sum(axis=1), axis=1)
    shape = np.unique(group_sizes, axis=0, return_inverse=True)[1].reshape(-1)  # [N]
    free = ~np.isin(every, np.concatenate(family_ids))  # [N]
    stand_ins = []
    for ids in family_ids:
        candidates = every[free & (shape == shape[ids[0]])]
        if len(ids) == 1:
            chosen = rng.choice(candidates, 1) if len(candidates) else ids
        else:  # a whole layout's relations: another layout's, whole
            counts = np.bincount(layout[candidates], minlength=layout.max() + 1)  # [layouts]
            whole = np.flatnonzero(counts == len(ids))
            chosen = candidates[layout[candidates] == rng.choice(whole)] if len(whole) else ids
        free[chosen] = False
        stand_ins.append(np.sort(chosen))
    return stand_ins


@dataclass(frozen=True)
class FamilyDesign:
    """Inputs grouped into difference patterns, some of which form families."""

    tokens: np.ndarray  # [n, L]
    patterns: np.ndarray  # [n] pattern index of each input, 0..P-1
    families: np.ndarray  # [P] family code of each pattern, -1 for a random relation
    family_names: tuple[str, ...]
    discovery: np.ndarray  # [n] bool: the input trains the decoder; the others test it
    pattern_ids: np.ndarray  # [P] each pattern's relation (`difference_patterns`)

    @property
    def n_families(self) -> int:
        return len(self.family_names)

    def labelings(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """The observed family codes of the patterns, then m permutations of them among all
        patterns: [1 + m, P]."""
        return np.concatenate([self.families[None], permute_labels(self.families, rng, m)])


def family_designs(
    vocab: int, length: int, n_random_patterns: int, discovery_fraction: float, rng
) -> tuple[FamilyDesign, FamilyDesign]:
    """Two designs: every member of the seed's families, and of their layout-matched stand-ins
    (`layout_matched`; the same family names), each beside the same `n_random_patterns` other
    relations drawn at random (none of either design's families). Each pattern's members are
    split once into discovery and holdout, so the patterns both designs hold (the random
    relations, the repeating family) are split alike in both."""
    families = family_sequences(vocab, length)
    seed_ids = [np.unique(difference_patterns(members, vocab)) for members in families.values()]
    matched_ids = layout_matched(seed_ids, vocab, length, rng)
    held = np.concatenate([*seed_ids, *matched_ids])
    others = np.setdiff1d(np.arange(vocab ** (length - 1)), held)
    random_ids = rng.choice(others, n_random_patterns, replace=False)
    every = np.unique(np.concatenate([held, random_ids]))  # [P'] each pattern of both once
    split = stratified_split(np.repeat(np.arange(len(every)), vocab), discovery_fraction, rng)
    discovery = np.zeros(len(every) * vocab, dtype=bool)
    discovery[split.discovery] = True
    by_start = discovery.reshape(len(every), vocab)  # [P', V]: member of each start token
    seed, matched = (
        _family_design(family_ids, random_ids, tuple(families), every, by_start, vocab, length)
        for family_ids in (seed_ids, matched_ids)
    )
    return seed, matched


def _family_design(family_ids, random_ids, names, every, by_start, vocab, length) -> FamilyDesign:
    """Families (pattern ids, family by family) beside random relations (ids), each pattern's
    members split as its row of `by_start` [len(every), V] says (`every`: sorted ids)."""
    ids = np.concatenate([*family_ids, random_ids])  # [P]
    codes = [np.full(len(members), code) for code, members in enumerate(family_ids)]
    return FamilyDesign(
        tokens=pattern_members(ids, vocab, length),  # [P * V, L]
        patterns=np.repeat(np.arange(len(ids)), vocab),  # [P * V]
        families=np.concatenate([*codes, np.full(len(random_ids), -1)]),  # [P]
        family_names=names,
        discovery=by_start[np.searchsorted(every, ids)].reshape(-1),  # [P * V]
        pattern_ids=ids,
    )


def shared_inputs(*designs: FamilyDesign) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every input of the designs once, [n, L], and each design's rows in it (one forward pass
    serves them all)."""
    stacked = np.concatenate([design.tokens for design in designs])  # [sum n_d, L]
    tokens, inverse = np.unique(stacked, axis=0, return_inverse=True)
    ends = np.cumsum([len(design.tokens) for design in designs])[:-1]
    return tokens, np.split(inverse.reshape(-1), ends)


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


def decoder_recall(responses: np.ndarray, design: FamilyDesign, labelings: np.ndarray):
    """Holdout recall of each family by a nearest-centroid family decoder, per labeling: [L, k].

    Centroids are the family means of the discovery members; each holdout member of a labelled
    pattern is assigned the family of the nearest centroid (Euclidean; ties to the lowest code).
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
    return correct.sum(axis=-1) / truth_one_hot.sum(axis=-1)


def decoder_accuracy(responses: np.ndarray, design: FamilyDesign, labelings: np.ndarray):
    """Balanced holdout accuracy of the nearest-centroid family decoder (`decoder_recall`'s mean
    over the families), per labeling: [L]. Chance is 1 / families whatever the family sizes."""
    return decoder_recall(responses, design, labelings).mean(axis=-1)


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
