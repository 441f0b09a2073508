"""Fixtures of the claims: the registry, and the judge that holds evidence against it.

Every claim is asked twice, as the seed measured it (`seed-protocol`) and properly
(`controlled`). Per-seed tests record what one seed shows, including whether the claim held on
it; they assert only what cannot depend on the luck of a seed. The cross-seed test of each
reading turns the per-seed outcomes into a verdict (`interp.verdicts`) and asserts that it is
the verdict the registry records: when the evidence moves, the suite goes red and a person
decides.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mechclaims.interp.verdicts import VERDICTS, CrossSeedVerdict, cross_seed_verdict

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REGISTRY_PATH = Path(__file__).with_name("registry.toml")
READINGS = ("seed-protocol", "controlled")


def load_registry(path: Path = REGISTRY_PATH) -> dict:
    with open(path, "rb") as handle:
        registry = tomllib.load(handle)
    for claim, entry in registry.get("claims", {}).items():
        _check_entry(claim, entry)
    return registry


def _check_entry(claim: str, entry: dict) -> None:
    for key in ("seed_sentence", "thresholds"):
        if key not in entry:
            raise ValueError(f"registry: claim {claim!r} lacks {key!r}")
    for reading, per_preset in entry.get("verdicts", {}).items():
        if reading not in READINGS:
            raise ValueError(f"registry: claim {claim!r} has unknown reading {reading!r}")
        for preset, decision in per_preset.items():
            if decision.get("verdict") not in VERDICTS or not decision.get("why"):
                raise ValueError(
                    f"registry: {claim}.{reading}.{preset} needs a verdict in {VERDICTS} "
                    "and a one-line `why`"
                )


@pytest.fixture(scope="session")
def registry() -> dict:
    return load_registry()


@pytest.fixture(scope="session")
def memo():
    """`memo(measure, cfg, seed, thresholds)`: `measure(cfg, seed, thresholds)`, computed once
    per process, so a claim's per-seed and cross-seed tests share one measurement. (Under
    pytest-xdist each worker computes what its tests need; the numbers are the same.)"""
    store: dict = {}

    def cached(measure, cfg, seed: int, thresholds: dict):
        key = (measure.__module__, measure.__qualname__, cfg, seed)
        if key not in store:
            store[key] = measure(cfg, seed, thresholds)
        return store[key]

    return cached


@pytest.fixture
def thresholds(request, registry) -> dict:
    """The registry's thresholds of the claim the test module is about (`CLAIM` in it)."""
    return registry["claims"][request.module.CLAIM]["thresholds"]


@pytest.fixture
def judge(registry, evidence, preset):
    """`judge(claim, reading, holds)`: the cross-seed verdict, recorded and held against the
    registry's verdict for this preset."""

    def decide(claim: str, reading: str, holds) -> CrossSeedVerdict:
        entry = registry["claims"][claim]
        required = entry["thresholds"]["required_rate"]
        result = cross_seed_verdict(holds, required)
        expected = entry.get("verdicts", {}).get(reading, {}).get(preset)
        evidence.record(
            verdict=result.verdict,
            registry_verdict=expected["verdict"] if expected else "missing",
            holds_on=result.holds,
            seeds_tested=result.seeds,
            rate_low=result.rate_low,
            rate_high=result.rate_high,
            required_rate=required,
            why=expected["why"] if expected else "",
        )
        assert expected is not None, (
            f"the registry has no {reading} verdict of {claim!r} for preset {preset!r}; "
            f"the evidence says: {result.describe(required)}"
        )
        assert result.verdict == expected["verdict"], (
            f"{claim} ({reading}, {preset}): the registry says {expected['verdict']!r} "
            f"({expected['why']}), the evidence says {result.describe(required)}"
        )
        return result

    return decide
