"""The claims whose controlled statistics the evolution and the architecture sweep measure.

Claims 1, 3, 4 and 5 decide their controlled readings on a network statistic against the same
statistic of the embedding alone, LN(W_E[x] + W_pos), on the same inputs (their
`BEYOND["embedding"]`). The evolution (through training) and the sweep (across architectures)
ask how that comparison moves, so they measure it with the claims' own code
(`controlled_on`, the controlled reading on a given model).

Their registry entries hold the claims' thresholds under the claim's id, e.g.
`"selectivity.n_sequences"`, so that one flat table of thresholds (what a measurement takes)
names every number it uses, each with its reason (`measured_thresholds`).
"""

from __future__ import annotations

from mechclaims.interp.claims import circuits, feature_detectors, selectivity, structured_inputs
from mechclaims.interp.sources import ModelSource
from mechclaims.model.transformer import Transformer

# claim id in the registry -> its measurement module
CLAIMS = {
    "feature-detectors": feature_detectors,
    "selectivity": selectivity,
    "circuits": circuits,
    "structured-inputs": structured_inputs,
}
# What each comparison's difference network - embedding is measured in (figures' labels)
UNITS = {
    "feature-detectors": "median held-out Cohen's d",
    "selectivity": "median eta², token + position",
    "circuits": "strong-pair rate, share of pairs",
    "structured-inputs": "decoder balanced accuracy",
}


def measured_thresholds(thresholds: dict, claim: str) -> dict:
    """The thresholds of `claim` among `thresholds`: those named `<claim>.<name>`, as `name`."""
    prefix = f"{claim}."
    return {
        name.removeprefix(prefix): value
        for name, value in thresholds.items()
        if name.startswith(prefix)
    }


def studied_margin(thresholds: dict, claim: str) -> float:
    """The margin of the comparison the studies follow for `claim` (its STUDIED_NULL's)."""
    return measured_thresholds(thresholds, claim)[f"margin_{CLAIMS[claim].STUDIED_NULL}"]


def beyond_embedding(
    claim: str, model: Transformer, source: ModelSource, seed: int, thresholds: dict
) -> dict[str, float]:
    """{"network": ..., "embedding": ...}: the two statistics `claim`'s controlled reading holds
    against each other, measured on `model` with the claim's thresholds in `thresholds`."""
    module = CLAIMS[claim]
    result = module.controlled_on(model, source, seed, measured_thresholds(thresholds, claim))
    result = result.get("result", result)  # claim 4 keeps its figures' data beside its result
    network, embedding = module.BEYOND[module.STUDIED_NULL]
    return {"network": float(result[network]), "embedding": float(result[embedding])}
