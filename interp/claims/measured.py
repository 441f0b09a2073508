"""The claims whose controlled statistics the evolution and the architecture sweep measure, and
the rule both decide by.

Claims 1, 3, 4 and 5 decide their controlled readings on a network statistic against the same
statistic of a null on the same inputs (their `BEYOND[null]`). The studies follow, for each
claim, the comparison its controlled reading is decided by: its declaration's `studied_null` (claims
3's and 4's rotated basis, claim 5's layout-matched families, claim 1's embedding alone). The
evolution (through training) and the sweep (across architectures) ask how network - null moves,
so they measure it with the claims' own code (the declaration's `on_model`, the controlled
reading on a given model): `beyond_null` -> {"network": ..., "null": ...}. A figure or a why
names the comparison (`compared`, e.g. "network - rotated basis") and its scale (the
declaration's `studied_units`).

Their registry entries hold the claims' thresholds under the claim's id, e.g.
`"selectivity.n_sequences"`, so that one flat table of thresholds (what a measurement takes)
names every number it uses, each with its reason (`measured_thresholds`); the margin a study
holds a claim's comparison against is the claim's margin of its studied null (`studied_margin`,
`"selectivity.margin_rotated"`), one number, not a second copy.

Both studies decide by the margin rule on both sides (mechclaims.interp.verdicts.margin_side):
the mean of paired
values across seeds with its t-interval, against the margin m: above (the interval lies above
+m), below (below -m), within (inside (-m, +m): an equivalence, a difference of size m is
excluded both ways) or undecided. Each side is the margin rule of mechclaims.interp.verdicts
(on the values, and on their negatives), so a side is wrong only when the interval misses the
truth: at most (1 - confidence) / 2 each way.
"""

from __future__ import annotations

from mechclaims.interp.claims.catalog import STUDIED
from mechclaims.interp.sources import ModelSource
from mechclaims.model.transformer import Transformer

# How a figure or a why names each null a claim can be decided against
NULL_NAMES = {
    "embedding": "embedding alone",
    "rotated": "rotated basis",
    "gaussian": "Gaussian features",
    "layout": "layout-matched families",
}


def studied_null(claim: str) -> str:
    """The null `claim`'s controlled reading is decided against, which the studies follow."""
    null = STUDIED[claim].studied_null
    if null not in NULL_NAMES:
        raise ValueError(f"{claim}'s studied null {null!r} has no name in NULL_NAMES")
    return null


def compared(claim: str) -> str:
    """The comparison the studies follow for `claim`, e.g. "network - rotated basis"."""
    return f"network - {NULL_NAMES[studied_null(claim)]}"


def measured_thresholds(thresholds: dict, claim: str) -> dict:
    """The thresholds of `claim` among `thresholds`: those named `<claim>.<name>`, as `name`."""
    prefix = f"{claim}."
    return {
        name.removeprefix(prefix): value
        for name, value in thresholds.items()
        if name.startswith(prefix)
    }


def studied_margin(thresholds: dict, claim: str) -> float:
    """The margin of the comparison the studies follow for `claim` (its studied null's)."""
    name = f"margin_{studied_null(claim)}"
    own = measured_thresholds(thresholds, claim)
    if name not in own:
        raise ValueError(f"the study's thresholds have no {claim}.{name}: the margin of "
                         f"{claim}'s studied null")  # fmt: skip
    return own[name]


def beyond_null(
    claim: str, model: Transformer, source: ModelSource, seed: int, thresholds: dict
) -> dict[str, float]:
    """{"network": ..., "null": ...}: the two statistics `claim`'s controlled reading holds
    against each other for its studied null, measured on `model` with the claim's thresholds
    in `thresholds`."""
    declared = STUDIED[claim]
    result = declared.on_model(model, source, seed, measured_thresholds(thresholds, claim))
    network, null = declared.beyond[studied_null(claim)]
    return {"network": float(result[network]), "null": float(result[null])}
