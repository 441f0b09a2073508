"""Claim 5's layout-matched comparison, alone, on its negative control.

The negative control of claim 5 (tests/controls/test_controls.py) puts units that code only the
layout (which positions hold the same token) in the network's place; its reading is not supported.
But that verdict needs no layout matching: the per-seed tests already fail such units, since
ascending and descending share a layout while random relations mostly do not. The part the
matching is for is the margin rule on the seed's families minus their layout-matched stand-ins:
here it must not be supported on its own. With stand-ins of any layout (the matching dropped) it
is: 0.26 [0.20, 0.32] above the margin on tiny-mha (the cheapest preset; the matching is the same
on every preset).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mechclaims.fixtures.registry import claim_thresholds, load_registry, registry_seeds
from mechclaims.interp.claims import structured_inputs
from mechclaims.interp.sources import source_for
from mechclaims.interp.verdicts import reading_verdict
from mechclaims.model.config import TransformerConfig

REGISTRY = load_registry(Path(__file__).resolve().parents[2] / "claims" / "registry.toml")
CLAIM, PRESET = "structured-inputs", "tiny-mha"

pytestmark = pytest.mark.controls


def test_negative_control_structured_inputs_layout_part_alone():
    thresholds = claim_thresholds(REGISTRY["claims"][CLAIM], PRESET)
    source = source_for(TransformerConfig.preset(PRESET), planted="layout")
    results = [
        structured_inputs.controlled(source, seed, thresholds)
        for seed in registry_seeds(REGISTRY, CLAIM, PRESET)
    ]
    differences = structured_inputs.controlled_evidence(results)["differences"]
    (part,) = reading_verdict(thresholds, differences=differences).beyond
    assert part.verdict != "supported", part.describe()
