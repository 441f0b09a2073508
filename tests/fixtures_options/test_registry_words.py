"""Readings that answer in their own words (evolution, sweep): the registry checks their words,
nested verdict tables and a claim's factors; the judge holds a decided word against the
registry (reproduced, consistent, contradicted, missing); a factor level the model does not
support is a usage error naming it; a sweep architecture whose measurement fails fails its own
tests only; the studies hold each claim against its own margin of its studied null."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from mechclaims.evidence.recorder import Evidence
from mechclaims.fixtures.judge import judge_finding, registry_check
from mechclaims.fixtures.registry import RegistryError, describe_claims, load_registry
from mechclaims.interp.claims import evolution, sweep
from mechclaims.interp.claims.measured import studied_margin, studied_null

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PLUGIN = ("-p", "mechclaims.fixtures.plugin")
CLAIMS = Path(__file__).resolve().parents[2] / "claims"


@pytest.mark.parametrize(
    ("study", "claim"),
    [("evolution", claim) for claim in evolution.STATISTICS]
    + [("sweep", claim) for claim in sweep.STATISTICS],
)
def test_the_studies_hold_each_claim_against_its_own_margin_of_its_studied_null(study, claim):
    """The registry's studies copy a claim's thresholds under its id; the margin they decide by
    (that of the null the claim's controlled reading is decided against) must be the claim's."""
    claims = load_registry(CLAIMS / "registry.toml")["claims"]
    own = claims[claim]["thresholds"][f"margin_{studied_null(claim)}"]
    assert studied_margin(claims[study]["thresholds"], claim) == own


EVOLUTION = """
[claims.evo]
seed_sentence = "track feature evolution during training"
[claims.evo.thresholds]
confidence = { value = 0.95, why = "a t-interval" }
[claims.evo.verdicts.evolution.selectivity]
tiny-mha = { verdict = "persists", why = "within the margin" }
gpt2-style = { verdict = "emerges", why = "above it" }
"""

SWEEP = """
[claims.sweep]
seed_sentence = "test different architectures for interpretability bias"
[claims.sweep.thresholds]
confidence = { value = 0.95, why = "the intervals" }
[claims.sweep.factors]
norm = { levels = ["pre", "post"], why = "both" }
d_model = { levels = [16, 64], why = "two widths" }
[claims.sweep.verdicts.sweep.selectivity]
norm = { verdict = "raises", why = "post above pre" }
"""


def registry(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "registry.toml"
    path.write_text(text)
    return load_registry(path)


@pytest.mark.parametrize(
    ("word", "expected", "on_registry_seeds", "check"),
    [
        ("emerges", "emerges", True, "reproduced"),
        ("persists", "emerges", True, "contradicted"),
        ("emerges", "fades", False, "contradicted"),
        ("fades", "emerges", False, "contradicted"),
        ("persists", "emerges", False, "contradicted"),  # the margin rule refutes emerging
        ("persists", "fades", False, "contradicted"),
        ("inconclusive", "emerges", False, "consistent"),  # weaker evidence
        ("fades", "inconclusive", False, "consistent"),
        ("raises", "lowers", False, "contradicted"),
        ("unresolved", "raises", False, "consistent"),
        ("raises", "unresolved", False, "consistent"),
        ("negligible", "raises", False, "contradicted"),  # within the margin against above it
        ("lowers", "negligible", False, "contradicted"),
        ("unresolved", "negligible", False, "consistent"),
        ("raises", None, False, "missing"),
    ],
)
def test_registry_check_of_words(word, expected, on_registry_seeds, check):
    assert registry_check(word, expected, on_registry_seeds) == check


def test_the_registry_reads_verdicts_nested_by_their_parameters(tmp_path):
    checked = registry(tmp_path, EVOLUTION + SWEEP)
    described = describe_claims(checked, ["tiny-mha"])
    expected = {claim["id"]: claim["expected"] for claim in described["claims"]}
    assert expected["evo"] == [
        {"reading": "evolution", "group": {"statistic": "selectivity", "preset": "tiny-mha"},
         "verdict": "persists", "why": "within the margin"},
        {"reading": "evolution", "group": {"statistic": "selectivity", "preset": "gpt2-style"},
         "verdict": "emerges", "why": "above it"},
    ]  # fmt: skip
    assert expected["sweep"][0]["group"] == {"statistic": "selectivity", "factor": "norm"}
    assert checked["claims"]["sweep"]["factors"] == {"norm": ["pre", "post"], "d_model": [16, 64]}
    thresholds = {t["name"]: t for t in described["claims"][1]["thresholds"]}
    assert thresholds["factor d_model"] == {"name": "factor d_model", "value": "16, 64",
                                            "why": "two widths"}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (EVOLUTION.replace('"persists"', '"supported"'),
         "claims.evo.verdicts.evolution.selectivity.tiny-mha.verdict must be one of emerges, "
         "persists, fades, inconclusive; got 'supported'"),
        (EVOLUTION.replace("[claims.evo.verdicts.evolution.selectivity]\n",
                           "[claims.evo.verdicts.evolution]\n"),
         "claims.evo.verdicts.evolution.tiny-mha.verdict must be { verdict = \"...\", why = "),
        (SWEEP.replace('"raises"', '"persists"'),
         "claims.sweep.verdicts.sweep.selectivity.norm.verdict must be one of raises, lowers, "
         "negligible, unresolved; got 'persists'"),
        (SWEEP.replace('"gelu"', "").replace('["pre", "post"]', '["pre", "sandwich"]'),
         "claims.sweep.factors.norm level 'sandwich' is not one the model supports: norm must "
         "be one of 'pre', 'post'; got 'sandwich'"),
        (SWEEP.replace("d_model = ", "width = "),
         "claims.sweep.factors.width level 16 is not one the model supports: unknown config "
         "field 'width'"),
        (SWEEP.replace("[16, 64]", "[16]"),
         "claims.sweep.factors.d_model.levels must list two or more distinct levels, got [16]"),
    ],
)  # fmt: skip
def test_bad_words_tables_and_factor_levels_are_registry_errors_naming_them(
    tmp_path, text, message
):
    with pytest.raises(RegistryError) as error:
        registry(tmp_path, text)
    assert message in str(error.value)


ENTRY = {"verdicts": {"evolution": {"selectivity": {"p": {"verdict": "emerges", "why": "up"}}}}}


def judged(word: str, seeds=(0, 1, 2)) -> Evidence:
    evidence = Evidence("test::x", {}, None)
    judge_finding(ENTRY, "evo", "evolution", {"statistic": "selectivity", "preset": "p"}, word,
                  f"{word}: an account", evidence, seeds, (0, 1, 2), seeds_tested=3)  # fmt: skip
    return evidence


def test_a_decided_word_is_recorded_with_the_reports_verdict_and_the_registrys():
    values = judged("emerges").values
    assert values["verdict"] == "supported"  # the report's verdict of "emerges"
    assert (values["finding"], values["registry_verdict"], values["registry_check"]) == (
        "emerges", "emerges", "reproduced")  # fmt: skip
    assert (values["why"], values["summary"], values["seeds_tested"]) == (
        "up", "emerges: an account", 3)  # fmt: skip
    assert judged("inconclusive", seeds=(0, 1)).values["registry_check"] == "consistent"


def test_a_contradicting_or_missing_word_fails():
    with pytest.raises(AssertionError, match=r"evo \(evolution, selectivity, p\): the registry "
                       r"says 'emerges' \(up\), the evidence on seeds 0-1 says fades"):  # fmt: skip
        judged("fades", seeds=(0, 1))
    evidence = Evidence("test::x", {}, None)
    with pytest.raises(AssertionError, match="the registry has no evolution verdict of 'evo' "
                       "for statistic 'circuits', preset 'p'"):  # fmt: skip
        judge_finding(ENTRY, "evo", "evolution", {"statistic": "circuits", "preset": "p"},
                      "emerges", "", evidence, (0,), (0,))  # fmt: skip
    assert evidence.values["registry_check"] == "missing"
    with pytest.raises(ValueError, match="evolution decides in emerges, persists, fades"):
        judged("supported")


def test_a_factor_level_the_model_does_not_support_is_a_usage_error_naming_it(pytester):
    pytester.mkdir("claims")
    (pytester.path / "claims" / "registry.toml").write_text(
        SWEEP.replace('["relu"', "").replace("d_model = ", 'act_fn = { levels = ["relu", '
                                             '"swish"], why = "two" }\nd_model = ')
    )  # fmt: skip
    pytester.makepyfile(test_ran="def test_ran():\n    open('ran', 'w').close()\n")
    result = pytester.runpytest(*PLUGIN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: the claims registry: *registry.toml: claims.sweep.factors.act_fn level 'swish' "
         "is not one the model supports: act_fn must be one of 'relu', 'gelu', 'gelu_new'*"]
    )  # fmt: skip
    assert not (pytester.path / "ran").exists()


SMALL_SWEEP = """
[claims.sweep]
seed_sentence = "test different architectures for interpretability bias"
seeds = "0:4"
[claims.sweep.thresholds]
base_preset = { value = "tiny-mha", why = "small" }
family_error = { value = 0.05, why = "the family of words" }
architecture_fdr = { value = 0.05, why = "BH across architectures" }
"feature-detectors.n_sequences" = { value = 200, why = "small" }
"feature-detectors.discovery_fraction" = { value = 0.5, why = "half" }
"feature-detectors.n_permutations" = { value = 9, why = "few" }
"feature-detectors.fdr" = { value = 0.05, why = "BH" }
"feature-detectors.min_effect" = { value = 0.5, why = "medium" }
"feature-detectors.margin_gaussian" = { value = 0.1, why = "claim 1's" }
"feature-detectors.margin_embedding" = { value = 0.2, why = "claim 1's" }
"selectivity.n_sequences" = { value = 20, why = "small" }
"selectivity.n_permutations" = { value = 9, why = "few" }
"selectivity.fdr" = { value = 0.05, why = "BH" }
"selectivity.min_eta2" = { value = 0.06, why = "medium" }
"selectivity.margin_gaussian" = { value = 0.1, why = "claim 3's" }
"selectivity.margin_rotated" = { value = 0.01, why = "claim 3's" }
"circuits.n_sequences" = { value = 40, why = "small" }
"circuits.strong_r" = { value = 0.8, why = "claim 4's" }
"circuits.fdr" = { value = 0.05, why = "BH" }
"circuits.discovery_fraction" = { value = 0.5, why = "half" }
"circuits.partition_share" = { value = 0.95, why = "claim 4's" }
"circuits.margin_embedding" = { value = 0.005, why = "claim 4's" }
"circuits.margin_rotated" = { value = 0.005, why = "claim 4's" }
"circuits.margin_gaussian" = { value = 0.005, why = "claim 4's" }
[claims.sweep.factors]
n_heads = { levels = [1, 4], why = "one head or four" }
d_model = { levels = [16, 18], why = "18 has no 4 heads: that architecture fails" }
"""


def test_an_architecture_whose_measurement_fails_fails_its_own_tests_only(pytester):
    """Of 4 architectures one cannot be built (4 heads do not divide d_model 18): its tests
    fail with the model's error; the effects are fitted on the 3 others, which name it."""
    pytester.mkdir("claims")
    for name in ("test_sweep.py", "conftest.py", "claim_plots.py"):
        shutil.copy(CLAIMS / name, pytester.path / "claims" / name)
    words = "\n".join(f'{term} = {{ verdict = "unresolved", why = "unknown" }}'
                      for term in ("n_heads", "d_model"))  # fmt: skip
    tables = "".join(f"[claims.sweep.verdicts.sweep.{statistic}]\n{words}\n"
                     for statistic in ("feature-detectors", "selectivity", "circuits"))  # fmt: skip
    (pytester.path / "claims" / "registry.toml").write_text(SMALL_SWEEP + tables)
    # In a process of its own: this process may have imported our claims/test_sweep.py already
    # (a module named test_sweep from another file: an import-file mismatch).
    result = pytester.runpytest_subprocess(*PLUGIN, "claims", "-ra", "-m", "sweep",
                                           "--seeds", "0:3", "--evidence-dir", "ev")  # fmt: skip
    result.assert_outcomes(passed=3 * 3 + 3 * 2, failed=3)  # per architecture and seed; effects
    result.stdout.fnmatch_lines(
        ["E * ValueError: n_heads=4 must divide d_model=18*",
         "FAILED *test_architecture[[]n_heads=4,d_model=18-seed0]*"]
    )  # fmt: skip
    results = json.loads((pytester.path / "ev" / "results.json").read_text())
    decided = [test["values"] for claim in results["claims"] for test in claim["tests"]
               if test["decides"]]  # fmt: skip
    assert {values["architectures"] for values in decided} == {3}
    assert {tuple(values["failed_architectures"]) for values in decided} == {
        ("n_heads=4,d_model=18",)}  # fmt: skip
    assert {values["registry_check"] for values in decided} == {"consistent"}


INTERNAL_REFERENCE = re.compile(r"\b(issue|PR|pull request)s? #?\d+", re.IGNORECASE)


def strings_of(node) -> list[str]:
    """Every string value of a parsed TOML document (comments are not values)."""
    if isinstance(node, str):
        return [node]
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return [text for child in children for text in strings_of(child)]


def test_nothing_a_reader_sees_of_the_registry_cites_the_project_s_tracker():
    """Every value of the registry may reach the report (sentences, readings, thresholds' and
    verdicts' whys): none names an issue a reader cannot look up; comments may."""
    values = strings_of(tomllib.loads((CLAIMS / "registry.toml").read_text()))
    assert len(values) > 100
    assert [text for text in values if INTERNAL_REFERENCE.search(text)] == []
    assert INTERNAL_REFERENCE.search("was refuted (issue 20)")
