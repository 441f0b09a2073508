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
    def position_selective(self) -> np.ndarray:
        return self.position_std > self.threshold

    @property
    def token_selective(self) -> np.ndarray:
        return self.token_std > self.threshold

    @property
    def selective(self) -> np.ndarray:
        """[U] bool: position- or token-selective by the seed's rule (std above threshold)."""
        return self.position_selective | self.token_selective

    @property
    def count(self) -> int:
        """The seed's tally: position-selective units plus token-selective units (a unit that is
        both counts twice, as the seed's two lists do)."""
        return int(self.position_selective.sum() + self.token_selective.sum())


def seed_selectivity(
    acts: np.ndarray, tokens: np.ndarray, threshold: float, vocab: int
) -> SeedSelectivity:
    """The seed's rule (its experiment 3), each unit on its own samples: acts [U, n, T] (unit u's
    activation on its n sequences), tokens [U, n, T] (the sequences). Position-selective if the
    std (ddof 0) of the T per-position means exceeds `threshold`; token-selective if the std of
    the `vocab` per-token means (pooled over positions) does, a token never drawn counting as
    mean 0, as the seed's code has it. For samples shared by all units, broadcast tokens [n, T]
    to [U, n, T]."""
    tokens = np.asarray(tokens)
    if acts.ndim != 3 or tokens.shape not in (acts.shape, acts.shape[1:]):
        raise ValueError(
            f"acts must be [units, n, T] and tokens [units, n, T] or [n, T]; got {acts.shape} "
            f"and {tokens.shape}"
        )
    tokens = np.broadcast_to(tokens, acts.shape)
    units, n, T = acts.shape
    position_means = acts.mean(axis=1)  # [U,T]
    flat_acts, flat_tokens = acts.reshape(units, n * T), tokens.reshape(units, n * T)
    one_hot = flat_tokens[:, None, :] == np.arange(vocab)[None, :, None]  # [U,V,n*T]
    counts = one_hot.sum(axis=2)  # [U,V]
    sums = np.einsum("uvk,uk->uv", one_hot, flat_acts)  # [U,V]
    token_means = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)  # [U,V]
    return SeedSelectivity(position_means.std(axis=1), token_means.std(axis=1), threshold)


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
