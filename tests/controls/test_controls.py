"""Could each controlled reading have come out the other way? Its positive and negative controls.

For every claim with a controlled reading and every preset of the registry (as the claim takes
it: its registry `config_for`), on the registry's seeds, with the preset's thresholds: the
reading's own measurement and verdict code (its declaration's `controls.measure` and
`controlled_evidence`, `mechclaims.interp.verdicts.reading_verdict`) run on planted models
(mechclaims.interp.planted). The positive control plants an effect of exactly the
kind the claim asserts and must come out supported; the negative control puts the reading's null
in the network's place and must not (refuted or inconclusive). A reading that cannot pass its
positive control asks a question no network could answer yes to; one whose negative control
passes answers yes whatever the network. `-k positive_control`, `-k negative_control`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mechclaims.fixtures.registry import (
    claim_thresholds,
    config_changes,
    load_registry,
    registry_seeds,
)
from mechclaims.interp.claims.catalog import CLAIMS
from mechclaims.interp.sources import source_for
from mechclaims.interp.verdicts import reading_verdict
from mechclaims.model.config import TransformerConfig

REGISTRY = load_registry(Path(__file__).resolve().parents[2] / "claims" / "registry.toml")
CONTROLLED = [claim for claim, declared in CLAIMS.items() if declared.controls]
CASES = [(claim, preset) for claim in CONTROLLED for preset in REGISTRY["presets"]]

pytestmark = pytest.mark.controls


def control(claim: str, preset: str, kind: str):
    """The controlled reading's verdict on the planted `kind` (ReadingVerdict) and its account."""
    declared = CLAIMS[claim]
    entry = REGISTRY["claims"][claim]
    thresholds = claim_thresholds(entry, preset)
    cfg = TransformerConfig.preset(preset).replace(**config_changes(entry, preset))
    source = source_for(cfg, planted=kind)  # the preset as the claim takes it (config_for)
    results = [
        declared.controls.measure(source, seed, thresholds)
        for seed in registry_seeds(REGISTRY, claim, preset)
    ]
    decided = reading_verdict(thresholds, **declared.controlled_evidence(results))
    account = decided.describe(thresholds.get("required_rate"))
    return decided, f"{claim} on {preset} planted {kind}: {account}"


@pytest.mark.parametrize(("claim", "preset"), CASES)
def test_positive_control(claim, preset):
    decided, account = control(claim, preset, CLAIMS[claim].controls.positive)
    assert decided.verdict == "supported", account


@pytest.mark.parametrize(("claim", "preset"), CASES)
def test_negative_control(claim, preset):
    decided, account = control(claim, preset, CLAIMS[claim].controls.negative)
    assert decided.verdict != "supported", account
