"""From per-seed outcomes to a claim's verdict across seeds.

A claim about random transformers is a claim about the distribution the seeds are drawn from,
so its verdict rests on the rate at which it holds across seeds, with a Wilson interval:
supported when the whole interval lies above the rate the registry demands, refuted when it
lies below, inconclusive when the interval straddles it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    if low > required_rate:
        verdict = "supported"
    elif high < required_rate:
        verdict = "refuted"
    else:
        verdict = "inconclusive"
    return CrossSeedVerdict(verdict, successes, int(holds.size), low, high)
