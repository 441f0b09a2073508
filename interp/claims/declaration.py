"""A claim, declared once: what its readings measure, what a seed's reading records and whether
it holds, its nulls and what the studies and the checkpoint judge take from it.

Each claim's measurement module (e.g. mechclaims.interp.claims.selectivity) ends with its
declaration, `CLAIM = Claim(...)`; mechclaims.interp.claims.catalog gathers them in one table.
Everything else reads a claim from there: its test module (`CLAIM = selectivity.CLAIM`, whose
per-seed tests take the `read_seed` fixture), the broker's plan (a test of the claim's
reading asks memo for the reading's `measure`), the checkpoint judge, the studies and the
controls. The registry (claims/registry.toml) holds what is decided with a reason: the
thresholds, the primary statistic a checkpoint is judged on and the recorded verdicts.

A reading's measurement is `measure(source, seed, thresholds) -> dict`; one measurement may
serve two readings, each reading its own `part` of it (claim 6 trains once for both). Of one
seed's result, the reading declares:

    statistic   what the per-seed test records as `statistic` (a key of the result, or a
                function of the result and the thresholds)
    threshold   what it records as `threshold` (a key of the thresholds, or a function of them)
    null        what it records as `null_value` (a key of the result, or a function of it)
    holds       whether the seed holds: a function of the result and the thresholds, the one
                place every reading decides a seed (recorded as the seed's verdict)
    beside      further values recorded before the verdict (a function of the thresholds)
    hidden      the result's keys not recorded (arrays kept for figures)

and the seed's record is statistic, threshold, null_value, `beside`, verdict, then the
result's other values in their order (`Reading.values`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mechclaims.interp.planted import Controls
from mechclaims.interp.verdicts import seed_beyond

Measure = Callable[[Any, int, dict], dict]
NOT_RECORDED = ("holds",)  # a result's own `holds`, if any, is the declaration's to decide


@dataclass(frozen=True)
class Reading:
    """One reading of a claim (module docstring)."""

    measure: Measure
    statistic: str | Callable[[Mapping, Mapping], float]
    holds: Callable[[Mapping, Mapping], bool]
    threshold: str | Callable[[Mapping], float] | None = None
    null: str | Callable[[Mapping], float] | None = None
    beside: Callable[[Mapping], dict] | None = None
    hidden: tuple[str, ...] = ()
    part: str | None = None  # the key of this reading's result in the measurement's, if any
    on_checkpoint: Measure | None = None  # what a checkpoint run measures, if not `measure`

    def result(self, measured: Mapping) -> Mapping:
        """This reading's result within what `measure` returned."""
        return measured[self.part] if self.part else measured

    def seeds_hold(self, results: list[Mapping], thresholds: Mapping) -> np.ndarray:
        """Whether each seed holds: [seeds] bools, from this reading's result of each."""
        return np.array([self.holds(result, thresholds) for result in results], dtype=bool)

    def values(self, measured: Mapping, thresholds: Mapping) -> dict[str, Any]:
        """What a seed's test records of what `measure` returned (module docstring)."""
        result = self.result(measured)
        values = {"statistic": _value(self.statistic, result, thresholds)}
        if self.threshold is not None:
            values["threshold"] = _value(self.threshold, thresholds)
        if self.null is not None:
            values["null_value"] = _value(self.null, result)
        values |= self.beside(thresholds) if self.beside else {}
        values["verdict"] = "supported" if self.holds(result, thresholds) else "refuted"
        hidden = {*self.hidden, *NOT_RECORDED}
        return values | {key: value for key, value in result.items() if key not in hidden}

    @property
    def checkpoint_measure(self) -> Measure:
        """What a checkpoint run measures: `on_checkpoint` (which returns this reading's result
        alone), else `measure`."""
        return self.on_checkpoint or self.measure

    def checkpoint_result(self, measured: Mapping) -> Mapping:
        """This reading's result within what `checkpoint_measure` returned."""
        return measured if self.on_checkpoint else self.result(measured)


@dataclass(frozen=True)
class Claim:
    """A claim: its id in the registry, the seed's sentence, its readings (module docstring)
    and what its designs, nulls, studies and controls need.

    `context` is the positions its designs need; `beyond` its controlled reading's paired
    comparisons, {null: (network's statistic, the null's)}; `studied_null` the comparison the
    studies follow, measured by `on_model(model, source, seed, thresholds)` (the controlled
    reading on a given model) in `studied_units`; `controlled_evidence(results)` what its
    controlled reading decides on across seeds (mechclaims.interp.verdicts.reading_verdict's
    arguments, from the seeds' measurements); `controls` its planted positive and negative
    controls, decided by that same code; `needs_initialization`, whether it compares a model
    with its own initialization (a checkpoint run needs the checkpoint's)."""

    id: str
    statement: str
    readings: dict[str, Reading]
    context: int = 1
    beyond: dict[str, tuple[str, str]] = field(default_factory=dict)
    studied_null: str | None = None
    studied_units: str = ""
    on_model: Callable[..., dict] | None = None
    controlled_evidence: Callable[[list[dict]], dict] | None = None
    controls: Controls | None = None
    needs_initialization: bool = False

    def __post_init__(self) -> None:
        if self.studied_null is not None and self.studied_null not in self.beyond:
            raise ValueError(f"claim {self.id}: its studied null {self.studied_null!r} is not "
                             f"one of its nulls ({', '.join(self.beyond) or 'none'})")  # fmt: skip

    def reading(self, name: str) -> Reading:
        """The reading `name`; a ValueError naming the claim's readings if it has none such."""
        if name not in self.readings:
            raise ValueError(f"claim {self.id} has no reading {name!r} (it has: "
                             f"{', '.join(self.readings)})")  # fmt: skip
        return self.readings[name]


def _value(spec: Any, source: Mapping, *more: Mapping) -> Any:
    """`spec` read off `source`: a key of it, or a function of it (and `more`)."""
    return spec(source, *more) if callable(spec) else source[spec]


def at_least(statistic: str, threshold: str) -> Callable[[Mapping, Mapping], bool]:
    """A seed holds when the result's `statistic` reaches the thresholds' `threshold`."""

    def holds(result: Mapping, thresholds: Mapping) -> bool:
        return bool(result[statistic] >= thresholds[threshold])

    holds.__doc__ = f"{statistic} >= thresholds[{threshold!r}]"
    return holds


def beyond_margins(pairs: Mapping[str, tuple[str, str]]) -> Callable[[Mapping, Mapping], bool]:
    """A seed holds when each of its differences network - null (`pairs`: {null: (network's
    statistic, the null's)}) exceeds its margin `margin_<null>` (`seed_beyond`)."""

    def holds(result: Mapping, thresholds: Mapping) -> bool:
        return seed_beyond(result, pairs, thresholds)

    return holds
