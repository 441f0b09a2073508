"""A claims registry that omits its optional keys: each takes the default the registry's docstring
(mechclaims.fixtures.registry) states.

claims/registry.toml states nearly every key, so a wrong default for an absent one would go
unnoticed there. Here the registries are minimal: a claim with its sentence and thresholds only,
and top-level keys (`presets`, `seeds`, `preset_seeds`, `checkpoints`) present or absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mechclaims.fixtures.plugin import default_presets
from mechclaims.fixtures.registry import (
    DEFAULT_SEEDS,
    claim_thresholds,
    config_changes,
    describe_claims,
    load_registry,
    parse_seeds,
    registry_seeds,
)
from mechclaims.interp.claims.checkpoint import not_applicable
from mechclaims.interp.sources import source_for
from mechclaims.interp.verdicts import reading_verdict
from mechclaims.model.config import PRESETS, TransformerConfig

MINIMAL_CLAIM = """
[claims.bare]
seed_sentence = "a claim with nothing optional"
[claims.bare.thresholds]
required_rate = { value = 0.5, why = "most seeds" }
"""
OWN_SEEDS_CLAIM = """
[claims.own]
seed_sentence = "a claim decided on its own seeds"
seeds = "3:5"
[claims.own.thresholds]
required_rate = { value = 0.5, why = "most seeds" }
"""


def _registry(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "registry.toml"
    path.write_text(text)
    return load_registry(path)


def test_a_claim_without_optional_keys_takes_the_documented_defaults(tmp_path):
    registry = _registry(tmp_path, MINIMAL_CLAIM)
    entry = registry["claims"]["bare"]
    assert registry["checkpoints"] == {"fdr": 0.05}
    assert entry["thresholds_for"] == entry["config_for"] == entry["factors"] == {}
    assert claim_thresholds(entry, "tiny-mha") == {"required_rate": 0.5}
    assert config_changes(entry, "tiny-mha") == {}
    assert registry_seeds(registry, "bare") == registry_seeds(registry, "bare", "gpt2-small")
    assert registry_seeds(registry, "bare") == parse_seeds(DEFAULT_SEEDS) == tuple(range(20))
    (described,) = describe_claims(registry, ["tiny-mha"])["claims"]
    assert described["title"] == "bare"  # the claim's id
    assert (described["readings"], described["expected"]) == ({}, [])
    assert [threshold["name"] for threshold in described["thresholds"]] == ["required_rate"]
    source = source_for(TransformerConfig.preset("tiny-mha"))
    assert "names no primary statistic" in not_applicable("bare", "controlled", entry, source)


def test_seeds_fall_back_from_the_preset_to_the_claim_to_the_registry_to_0_20(tmp_path):
    """preset_seeds, else the claim's seeds, else the registry's, else 0:20."""
    with_seeds = _registry(tmp_path, 'seeds = "0:7"\n' + MINIMAL_CLAIM + OWN_SEEDS_CLAIM)
    assert registry_seeds(with_seeds, "bare") == tuple(range(7))
    assert registry_seeds(with_seeds, "bare", "gpt2-small") == tuple(range(7))
    assert registry_seeds(with_seeds, "own") == (3, 4)
    with_preset = _registry(tmp_path, '[preset_seeds]\ngpt2-small = "0:2"\n' + OWN_SEEDS_CLAIM)
    assert registry_seeds(with_preset, "own", "gpt2-small") == (0, 1)
    assert registry_seeds(with_preset, "own", "tiny-mha") == (3, 4)
    assert registry_seeds(with_preset, "unknown-claim") == tuple(range(20))


def test_a_registry_without_presets_tests_every_preset(tmp_path):
    assert default_presets(_registry(tmp_path, MINIMAL_CLAIM))[0] == list(PRESETS)
    assert default_presets(None)[0] == list(PRESETS)


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        ('presets = ["tiny-mha"]\n', [f"tiny-mha-seed{seed}" for seed in range(20)]),
        ('seeds = "4:6"\n', [f"{preset}-seed{seed}" for preset in PRESETS for seed in (4, 5)]),
    ],
    ids=["without-seeds", "without-presets"],
)
def test_the_runs_defaults_where_the_registry_states_one_key_and_not_the_other(
    pytester, registry, expected
):
    pytester.mkdir("claims")
    (pytester.path / "claims" / "registry.toml").write_text(registry)
    pytester.makepyfile(test_models="def test_it(preset, seed):\n    pass\n")
    result = pytester.runpytest("-p", "mechclaims.fixtures.plugin", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    assert [line for line in result.stdout.lines if "::" in line] == [
        f"test_models.py::test_it[{ids}]" for ids in expected
    ]


def test_a_reading_without_a_stated_confidence_is_decided_at_95_percent():
    """14 of 20 seeds against a required half: supported at 90% (Wilson low 0.51), inconclusive
    at 95% (0.48); the thresholds name no confidence, so 95%."""
    holds = [True] * 14 + [False] * 6
    assert reading_verdict({"required_rate": 0.5}, holds=holds).verdict == "inconclusive"
    differences = {"null": [0.30, 0.36, 0.33, 0.38, 0.31, 0.35, 0.34, 0.32]}
    stated = {"margin_null": 0.32, "confidence": 0.95}
    absent = {"margin_null": 0.32}
    assert reading_verdict(absent, differences=differences).beyond == (
        reading_verdict(stated, differences=differences).beyond
    )
