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
conjunction (`reading_verdict`, `combined_verdict`): supported if every part is, refuted if any
part is, inconclusive otherwise. Each error rate is stated for the whole reading:

- false support (every part supported, one of them wrongly) is at most (1 - confidence) / 2:
  supported needs every part, an intersection-union test, so no correction for their number;
- false refutation (a part refuted though every part's truth lies at or beyond its line) would
  add up over k parts, so each part is refuted only at the level (1 - confidence) / (2 k), its
  interval widened to 1 - (1 - confidence) / k on that side (Bonferroni): the reading's false
  refutations stay at most (1 - confidence) / 2 however many parts it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.special

from mechclaims.interp.stats import wilson_interval

VERDICTS = ("supported", "refuted", "inconclusive")
DEFAULT_CONFIDENCE = 0.95  # a claim's `confidence` when its thresholds name none


@dataclass(frozen=True)
class CrossSeedVerdict:
    verdict: str
    holds: int  # seeds on which the claim held
    seeds: int
    rate_low: float  # Wilson interval (at `confidence`) of the rate at which it holds
    rate_high: float
    confidence: float

    @property
    def rate(self) -> float:
        return self.holds / self.seeds

    def describe(self, required_rate: float) -> str:
        return (
            f"held on {self.holds}/{self.seeds} seeds ({100 * self.confidence:g}% CI "
            f"{self.rate_low:.2f}-{self.rate_high:.2f}; required rate {required_rate:.2f}): "
            f"{self.verdict}"
        )


def cross_seed_verdict(
    holds, required_rate: float, confidence: float = 0.95, parts: int = 1
) -> CrossSeedVerdict:
    """The verdict for per-seed booleans `holds` against the rate a claim must hold at; one of
    `parts` parts of a reading (module docstring: refuted at the Bonferroni-widened level)."""
    holds = np.asarray(holds, dtype=bool)
    if holds.ndim != 1 or holds.size == 0:
        raise ValueError(f"holds must be a non-empty 1-D boolean array, got shape {holds.shape}")
    if not 0 < required_rate < 1:
        raise ValueError(f"required_rate must lie in (0, 1), got {required_rate}")
    successes = int(holds.sum())
    low, high = (float(bound) for bound in wilson_interval(successes, holds.size, confidence))
    refute_high = float(wilson_interval(successes, holds.size, refute_level(confidence, parts))[1])
    verdict = _interval_verdict(low, refute_high, required_rate)
    return CrossSeedVerdict(verdict, successes, int(holds.size), low, high, confidence)


def refute_level(confidence: float, parts: int) -> float:
    """The two-sided level of the interval whose upper side refutes one of `parts` parts: its
    one-sided error (1 - confidence) / (2 parts), so that the parts' false refutations add up
    to at most (1 - confidence) / 2 (module docstring)."""
    if isinstance(parts, bool) or not isinstance(parts, (int, np.integer)) or parts < 1:
        raise ValueError(f"parts must be a positive int, got {parts!r}")
    return 1 - (1 - confidence) / parts


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
    two_sided: bool = False  # a word of `margin_side`'s sides, against ±margin (a study's)

    def describe(self) -> str:
        if self.two_sided:
            return (
                f"{self.verdict}: {self.name} {self.mean:.3g} [{self.low:.3g}, {self.high:.3g}] "
                f"against ±{self.margin:g} ({self.seeds} seeds)"
            )
        relation = {"supported": ">", "refuted": "<", "inconclusive": "straddles"}[self.verdict]
        return (
            f"network - {self.name} {self.mean:.3g} [{self.low:.3g}, {self.high:.3g}] "
            f"{relation} margin {self.margin:g} ({self.seeds} seeds): {self.verdict}"
        )


def margin_verdict(
    differences, margin: float, confidence: float = 0.95, name: str = "null", parts: int = 1
) -> MarginVerdict:
    """The margin rule (module docstring) for `differences` [seeds], network - null per seed;
    one of `parts` parts of a reading (refuted at the Bonferroni-widened level). `low` and
    `high` are the interval at `confidence`."""
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
    refute_high = _mean_interval(differences, refute_level(confidence, parts))[1]
    verdict = _interval_verdict(low, refute_high, margin)
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


SIDES = ("above", "below", "within", "undecided")


def margin_side(values, margin: float, confidence: float) -> tuple[str, MarginVerdict]:
    """Where the mean of `values` [seeds] lies against ±`margin`: above (its interval lies
    above +margin), below (below -margin), within (inside (-margin, +margin): an equivalence,
    a difference of the margin's size is excluded both ways) or undecided; and the margin
    rule's account of it (mean and t-interval at `confidence`). Each side is the margin rule on
    the values and on their negatives, so a side is wrong only when the interval misses the
    truth: at most (1 - confidence) / 2 each way."""
    up = margin_verdict(values, margin, confidence)
    down = margin_verdict(-np.asarray(values, dtype=float), margin, confidence)
    if up.verdict == "supported":
        return "above", up
    if down.verdict == "supported":
        return "below", up
    if up.verdict == down.verdict == "refuted":
        return "within", up
    return "undecided", up


def sided_verdict(
    values, margin: float, confidence: float, words: dict, name: str
) -> MarginVerdict:
    """`margin_side` of `values` as a two-sided verdict: the word `words[side]` for what
    `name` measures, with the account's mean, interval, margin and seeds."""
    side, account = margin_side(values, margin, confidence)
    return replace(account, name=name, verdict=words[side], two_sided=True)


def paired_differences(
    results: list[Mapping], pairs: Mapping[str, tuple[str, str]]
) -> dict[str, np.ndarray]:
    """{null: [seeds]} network - null per seed, from per-seed results and, per null, the names
    of the network's and the null's statistic in them (measured on the same inputs)."""
    return {
        name: np.array([result[network] - result[null] for result in results], dtype=float)
        for name, (network, null) in pairs.items()
    }


def evidence_beyond(
    results: list[Mapping], pairs: Mapping[str, tuple[str, str]], holds: str | None = None
) -> dict:
    """What a reading decides on across seeds (`reading_verdict`'s arguments) from per-seed
    results: the paired differences of `pairs` ({null: (network's statistic, null's)}), and
    with `holds`, each seed's boolean of that name."""
    evidence = {"differences": paired_differences(results, pairs)}
    if holds is not None:
        evidence["holds"] = [bool(result[holds]) for result in results]
    return evidence


def seed_beyond(result: Mapping, pairs: Mapping[str, tuple[str, str]], thresholds: Mapping) -> bool:
    """Whether one seed's differences network - null all exceed their margins (`margin_<null>`
    in `thresholds`). Descriptive: one seed decides nothing, the margin rule across seeds does."""
    return all(
        result[network] - result[null] > thresholds[f"margin_{name}"]
        for name, (network, null) in pairs.items()
    )


@dataclass(frozen=True)
class ReadingVerdict:
    """A reading's verdict across seeds and its parts: the Wilson rule on per-seed holds and
    the margin rule per null (module docstring)."""

    verdict: str
    held: CrossSeedVerdict | None
    beyond: tuple[MarginVerdict, ...] = field(default=())

    def describe(self, required_rate: float | None = None) -> str:
        """One line: each part's account."""
        accounts = [] if self.held is None else [self.held.describe(required_rate)]
        return "; ".join([*accounts, *(part.describe() for part in self.beyond)])

    def record(self, required_rate: float | None = None) -> dict:
        """The parts' numbers, as the evidence records them."""
        values = {}
        if self.held is not None:
            values |= {"holds_on": self.held.holds, "seeds_tested": self.held.seeds,
                       "rate_low": self.held.rate_low, "rate_high": self.held.rate_high,
                       "required_rate": required_rate}  # fmt: skip
        for part in self.beyond:
            values |= {f"beyond_{part.name}_mean": part.mean, f"beyond_{part.name}_low": part.low,
                       f"beyond_{part.name}_high": part.high,
                       f"beyond_{part.name}_margin": part.margin}  # fmt: skip
        return values


def reading_verdict(
    thresholds: Mapping, holds=None, differences: Mapping | None = None
) -> ReadingVerdict:
    """The verdict of a reading from per-seed `holds` (bools: the Wilson rule against
    `required_rate`) and paired `differences` ({null: [seeds]}: the margin rule against
    `margin_<null>`), all at the thresholds' `confidence` (0.95 if it names none), combined
    with the stated error rates of the module docstring."""
    differences = dict(differences or {})
    parts = (holds is not None) + len(differences)
    if not parts:
        raise ValueError("a reading needs per-seed holds or paired differences to decide on")
    confidence = thresholds.get("confidence", DEFAULT_CONFIDENCE)
    held = None
    if holds is not None:
        held = cross_seed_verdict(holds, thresholds["required_rate"], confidence, parts)
    beyond = tuple(
        margin_verdict(np.asarray(values), thresholds[f"margin_{name}"], confidence, name, parts)
        for name, values in differences.items()
    )
    verdicts = [part.verdict for part in (*([held] if held else []), *beyond)]
    return ReadingVerdict(combined_verdict(verdicts), held, beyond)


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
