"""A claim's declaration: what a seed records and whether it holds, read off the declaration;
the catalog is every claim of the registry, once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mechclaims.fixtures.registry import load_registry
from mechclaims.interp.claims.catalog import CLAIMS, STUDIED
from mechclaims.interp.claims.declaration import Claim, Reading, at_least, beyond_margins

REGISTRY = load_registry(Path(__file__).resolve().parents[2] / "claims" / "registry.toml")
STUDIES = {"evolution", "sweep"}  # the registry's studies, which answer in their own words


def measure(source, seed, thresholds):
    return {"part": {"share": 0.7, "holds": False, "arrays": [1, 2], "null": 0.2, "n": 9}}


READING = Reading(
    measure, part="part", statistic="share", threshold="min_share", null="null",
    holds=at_least("share", "min_share"), beside=lambda t: {"chance": t["min_share"] / 2},
    hidden=("arrays",),
)  # fmt: skip


def test_a_seed_records_statistic_threshold_null_beside_verdict_then_the_rest_in_order():
    values = READING.values(measure(None, 0, {}), {"min_share": 0.5})
    assert list(values.items()) == [
        ("statistic", 0.7), ("threshold", 0.5), ("null_value", 0.2), ("chance", 0.25),
        ("verdict", "supported"), ("share", 0.7), ("null", 0.2), ("n", 9),
    ]  # fmt: skip  # hidden values and the result's own `holds` are not recorded


def test_whether_a_seed_holds_is_the_declarations_rule_not_the_results_holds():
    result = measure(None, 0, {})["part"]
    assert READING.values({"part": result}, {"min_share": 0.8})["verdict"] == "refuted"
    np.testing.assert_array_equal(
        READING.seeds_hold([result, {**result, "share": 0.9}], {"min_share": 0.8}), [False, True]
    )


def test_functions_of_the_result_and_thresholds_are_read_as_such():
    reading = Reading(measure, statistic=lambda r, t: r["n"] * t["k"], threshold=lambda t: t["k"],
                      null=lambda r: -r["n"], holds=lambda r, t: True)  # fmt: skip
    values = reading.values({"n": 3}, {"k": 2})
    assert (values["statistic"], values["threshold"], values["null_value"]) == (6, 2, -3)


def test_a_checkpoint_reads_its_own_measure_whole_else_the_readings_part():
    assert READING.checkpoint_measure is measure
    assert READING.checkpoint_result({"part": {"a": 1}}) == {"a": 1}
    own = Reading(measure, statistic="a", holds=None, part="part", on_checkpoint=len)
    assert own.checkpoint_measure is len
    assert own.checkpoint_result({"a": 1}) == {"a": 1}


def test_an_unknown_reading_or_studied_null_is_a_clear_error():
    claim = Claim("x", "", {"controlled": READING}, beyond={"gaussian": ("a", "b")})
    with pytest.raises(ValueError, match="claim x has no reading 'seed' \\(it has: controlled\\)"):
        claim.reading("seed")
    with pytest.raises(ValueError, match="its studied null 'rotated' is not one of its nulls"):
        Claim("x", "", {}, beyond={"gaussian": ("a", "b")}, studied_null="rotated")


def test_the_catalog_is_every_claim_of_the_registry_once_with_both_readings():
    assert list(CLAIMS) == [claim for claim in REGISTRY["claims"] if claim not in STUDIES]
    for claim_id, claim in CLAIMS.items():
        assert claim.id == claim_id
        assert set(claim.readings) == {"seed-protocol", "controlled"}
        assert claim.context >= 4  # the seed's sequences
    assert set(STUDIED) == {"feature-detectors", "selectivity", "circuits", "structured-inputs"}


def test_every_declared_threshold_is_one_the_registry_names():
    """A reading's threshold, when a key, is a threshold of its claim on every preset."""
    for claim_id, claim in CLAIMS.items():
        names = set(REGISTRY["claims"][claim_id]["thresholds"])
        for reading in claim.readings.values():
            if isinstance(reading.threshold, str):
                assert reading.threshold in names, (claim_id, reading.threshold)


def test_beyond_margins_holds_when_every_difference_exceeds_its_own_margin():
    holds = beyond_margins({"a": ("net_a", "null_a"), "b": ("net_b", "null_b")})
    result = {"net_a": 0.5, "null_a": 0.1, "net_b": 0.3, "null_b": 0.25}
    assert holds(result, {"margin_a": 0.3, "margin_b": 0.01})
    assert not holds(result, {"margin_a": 0.3, "margin_b": 0.05})  # b's 0.05 is not beyond
    assert not holds(result, {"margin_a": 0.4, "margin_b": 0.01})  # a's 0.4 is not beyond
