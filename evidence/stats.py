"""Summary statistics of a claim across tests: Wilson interval of a pass rate, spread of a value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from mechclaims.evidence.values import round_float


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (no continuity correction).

    center = (k + z²/2) / (n + z²),  half-width = z sqrt(k (n - k) / n + z²/4) / (n + z²).
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1; got {successes}/{trials}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    center = (successes + z**2 / 2) / (trials + z**2)
    half_width = (
        z * math.sqrt(successes * (trials - successes) / trials + z**2 / 4) / (trials + z**2)
    )
    # At k = 0 and k = n the bound is exactly 0 or 1; the formula leaves rounding noise there.
    low = 0.0 if successes == 0 else center - half_width
    high = 1.0 if successes == trials else center + half_width
    return low, high


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """Median and central 95% range (2.5th to 97.5th percentile, linear) of `values`."""
    low, median, high = np.percentile(np.asarray(values, dtype=float), [2.5, 50.0, 97.5])
    return {
        "n": len(values),
        "median": round_float(float(median)),
        "low": round_float(float(low)),
        "high": round_float(float(high)),
    }
