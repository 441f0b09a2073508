"""Token and position selectivity of units: the seed's measure, and a controlled test.

Activations are [n sequences, T positions, U units] with the tokens [n, T] that produced them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mechclaims.interp.stats import benjamini_hochberg, permutation_test_eta_squared


@dataclass(frozen=True)
class SeedSelectivity:
    """The seed's numbers: spread of a unit's mean over positions and over tokens."""

    position_std: np.ndarray  # [U] std of the T per-position means
    token_std: np.ndarray  # [U] std of the per-token means, pooled over positions
    threshold: float

    @property
    def selective(self) -> np.ndarray:
        """[U] bool: position- or token-selective by the seed's rule (std above threshold)."""
        return (self.position_std > self.threshold) | (self.token_std > self.threshold)


def seed_selectivity(acts: np.ndarray, tokens: np.ndarray, threshold: float) -> SeedSelectivity:
    """The seed's rule: selective if the std of per-position (or per-token) means > threshold."""
    _check_shapes(acts, tokens)
    n, T, U = acts.shape
    position_means = acts.mean(axis=0)  # [T,U]
    flat_tokens = tokens.reshape(-1)
    present = np.unique(flat_tokens)  # tokens that occur (a random draw may miss one)
    one_hot = (flat_tokens[None, :] == present[:, None]).astype(acts.dtype)  # [k, n*T]
    token_means = (one_hot @ acts.reshape(n * T, U)) / one_hot.sum(axis=1, keepdims=True)  # [k,U]
    return SeedSelectivity(position_means.std(axis=0), token_means.std(axis=0), threshold)


@dataclass(frozen=True)
class SelectivityTest:
    """Share of each unit's variance explained by the current token and by the position,
    each with a permutation p-value."""

    token_eta2: np.ndarray  # [U]
    token_p: np.ndarray  # [U]
    position_eta2: np.ndarray  # [U]
    position_p: np.ndarray  # [U]

    def selective_by_factor(self, fdr: float, min_eta2: float) -> np.ndarray:
        """[2, U] bool: token- (row 0) and position-selective (row 1) units: an effect that
        survives Benjamini-Hochberg at `fdr` across all units and both tests, and explains at
        least `min_eta2` of the unit's variance."""
        discoveries = benjamini_hochberg(np.stack([self.token_p, self.position_p]), fdr)  # [2,U]
        return discoveries & (np.stack([self.token_eta2, self.position_eta2]) >= min_eta2)

    def selective(self, fdr: float, min_eta2: float) -> np.ndarray:
        """[U] bool: token- or position-selective (see `selective_by_factor`)."""
        return self.selective_by_factor(fdr, min_eta2).any(axis=0)


def selectivity_test(
    acts: np.ndarray, tokens: np.ndarray, rng: np.random.Generator, n_permutations: int
) -> SelectivityTest:
    """Eta² of each unit by current token (pooled over positions) and by position.

    The nulls keep the design's other factor: token labels are permuted among rows of the same
    position, position labels among the positions of the same sequence.
    """
    _check_shapes(acts, tokens)
    n, T, U = acts.shape
    rows = acts.reshape(n * T, U)
    positions = np.tile(np.arange(T), n)  # [n*T]
    sequences = np.repeat(np.arange(n), T)  # [n*T]
    by_token = permutation_test_eta_squared(
        rows, tokens.reshape(-1), rng=rng, n_permutations=n_permutations, strata=positions
    )
    by_position = permutation_test_eta_squared(
        rows, positions, rng=rng, n_permutations=n_permutations, strata=sequences
    )
    return SelectivityTest(
        by_token.observed, by_token.p_values, by_position.observed, by_position.p_values
    )


def _check_shapes(acts: np.ndarray, tokens: np.ndarray) -> None:
    if acts.ndim != 3 or tokens.shape != acts.shape[:2]:
        raise ValueError(
            f"acts must be [n, T, units] and tokens [n, T]; got {acts.shape} and {tokens.shape}"
        )
