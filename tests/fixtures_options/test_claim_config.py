"""A claim's own config of a preset (registry `config_for`): checked when the registry is read,
and applied wherever the claim's model is built: the model_config and model_source fixtures,
the broker's plan, the check that the claim's designs serve the model; the --model-set changes
come last; other claims keep the preset as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from mechclaims.fixtures.registry import (
    RegistryError,
    config_changes,
    describe_claims,
    load_registry,
)

PLUGIN = ("-p", "mechclaims.fixtures.plugin")

REGISTRY = """
[claims.unmasked]
seed_sentence = "a claim about an unmasked model"
[claims.unmasked.thresholds]
required_rate = { value = 0.5, why = "most seeds" }
[claims.unmasked.config_for.tiny-mha]
causal = { value = false, why = "the notebook's model had no mask" }
{more}
[claims.plain]
seed_sentence = "a claim about the preset as it is"
[claims.plain.thresholds]
required_rate = { value = 0.5, why = "most seeds" }
"""

MEASURES = """
from mechclaims.interp.claims.declaration import Claim, Reading


def measure(source, seed, thresholds):
    return {"causal": source.cfg.causal}


def declared(claim):
    reading = Reading(measure, statistic="causal", holds=lambda result, _: True)
    return Claim(claim, "", {"controlled": reading}, context=8)
"""

CLAIM_TEST = """
import pytest

from claim_measures import declared, measure
from mechclaims.fixtures.plugin import measurements_of

CLAIM = declared("{claim}")


@pytest.mark.claim("{claim}/controlled")
def test_it(request, memo, model_config, model_source, preset, seed, thresholds):
    planned = measurements_of(request.node)
    assert [measurement.source for measurement in planned] == [model_source]
    assert model_source.cfg == model_config
    print("CAUSAL", CLAIM.id, preset, memo(measure, model_source, seed, thresholds)["causal"])
"""


def _registry(tmp_path: Path, more: str = "") -> dict:
    path = tmp_path / "registry.toml"
    path.write_text(REGISTRY.replace("{more}", more))
    return load_registry(path)


def test_the_registry_reads_a_claims_config_changes_with_their_reasons(tmp_path):
    checked = _registry(tmp_path)
    entry = checked["claims"]["unmasked"]
    assert entry["config_for"] == {
        "tiny-mha": ({"causal": False}, {"causal": "the notebook's model had no mask"})
    }
    assert config_changes(entry, "tiny-mha") == {"causal": False}
    assert config_changes(entry, "gpt2-style") == {}
    assert config_changes(checked["claims"]["plain"], "tiny-mha") == {}
    thresholds = describe_claims(checked, ["tiny-mha"])["claims"][0]["thresholds"]
    assert {"name": "config of tiny-mha: causal", "value": False,
            "why": "the notebook's model had no mask"} in thresholds  # fmt: skip


@pytest.mark.parametrize(
    ("more", "message"),
    [
        ("[claims.unmasked.config_for.tiny-gpt]\ncausal = { value = false, why = 'x' }",
         "claims.unmasked.config_for.tiny-gpt is not a preset"),
        ("[claims.unmasked.config_for.gpt2-style]\nmasked = { value = false, why = 'x' }",
         "claims.unmasked.config_for.gpt2-style is not a config of gpt2-style: unknown config"),
        ("[claims.unmasked.config_for.gpt2-style]\nnorm = { value = 'sandwich', why = 'x' }",
         "claims.unmasked.config_for.gpt2-style is not a config of gpt2-style: norm must be"),
        ("[claims.unmasked.config_for.gpt2-style]\ncausal = { value = false }",
         "claims.unmasked.config_for.gpt2-style.causal must be { value = ..., why"),
        ("[claims.unmasked.config_for.gpt2-style]\ncausal = { value = false, why = ' ' }",
         "claims.unmasked.config_for.gpt2-style.causal.why must say why"),
        ("[claims.unmasked.config_for.gpt2-style]",
         "claims.unmasked.config_for.gpt2-style must be a table of config fields"),
    ],
)  # fmt: skip
def test_a_bad_config_change_is_a_registry_error_naming_its_key(tmp_path, more, message):
    with pytest.raises(RegistryError, match="registry.toml: " + message.replace("{", r"\{")):
        _registry(tmp_path, more)


def _project(pytester, more: str = "") -> None:
    (pytester.path / "claims").mkdir()
    (pytester.path / "claims" / "registry.toml").write_text(REGISTRY.replace("{more}", more))
    pytester.makepyfile(
        claim_measures=MEASURES,
        test_unmasked=CLAIM_TEST.format(claim="unmasked"),
        test_plain=CLAIM_TEST.format(claim="plain"),
    )


def test_the_claims_model_takes_its_config_in_the_fixtures_and_the_plan(pytester):
    _project(pytester)
    result = pytester.runpytest(*PLUGIN, "--model-preset", "tiny-mha", "--model-preset",
                                "gpt2-style", "--seeds", "0", "-s", "--no-evidence")  # fmt: skip
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines_random(
        ["*CAUSAL unmasked tiny-mha False*", "*CAUSAL unmasked gpt2-style True*",
         "*CAUSAL plain tiny-mha True*", "*CAUSAL plain gpt2-style True*"]
    )  # fmt: skip


def test_the_command_line_changes_come_after_the_claims(pytester):
    _project(pytester)
    result = pytester.runpytest(*PLUGIN, "--model-preset", "tiny-mha", "--seeds", "0",
                                "--model-set", "causal=true", "-s", "--no-evidence")  # fmt: skip
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines_random(
        ["*CAUSAL unmasked tiny-mha True*", "*CAUSAL plain tiny-mha True*"]
    )


def test_the_designs_must_serve_the_model_as_the_claim_takes_it(pytester):
    """gpt2-style has 16 positions; the claim shortens them to 6, its designs need 8."""
    _project(pytester, "[claims.unmasked.config_for.gpt2-style]\n"
                       "n_ctx = { value = 6, why = 'short' }")  # fmt: skip
    result = pytester.runpytest(*PLUGIN, "--model-preset", "gpt2-style", "--seeds", "0",
                                "--no-evidence")  # fmt: skip
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*claim unmasked cannot run on preset gpt2-style: its designs need 8 positions and the "
         "model has n_ctx=6*"]
    )  # fmt: skip


def test_read_seed_records_the_declared_reading_and_without_one_fails_naming_the_test(pytester):
    """A test of a declared reading reads and records it; a module that names its claim by id
    only, or a marker naming a reading the declaration lacks, fails the test with what is
    missing."""
    _project(pytester)
    pytester.makepyfile(test_read="""
import pytest

from claim_measures import declared

CLAIM = declared("plain")


@pytest.mark.claim("plain/controlled")
def test_declared(read_seed):
    assert read_seed() == {"causal": True}


@pytest.mark.claim("plain/seed-protocol")
def test_undeclared_reading(read_seed):
    read_seed()
""", test_bare="""
import pytest

CLAIM = "plain"


@pytest.mark.claim("plain/controlled")
def test_bare(read_seed):
    read_seed()
""")  # fmt: skip
    result = pytester.runpytest(*PLUGIN, "test_read.py", "test_bare.py", "--model-preset",
                                "tiny-mha", "--seeds", "0", "--no-evidence")  # fmt: skip
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines_random([
        "*test_read.py::test_undeclared_reading[[]tiny-mha-seed0[]] uses read_seed: its module "
        "must declare its CLAIM (a Claim) and its claim marker name one of the claim's readings*",
        "*test_bare.py::test_bare[[]tiny-mha-seed0[]] uses read_seed: its module must declare*",
    ])  # fmt: skip
