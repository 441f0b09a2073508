"""One model against its random baselines: is what a checkpoint shows more than random?

A claim's statistic on the checkpoint, x, is held against the same statistic on N random
initializations of the checkpoint's config (the baselines), all measured on the same inputs and
nulls. One case against a small sample is its own problem: with N = 20 a rank p-value never
falls below 1/21, so rank alone could never say "unlike" after a correction for a dozen
readings. The test statistic is Crawford and Howell's (1998) single-case t:
t = (x - mean) / (sd sqrt((N + 1) / N)), N - 1 degrees of freedom, two-sided, exact when x and the
baselines are draws of one normal. The rank p-value (b + 1) / (N + 1) and x's percentile among
the baselines are reported beside it, and the Benjamini-Hochberg q-values of the t's p-values
across the claims and readings.

Our baselines are not normal (a claim's statistic across random inits is skewed, heavy-tailed,
even discrete): the t's p-values are then too small, and the calibration check (claims/
test_checkpoint_checks.py) flagged 4 of 20 random-init checkpoints as unlike-random on some
claim. So the decision does not take the t's p-values at their word; it uses them as test
statistics in a max-T (Westfall and Young) adjustment whose null is the baselines themselves:
the checkpoint and the N baselines are N + 1 draws of one distribution when the checkpoint is
random, so each member's smallest p-value over the readings (each value against the N others) is
exchangeable, and the adjusted p of a reading is (1 + the baselines whose smallest p is at most
the checkpoint's p there) / (N + 1). Unlike-random on any reading then happens with probability
at most 1 / (N + 1) for a random checkpoint, whatever the distributions: 0.048 with N = 20.

    unlike-random   adjusted p <= the level; `direction` says whether x is higher or lower
    like-random     not significant, and inside the baselines' central 90%
    inconclusive    otherwise (not significant, but outside the central 90%)

Calibration (claims/test_checkpoint_checks.py, `-m calibration`). The judge's false-flag rate is
the chance that a random checkpoint, judged against N random baselines, is unlike-random on some
reading. It is measured on a pool of G groups of N + 1 random-init checkpoints, each member
judged against the N others of its group: every judgement is that of a random checkpoint against
independent baselines, the groups are independent (a rate estimated against one shared set of
baselines would be the rate given those baselines), and the measurements are shared (a member is
measured once, judged once and a baseline N times). Within a group the judge's verdicts are not
independent: the max-T judge flags the members whose smallest p over the readings ranks among
the floor(level (N + 1)) smallest of the group's (adjusted p <= level; fewer where members tie),
one per group with N = 20 at 0.05, two at twice the level. Decision (`calibration_critical`):
the count of unlike-random judgements among the G (N + 1), held against Binomial(G (N + 1),
level) by the exact one-sided test at 1 - confidence; the judge is miscalibrated if the count
reaches the critical count. Its error rates are stated for independent judgements
(`calibration_power`): a judge of rate at most the level fails at most 1 - confidence of the
time, one of twice the level at least with the stated power. Judges whose verdicts within a
group vary less than independent ones (the max-T judge not at all; the t's own p-values at a
quarter to two thirds of the binomial variance, simulated in
tests/interp/test_checkpoint_stats.py) are judged conservatively: their count varies less than
the test allows for; one whose verdicts rose and fell together by group (a group flagged whole,
or not at all) would fail a calibrated judge more often than stated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.special
import scipy.stats

from mechclaims.interp.stats import bh_adjust

CHECKPOINT_VERDICTS = ("unlike-random", "like-random", "inconclusive")
CENTRAL_BAND = 0.9


@dataclass(frozen=True)
class SingleCase:
    """A checkpoint's statistic against its baselines'."""

    value: float
    baselines: np.ndarray  # [N]
    t: float  # Crawford-Howell
    p_value: float  # two-sided, N - 1 degrees of freedom
    rank_p: float  # two-sided (b + 1) / (N + 1), b = baselines at least as extreme
    percentile: float  # share of baselines below the value (ties count half)

    @property
    def direction(self) -> str:
        return "higher" if self.value > np.mean(self.baselines) else "lower"

    def band(self, share: float = CENTRAL_BAND) -> tuple[float, float]:
        """The baselines' central `share`: their (1 - share)/2 and (1 + share)/2 quantiles."""
        low, high = np.quantile(self.baselines, [(1 - share) / 2, (1 + share) / 2])
        return float(low), float(high)


def single_case_test(value: float, baselines) -> SingleCase:
    """Crawford and Howell's t of `value` against `baselines` [N], with the rank p-value and
    percentile (module docstring). Baselines that do not vary give t = 0 (crawford_howell_t)."""
    baselines = np.asarray(baselines, dtype=float)
    if baselines.ndim != 1 or baselines.size < 3:
        raise ValueError(f"need at least 3 baselines in a 1-D array, got shape {baselines.shape}")
    if not np.isfinite(value) or not np.all(np.isfinite(baselines)):
        raise ValueError(f"the checkpoint's value and its baselines must be finite, got {value}")
    n = baselines.size
    mean = baselines.mean()
    t = float(crawford_howell_t(value - mean, baselines.std(ddof=1), n))
    extreme = np.count_nonzero(np.abs(baselines - mean) >= abs(value - mean))
    below = np.count_nonzero(baselines < value) + 0.5 * np.count_nonzero(baselines == value)
    return SingleCase(float(value), baselines, t, two_sided_p(t, n),
                      (extreme + 1) / (n + 1), float(below / n))  # fmt: skip


def crawford_howell_t(difference, sd, n: int):
    """t = (x - mean) / (sd sqrt((n + 1) / n)) elementwise. Baselines that do not vary (sd 0)
    give t = 0: with no scale there is no evidence either way (a discrete statistic, all its
    baselines equal, would otherwise call any other value infinitely unusual)."""
    difference, sd = np.asarray(difference, dtype=float), np.asarray(sd, dtype=float)
    return np.where(sd > 0, difference / (np.where(sd > 0, sd, 1.0) * np.sqrt((n + 1) / n)), 0.0)


def two_sided_p(t, n: int):
    """Two-sided p-value of t on n - 1 degrees of freedom, elementwise."""
    return np.minimum(2 * scipy.special.stdtr(n - 1, -np.abs(t)), 1.0)


def family_adjusted(values, baselines) -> np.ndarray:
    """Max-T adjusted p-values of the checkpoint's readings (module docstring): values [R] on the
    checkpoint, baselines [N, R] (one row per random init, the readings in the same order)."""
    members = np.vstack([np.asarray(values, dtype=float)[None, :],
                         np.asarray(baselines, dtype=float)])  # fmt: skip  # [N+1,R]
    n_members, others = len(members), len(members) - 1
    centered = members - members.mean(axis=0)  # [N+1,R]; sums of the others without cancellation
    rest_mean = -centered / others  # [N+1,R]: the others' mean, as the column sums to 0
    rest_squares = (centered**2).sum(axis=0) - centered**2  # [N+1,R]
    rest_variance = (rest_squares - others * rest_mean**2) / (others - 1)
    t = crawford_howell_t(centered - rest_mean, np.sqrt(np.maximum(rest_variance, 0.0)), others)
    p = two_sided_p(t, others)  # [N+1,R]: each member against the N others
    smallest = p[1:].min(axis=1)  # [N] each baseline's smallest p over the readings
    return (1 + np.count_nonzero(smallest[:, None] <= p[0][None, :], axis=0)) / n_members  # [R]


def checkpoint_verdicts(cases: list[SingleCase], level: float) -> list[tuple[str, float, float]]:
    """(verdict, adjusted p, BH q) of each case, all on the same baselines (module docstring)."""
    if not cases:
        return []
    adjusted = family_adjusted([case.value for case in cases],
                               np.column_stack([case.baselines for case in cases]))  # fmt: skip
    q_values = bh_adjust(np.array([case.p_value for case in cases]))
    return [
        (_verdict(case, float(p), level), float(p), float(q))
        for case, p, q in zip(cases, adjusted, q_values, strict=True)
    ]


def _verdict(case: SingleCase, adjusted: float, level: float) -> str:
    if adjusted <= level:
        return "unlike-random"
    low, high = case.band()
    return "like-random" if low <= case.value <= high else "inconclusive"


def calibration_critical(judgements: int, level: float, confidence: float) -> int:
    """The fewest unlike-random verdicts among `judgements` random checkpoints that show a
    false-flag rate above `level`: the smallest c with P(Binomial(judgements, level) >= c) <=
    1 - confidence (the exact one-sided test; module docstring). judgements + 1 if no count
    could show it."""
    if judgements < 1 or not 0 < level < 1 or not 0 < confidence < 1:
        raise ValueError(
            f"need judgements >= 1 and level, confidence in (0, 1), got {judgements}, {level}, "
            f"{confidence}"
        )
    counts = np.arange(judgements + 1)
    tails = scipy.stats.binom.sf(counts - 1, judgements, level)  # [judgements+1] P(X >= c)
    reaching = np.flatnonzero(tails <= 1 - confidence)
    return int(reaching[0]) if reaching.size else judgements + 1


def calibration_power(judgements: int, level: float, confidence: float, rate: float) -> float:
    """The chance that `judgements` independent verdicts of false-flag rate `rate` reach the
    critical count (`calibration_critical`): the check's power at `rate`, its false-fail rate
    at `rate` <= level."""
    critical = calibration_critical(judgements, level, confidence)
    return float(scipy.stats.binom.sf(critical - 1, judgements, rate))
