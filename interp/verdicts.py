"""From per-seed outcomes to a claim's verdict across seeds.

A claim about random transformers is a claim about the distribution the seeds are drawn from,
so its verdict rests on all the seeds at once. Two kinds of per-seed evidence enter it, each
with a stated error rate:

- **A per-seed test** (a permutation p-value with BH, a fixed rule of the seed's code): the seed
  holds or not. The verdict rests on the rate at which it holds, with a 95% Wilson interval:
  supported when the whole interval lies above the rate the registry demands (`required_rate`),
  refuted when it lies below, inconclusive when it straddles it (`cross_seed_verdict`).
- **A comparison with a null** (the network's statistic against the same statistic of a null on
  the same inputs): never a bare comparison of two point estimates, which under a tie is a coin
  flip that no number of seeds can decide. The **margin rule** (`margin_verdict`): the paired
  differences network - null, one per seed, their mean with a t-interval across seeds (seeds are
  the independent replications), held against the smallest effect of interest, the `margin` the
  registry fixes for that comparison: supported when the interval lies above the margin,
  refuted when it lies below (a tie, a difference of 0, is refuted once there are enough seeds
  to exclude the margin), inconclusive when it straddles it. A supported verdict is wrong at most
  (1 - confidence) / 2 of the time when the true mean difference is at most the margin.

A reading with several parts (e.g. "beyond chance AND beyond the embedding") is their
conjunction (`combined_verdict`): supported if every part is, refuted if any part is,
inconclusive otherwise (an intersection-union test: no correction for the number of parts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.special

from mechclaims.interp.stats import wilson_interval

VERDICTS = ("supported", "refuted", "inconclusive")


@dataclass(frozen=True)
class CrossSeedVerdict:
    verdict: str
    holds: int  # seeds on which the claim held
    seeds: int
    rate_low: float  # 95% Wilson interval of the rate at which it holds
    rate_high: float

    @property
    def rate(self) -> float:
        return self.holds / self.seeds

    def describe(self, required_rate: float) -> str:
        return (
            f"held on {self.holds}/{self.seeds} seeds (95% CI {self.rate_low:.2f}-"
            f"{self.rate_high:.2f}; required rate {required_rate:.2f}): {self.verdict}"
        )


def cross_seed_verdict(holds, required_rate: float, confidence: float = 0.95) -> CrossSeedVerdict:
    """The verdict for per-seed booleans `holds` against the rate a claim must hold at."""
    holds = np.asarray(holds, dtype=bool)
    if holds.ndim != 1 or holds.size == 0:
        raise ValueError(f"holds must be a non-empty 1-D boolean array, got shape {holds.shape}")
    if not 0 < required_rate < 1:
        raise ValueError(f"required_rate must lie in (0, 1), got {required_rate}")
    successes = int(holds.sum())
    low, high = (float(bound) for bound in wilson_interval(successes, holds.size, confidence))
    return CrossSeedVerdict(
        _interval_verdict(low, high, required_rate), successes, int(holds.size), low, high
    )


@dataclass(frozen=True)
class MarginVerdict:
    """The margin rule's verdict on paired differences network - null across seeds."""

    name: str  # which null, e.g. "embedding"
    verdict: str
    mean: float  # mean paired difference
    low: float  # its `confidence` t-interval across seeds
    high: float
    margin: float  # the smallest difference of interest
    seeds: int

    def describe(self) -> str:
        relation = {"supported": ">", "refuted": "<", "inconclusive": "straddles"}[self.verdict]
        return (
            f"network - {self.name} {self.mean:.3g} [{self.low:.3g}, {self.high:.3g}] "
            f"{relation} margin {self.margin:g} ({self.seeds} seeds): {self.verdict}"
        )


def margin_verdict(
    differences, margin: float, confidence: float = 0.95, name: str = "null"
) -> MarginVerdict:
    """The margin rule (module docstring) for `differences` [seeds], network - null per seed."""
    differences = np.asarray(differences, dtype=float)
    if differences.ndim != 1 or differences.size == 0:
        raise ValueError(f"differences must be a non-empty 1-D array, got {differences.shape}")
    if not np.all(np.isfinite(differences)):
        raise ValueError(f"differences of {name!r} must be finite, got {differences}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin of {name!r} must be finite and >= 0, got {margin}")
    mean = float(differences.mean())
    low, high = _mean_interval(differences, confidence)
    verdict = _interval_verdict(low, high, margin)
    return MarginVerdict(name, verdict, mean, low, high, float(margin), int(differences.size))


def _mean_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student's t-interval of the mean; one value gives (-inf, inf): nothing is decided."""
    if values.size < 2:
        return -np.inf, np.inf
    half = scipy.special.stdtrit(values.size - 1, 0.5 + confidence / 2) * values.std(ddof=1)
    half /= np.sqrt(values.size)
    return float(values.mean() - half), float(values.mean() + half)


def _interval_verdict(low: float, high: float, line: float) -> str:
    if low > line:
        return "supported"
    if high < line:
        return "refuted"
    return "inconclusive"


def paired_differences(
    results: list[Mapping], pairs: Mapping[str, tuple[str, str]]
) -> dict[str, np.ndarray]:
    """{null: [seeds]} network - null per seed, from per-seed results and, per null, the names
    of the network's and the null's statistic in them (measured on the same inputs)."""
    return {
        name: np.array([result[network] - result[null] for result in results], dtype=float)
        for name, (network, null) in pairs.items()
    }


def seed_beyond(result: Mapping, pairs: Mapping[str, tuple[str, str]], thresholds: Mapping) -> bool:
    """Whether one seed's differences network - null all exceed their margins (`margin_<null>`
    in `thresholds`). Descriptive: one seed decides nothing, the margin rule across seeds does."""
    return all(
        result[network] - result[null] > thresholds[f"margin_{name}"]
        for name, (network, null) in pairs.items()
    )


def combined_verdict(verdicts) -> str:
    """The conjunction of parts' verdicts: supported if all are, refuted if any is."""
    verdicts = list(verdicts)
    if not verdicts or any(verdict not in VERDICTS for verdict in verdicts):
        raise ValueError(f"need one or more verdicts in {VERDICTS}, got {verdicts}")
    if all(verdict == "supported" for verdict in verdicts):
        return "supported"
    if "refuted" in verdicts:
        return "refuted"
    return "inconclusive"
