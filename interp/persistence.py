"""Does the selectivity of units persist through training? Measurements for claim 6.

- `anova_by_factor`: one-way ANOVA of each unit by token and by position, its p-values and its
  eta² (one pass: eta² follows from F), what both rules below read.
- `notebook_selectivity`: the seed notebook's rule, significant after a Bonferroni correction.
- `selective_by_factor`: a controlled rule, Benjamini-Hochberg across units and both factors
  and an effect of at least a given eta².
- `overlap_test`: how many units selective before training are selective after it, against
  random matching of units (the hypergeometric distribution of the overlap of two random sets
  of the observed sizes), with an effect size (phi, the correlation of the two memberships).
- `rank_agreement`: the rank correlation across units of a statistic before and after
  training, against shuffled unit identities.
- `train_from_init`: a model trained on a fixed data set, its untrained twin, and how much it
  learned.

Activations are [n sequences, T positions, U units] with the tokens [n, T] that produced them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats

from mechclaims.interp.inputs import balanced_sequences
from mechclaims.interp.stats import (
    benjamini_hochberg,
    cross_correlation,
    one_way_anova,
    permutation_p_value,
)
from mechclaims.model.train import TrainSettings, train_epochs
from mechclaims.model.transformer import Transformer

_MAX_REDRAWS = 1000  # draws of a held-out design before giving up


@dataclass(frozen=True)
class NotebookSelectivity:
    """Per unit: eta² of the token and of the position, and whether each one-way ANOVA is
    significant after Bonferroni."""

    token_eta2: np.ndarray  # [U]
    position_eta2: np.ndarray  # [U]
    token_selective: np.ndarray  # [U] bool
    position_selective: np.ndarray  # [U] bool

    @property
    def both_selective(self) -> np.ndarray:
        """[U] bool: token- and position-selective, as the notebook said all neurons are."""
        return self.token_selective & self.position_selective


@dataclass(frozen=True)
class FactorAnova:
    """One-way ANOVA of each unit by token (row 0) and by position (row 1)."""

    eta2: np.ndarray  # [2, U] SS_between / SS_total
    p_value: np.ndarray  # [2, U]


def anova_by_factor(acts: np.ndarray, tokens: np.ndarray) -> FactorAnova:
    """One-way ANOVA of each unit by current token (pooled over positions) and by position, as
    `scipy.stats.f_oneway`, and eta² from the same pass: SS_between / SS_total =
    F df_b / (F df_b + df_w) (1 when every group is constant, F infinite; 0 for a constant
    unit, F = 0)."""
    rows, flat_tokens, positions = _rows(acts, tokens)
    eta2, p_values = [], []
    for labels in (flat_tokens, positions):
        anova = one_way_anova(rows, labels)
        between, within = len(np.unique(labels)) - 1, len(labels) - len(np.unique(labels))
        explained = anova.statistic * between  # [U]
        with np.errstate(invalid="ignore"):
            eta2.append(np.where(np.isinf(explained), 1.0, explained / (explained + within)))
        p_values.append(anova.p_value)
    return FactorAnova(np.stack(eta2), np.stack(p_values))


def notebook_selectivity(acts: np.ndarray, tokens: np.ndarray, alpha: float) -> NotebookSelectivity:
    """The notebook's rule (its `analyze_selectivity`): one-way ANOVA of each unit by current
    token (pooled over positions) and by position; significant if p < alpha / U, Bonferroni over
    the U units given (the notebook: one layer's MLP neurons), each test on its own."""
    anova = anova_by_factor(acts, tokens)
    significant = anova.p_value < alpha / acts.shape[-1]  # [2,U]
    return NotebookSelectivity(*anova.eta2, *significant)


def selective_by_factor(anova: FactorAnova, fdr: float, min_eta2: float) -> np.ndarray:
    """[2, U] bool: token- (row 0) and position-selective (row 1) units: an effect that survives
    Benjamini-Hochberg at `fdr` across all units and both factors, and explains at least
    `min_eta2` of the unit's variance (claim 3's rule, with ANOVA's p-values)."""
    return benjamini_hochberg(anova.p_value, fdr) & (anova.eta2 >= min_eta2)


@dataclass(frozen=True)
class Tracked:
    """The notebook's persistence tracking of one layer and factor: its most selective units
    at init, and their eta² after training (0 where no longer significant)."""

    units: np.ndarray  # [k] indices of the tracked units
    initial_eta2: np.ndarray  # [k]
    final_eta2: np.ndarray  # [k]
    maintained: np.ndarray  # [k] bool

    @property
    def persistence(self) -> float | None:
        """Share of tracked units maintained; None when no unit was significant at init."""
        return float(self.maintained.mean()) if self.units.size else None


def tracked_persistence(
    initial: NotebookSelectivity,
    trained: NotebookSelectivity,
    factor: str,
    top: int,
    min_eta2: float,
    min_ratio: float,
) -> Tracked:
    """The notebook's `train_and_track` for one factor ("token" or "position"): the `top`
    significant units of largest eta² at init; after training, a unit's eta² if still
    significant, else 0; maintained if that is above `min_eta2` and above `min_ratio` times its
    initial eta²."""
    selective = getattr(initial, f"{factor}_selective")
    eta2 = getattr(initial, f"{factor}_eta2")
    candidates = np.flatnonzero(selective)
    units = candidates[np.argsort(-eta2[candidates], kind="stable")[:top]]  # [k]
    still = getattr(trained, f"{factor}_selective")[units]
    final = np.where(still, getattr(trained, f"{factor}_eta2")[units], 0.0)
    maintained = (final > min_eta2) & (final > min_ratio * eta2[units])
    return Tracked(units, eta2[units], final, maintained)


def eta2_by_factor(acts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Eta² of each unit by current token (pooled over positions) and by position: [2, U]."""
    return anova_by_factor(acts, tokens).eta2


@dataclass(frozen=True)
class Overlap:
    """The overlap of the selective sets before (S0) and after (S1) training, among U units."""

    units: int  # U
    initial: int  # |S0|
    trained: int  # |S1|
    shared: int  # |S0 ∩ S1|
    p_value: float  # P(overlap >= shared) if S1 were a random subset of the units of its size

    @property
    def persistence(self) -> float:
        """|S0 ∩ S1| / |S0|: the share of initially selective units still selective; 0 if S0
        is empty."""
        return self.shared / self.initial if self.initial else 0.0

    @property
    def random_persistence(self) -> float:
        """|S1| / U: the persistence expected when units are matched at random."""
        return self.trained / self.units

    @property
    def phi(self) -> float | None:
        """The phi coefficient of membership in S0 and in S1 across the units (their Pearson
        correlation; 0 when matching is random, 1 when S1 = S0). None when S0 or S1 holds every
        unit or none: membership that does not vary says nothing about which units persisted."""
        margins = (self.initial, self.units - self.initial, self.trained, self.units - self.trained)
        if min(margins) == 0:
            return None
        both_out = self.units - self.initial - self.trained + self.shared
        only = (self.initial - self.shared) * (self.trained - self.shared)
        return float((self.shared * both_out - only) / np.sqrt(np.prod(margins, dtype=float)))


def overlap_test(initial: np.ndarray, trained: np.ndarray) -> Overlap:
    """Overlap of two selective sets (bool [U] each) against random matching of units.

    The null draws S1 as a uniformly random subset of the U units with the observed size: the
    overlap is hypergeometric (population U, |S0| marked, |S1| drawn). When S0 or S1 holds every
    unit (or none), the overlap is fixed by the sizes and p = 1: it says nothing about which
    units persisted.
    """
    initial, trained = np.asarray(initial, dtype=bool), np.asarray(trained, dtype=bool)
    if initial.ndim != 1 or initial.shape != trained.shape or initial.size == 0:
        raise ValueError(
            f"initial and trained must be non-empty bool [U] of one shape, got {initial.shape} "
            f"and {trained.shape}"
        )
    units, n_initial, n_trained = initial.size, int(initial.sum()), int(trained.sum())
    shared = int(np.count_nonzero(initial & trained))
    p_value = scipy.stats.hypergeom(units, n_initial, n_trained).sf(shared - 1)
    return Overlap(units, n_initial, n_trained, shared, float(min(p_value, 1.0)))


@dataclass(frozen=True)
class RankAgreement:
    correlation: float  # Spearman rank correlation across units
    null: np.ndarray  # [m] the same with unit identities shuffled
    p_value: float  # one-sided: agreement at least as large as observed

    @property
    def null_high(self) -> float:
        """The 95th percentile of the null: what random matching of units reaches."""
        return float(np.percentile(self.null, 95))

    @property
    def null_mean(self) -> float:
        """The mean of the null: the correlation random matching of units gives on average."""
        return float(self.null.mean())


def rank_agreement(
    initial: np.ndarray, trained: np.ndarray, rng: np.random.Generator, n_permutations: int
) -> RankAgreement:
    """Spearman correlation across units of a statistic before and after training ([U] each),
    held against shuffled unit identities: the trained values permuted among the units.

    A constant statistic (all units alike) has correlation 0 and p = 1.
    """
    initial_ranks, trained_ranks = _ranks(initial, trained)  # [U,1] each
    shuffled = rng.permuted(np.tile(trained_ranks.T, (n_permutations, 1)), axis=1)  # [m,U]
    observed = cross_correlation(initial_ranks, trained_ranks)[0, 0]
    null = cross_correlation(initial_ranks, shuffled.T)[0]  # [U,1] x [U,m] -> [m]
    return RankAgreement(float(observed), null, float(permutation_p_value(observed, null)))


def rank_correlation(initial: np.ndarray, trained: np.ndarray) -> float:
    """Spearman correlation across units of two statistics [U]; 0 if either is constant."""
    initial_ranks, trained_ranks = _ranks(initial, trained)
    return float(cross_correlation(initial_ranks, trained_ranks)[0, 0])


def heldout_balanced_sequences(
    design: np.ndarray, rng: np.random.Generator, n: int, vocab: int
) -> np.ndarray:
    """A balanced design of `n` sequences (as `inputs.balanced_sequences`) sharing no
    sequence with `design` [n0, T]: redrawn until disjoint (a clash is rare: vocab**T
    sequences). [n, T]"""
    length = design.shape[1]
    place_values = vocab ** np.arange(length, dtype=np.int64)  # [T]: a sequence as one integer
    taken = design @ place_values  # [n0]
    for _ in range(_MAX_REDRAWS):
        fresh = balanced_sequences(rng, n, vocab, length)
        if not np.isin(fresh @ place_values, taken).any():
            return fresh
    raise ValueError(
        f"no balanced design of {n} sequences disjoint from the {len(design)} given was found in "
        f"{_MAX_REDRAWS} draws: too few sequences of length {length} over {vocab} tokens are left"
    )


@dataclass(frozen=True)
class TrainedPair:
    """A model before and after training, and what training achieved."""

    initial: Transformer
    trained: Transformer
    losses: np.ndarray  # [steps] training loss per step
    initial_accuracy: dict[str, float]  # next-token accuracy per pattern family, before
    trained_accuracy: dict[str, float]  # after


def train_from_init(
    model: Transformer,
    sequences: np.ndarray,
    epochs: int,
    settings: TrainSettings,
    families: dict[str, np.ndarray],
) -> TrainedPair:
    """Train a copy of `model` for `epochs` passes over the data set `sequences` [n, L]
    (`model.train.train_epochs`); keep `model` as the untrained twin.

    `families` maps a pattern family to sequences of it [members, L] (tokens and the next
    token); accuracy is the share of next tokens predicted by argmax, over every position.
    """
    trained = Transformer.from_params(
        model.cfg, {name: value.copy() for name, value in model.params.items()}
    )
    result = train_epochs(trained, sequences, epochs, settings)
    return TrainedPair(
        initial=model,
        trained=trained,
        losses=np.asarray(result.losses),
        initial_accuracy=family_accuracy(model, families),
        trained_accuracy=family_accuracy(trained, families),
    )


def family_accuracy(model: Transformer, families: dict[str, np.ndarray]) -> dict[str, float]:
    """{family: share of next tokens the model's argmax predicts}, over members and positions."""
    accuracy = {}
    for name, sequences in families.items():
        predicted = model(sequences[:, :-1]).argmax(axis=-1)  # [members,L,V] -> [members,L]
        accuracy[name] = float(np.mean(predicted == sequences[:, 1:]))
    return accuracy


def _ranks(initial: np.ndarray, trained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks (ties averaged) of two statistics [U] as columns [U, 1]."""
    initial, trained = np.asarray(initial, dtype=float), np.asarray(trained, dtype=float)
    if initial.ndim != 1 or initial.shape != trained.shape or initial.size < 2:
        raise ValueError(
            f"initial and trained must be [U] of one shape with U >= 2, got {initial.shape} "
            f"and {trained.shape}"
        )
    return scipy.stats.rankdata(initial)[:, None], scipy.stats.rankdata(trained)[:, None]


def _rows(acts: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations [n,T,U] as rows [n*T, U], with each row's token [n*T] and position [n*T]."""
    if acts.ndim != 3 or tokens.shape != acts.shape[:2]:
        raise ValueError(
            f"acts must be [n, T, units] and tokens [n, T]; got {acts.shape} and {tokens.shape}"
        )
    n, T, U = acts.shape
    return acts.reshape(n * T, U), tokens.reshape(-1), np.tile(np.arange(T), n)
