"""The evidence plugin end to end: pytest runs (through pytester) and the report they write."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
from pathlib import Path

import matplotlib.figure  # imported before pytester's inline runs, which would load a 2nd copy
import matplotlib.image
import pytest

PLUGIN = ("-p", "mechclaims.evidence.plugin")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Every report file but run.json must be the same bytes for the same tests.
VARYING = ("run.json",)

CLAIM_TESTS = """
import numpy as np
import pytest
from matplotlib.figure import Figure

THRESHOLD = {threshold}


class Config:  # a parameter that is not a JSON scalar: reported by argname and index
    pass


@pytest.mark.claim("alpha", statement="Alpha is below the threshold.")
@pytest.mark.parametrize("preset", ["small", "large"])
@pytest.mark.parametrize("seed", range(11))
def test_alpha(evidence, preset, seed):
    statistic = 0.05 * seed + (0.3 if preset == "large" else 0.0) + 0.0123456789
    evidence.record(statistic=np.float64(statistic), threshold=THRESHOLD, p_value=np.float32(0.01),
                    note=f"n{{seed}}", nan_value=float("nan"), per_layer=np.arange(2))
    assert statistic < THRESHOLD, "alpha too large"


@pytest.mark.claim("beta", statement="Beta has a picture.")
@pytest.mark.parametrize("config", [Config()])
def test_beta(evidence, config):
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1, 2], [1, 0, 1])
    evidence.figure("curve", fig)
    evidence.table("counts", [{{"token": "a", "count": 3}}, {{"token": "b", "count": 4}}])
    evidence.record(statistic=2)


@pytest.mark.claim("beta")
@pytest.mark.xfail(strict=True, reason="refuted in the registry")
def test_beta_refuted():
    assert 1 > 2


def test_unclaimed(evidence):
    evidence.record(statistic=7)


def test_not_taking_part():
    pass
"""


def run(pytester: pytest.Pytester, *args: str, **kwargs) -> pytest.RunResult:
    """Run pytest in-process with the plugin named (also when entry points are not loaded)."""
    return pytester.runpytest(*PLUGIN, *args, **kwargs)


def write_claims(pytester: pytest.Pytester, threshold: float = 0.45) -> None:
    pytester.makepyfile(test_claims=CLAIM_TESTS.format(threshold=threshold))


def results_of(directory: Path) -> dict:
    return json.loads((directory / "results.json").read_text())


def by_nodeid(results: dict) -> dict[str, dict]:
    return {test["nodeid"]: test for claim in results["claims"] for test in claim["tests"]}


def report_bytes(directory: Path) -> dict[str, bytes]:
    """Every file of a report folder but the varying ones, by path relative to the folder."""
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name not in VARYING
    }


def leftover_temporary_files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.name.startswith(".")]


def test_recorded_values_reach_every_output(pytester):
    write_claims(pytester)
    result = run(pytester)
    result.assert_outcomes(passed=15, failed=10, xfailed=1)
    report = pytester.path / "reports" / "latest"

    results = results_of(report)
    assert results["complete"] is True
    assert [claim["claim"] for claim in results["claims"]] == ["alpha", "beta", "(unclaimed)"]
    test = by_nodeid(results)["test_claims.py::test_alpha[2-large]"]
    assert test["params"] == {"seed": 2, "preset": "large"}
    assert test["values"] == {
        "statistic": 0.412345678900,
        "threshold": 0.45,
        "p_value": 0.00999999977648,
        "note": "n2",
        "nan_value": "nan",
        "per_layer": [0, 1],
    }
    assert (test["outcome"], test["verdict"], test["message"]) == ("passed", "supported", "")
    failed = by_nodeid(results)["test_claims.py::test_alpha[10-large]"]
    assert (failed["outcome"], failed["verdict"]) == ("failed", "refuted")
    assert failed["message"] == "AssertionError: alpha too large"
    assert "test_claims.py::test_not_taking_part" not in by_nodeid(results)

    rows = list(csv.DictReader(io.StringIO((report / "claims.csv").read_text())))
    assert list(rows[0]) == [
        "claim", "nodeid", "config", "preset", "seed", "outcome", "verdict", "message",
        "statistic", "threshold", "p_value", "nan_value", "note",
    ]  # fmt: skip
    alpha = [(row["preset"], row["seed"]) for row in rows if row["claim"] == "alpha"]
    assert alpha == [(preset, str(seed)) for preset in ("large", "small") for seed in range(11)]
    by_id = {row["nodeid"]: row for row in rows}
    row = by_id["test_claims.py::test_alpha[2-large]"]
    assert [row[name] for name in ("statistic", "p_value", "note")] == [
        "0.4123456789",
        "0.00999999977648",
        "n2",
    ]
    assert by_id["test_claims.py::test_beta[config0]"]["config"] == "config0"

    markdown = (report / "index.md").read_text()
    html = (report / "index.html").read_text()
    for page in (markdown, html):
        assert "Alpha is below the threshold." in page
        assert "3/11 = 0.2727" in page  # 3 of 11 seeds pass for preset large
        assert "[0.09746, 0.5656]" in page  # and its Wilson 95% interval
    # Per-seed values and messages: in index.html (collapsed), not in index.md, which links them.
    for detail in ("0.4123", "alpha too large"):  # a statistic (4 significant digits), a message
        assert detail in html
        assert detail not in markdown
    assert "[claims.csv](claims.csv)" in markdown
    assert re.search(r"\| alpha +\| test_alpha +\| +\| large +\| mixed +\| 3/11", markdown)
    assert re.search(r"<td>beta *</td><td>test_beta_refuted</td>(<td> *</td>)+<td>refuted", html)


def test_summary_groups_by_parameters_other_than_seed(pytester):
    write_claims(pytester)
    run(pytester)
    alpha = results_of(pytester.path / "reports" / "latest")["claims"][0]
    small = next(group for group in alpha["summary"] if group["group"] == {"preset": "small"})
    assert (small["tests"], small["supported"], small["decided"]) == (11, 9, 11)
    assert small["outcomes"] == {"passed": 9, "failed": 2}
    assert small["verdict"] == "mixed"
    assert small["pass_rate_ci95"] == pytest.approx([0.5230, 0.9486], abs=1e-4)
    statistic = small["statistics"]["statistic"]
    assert statistic["n"] == 11
    assert statistic["median"] == pytest.approx(0.2623456789)
    assert (statistic["low"], statistic["high"]) == pytest.approx((0.0248456789, 0.4998456789))


OUTCOME_TESTS = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("no model at 0xdeadbeef")

@pytest.mark.claim("kinds")
def test_passes():
    pass

@pytest.mark.claim("kinds")
def test_fails():
    assert 1 == 2, "one is not two"

@pytest.mark.claim("kinds")
@pytest.mark.xfail(strict=True, reason="refuted")
def test_xfails():
    assert False

@pytest.mark.claim("kinds")
@pytest.mark.xfail(strict=True, reason="registry says refuted")
def test_xpasses_strictly():
    pass

@pytest.mark.claim("kinds")
@pytest.mark.skip(reason="not now")
def test_skipped():
    pass

@pytest.mark.claim("kinds")
def test_errors(broken):
    pass

@pytest.mark.claim("kinds")
def test_records_its_verdict(evidence):
    evidence.record(verdict="refuted")
"""


def test_outcomes_verdicts_and_messages(pytester):
    pytester.makepyfile(test_kinds=OUTCOME_TESTS)
    run(pytester)
    tests = by_nodeid(results_of(pytester.path / "reports" / "latest"))
    found = {
        nodeid.split("::")[1]: (test["outcome"], test["verdict"], test["message"])
        for nodeid, test in tests.items()
    }
    assert found == {
        "test_passes": ("passed", "supported", ""),
        "test_fails": ("failed", "refuted", "AssertionError: one is not two"),
        "test_xfails": ("xfailed", "refuted", "assert False"),
        "test_xpasses_strictly": ("xpassed", "supported", "[XPASS(strict)] registry says refuted"),
        "test_skipped": ("skipped", "inconclusive", "Skipped: not now"),
        "test_errors": ("error", "error", "RuntimeError: no model at 0x…"),
        "test_records_its_verdict": ("passed", "refuted", ""),
    }


def test_serial_and_xdist_reports_are_byte_identical(pytester):
    write_claims(pytester)
    run(pytester, "--evidence-dir", "serial").assert_outcomes(passed=15, failed=10, xfailed=1)
    for workers in ("1", "2"):
        result = pytester.runpytest_subprocess(*PLUGIN, f"--evidence-dir=n{workers}", "-n", workers)
        result.assert_outcomes(passed=15, failed=10, xfailed=1)
    serial = report_bytes(pytester.path / "serial")
    assert {"index.md", "index.html", "claims.csv", "results.json"} <= set(serial)
    assert sum(name.startswith("figures/") for name in serial) == 1
    for name in ("n1", "n2"):
        assert report_bytes(pytester.path / name) == serial, name
    assert json.loads((pytester.path / "n2" / "run.json").read_text())["workers"] == 2


def test_figures_are_valid_pngs_embedded_in_the_html(pytester):
    write_claims(pytester)
    run(pytester)
    report = pytester.path / "reports" / "latest"
    (figure,) = by_nodeid(results_of(report))["test_claims.py::test_beta[config0]"]["figures"]
    png = (report / figure["path"]).read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert matplotlib.image.imread(report / figure["path"]).shape == (200, 200, 4)
    html = (report / "index.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert [base64.b64decode(data) for data in embedded] == [png]
    assert f"]({figure['path']})" in (report / "index.md").read_text()


def test_stale_figures_are_removed(pytester):
    write_claims(pytester)
    run(pytester)
    figures = pytester.path / "reports" / "latest" / "figures"
    (old,) = figures.iterdir()
    pytester.makepyfile(test_claims=CLAIM_TESTS.format(threshold=0.45).replace('"curve"', '"bend"'))
    run(pytester)
    (new,) = figures.iterdir()
    assert new.name != old.name
    assert "bend" in new.name


@pytest.mark.parametrize(
    ("stop", "args", "reason"),
    [
        ("raise KeyboardInterrupt", [], "KeyboardInterrupt"),
        ("assert False", ["-x"], "stopping after 1 failures"),
    ],
)
def test_an_interrupted_run_writes_an_incomplete_report(pytester, stop, args, reason):
    pytester.makepyfile(
        test_stop=f"""
        import pytest
        from matplotlib.figure import Figure

        @pytest.mark.claim("c")
        def test_first(evidence):
            evidence.record(statistic=1)

        @pytest.mark.claim("c")
        def test_second(evidence):
            evidence.figure("drawn before the stop", Figure())
            {stop}

        @pytest.mark.claim("c")
        def test_third():
            pass
        """
    )
    result = run(pytester, *args, no_reraise_ctrlc=True)
    report = pytester.path / "reports" / "latest"
    results = results_of(report)
    assert results["complete"] is False
    assert results["stopped"] == reason
    assert "test_stop.py::test_third" not in by_nodeid(results)
    banner = f"Incomplete run ({reason})"
    assert banner in (report / "index.md").read_text()
    assert f'<div class="banner">⚠ {banner}' in (report / "index.html").read_text()
    assert leftover_temporary_files(report) == []
    result.stdout.fnmatch_lines([f"evidence report: *index.md (incomplete: {reason})"])


def test_compare_reports_a_changed_verdict(pytester):
    write_claims(pytester, threshold=10.0)  # every alpha test passes
    run(pytester, "--evidence-dir", "before")
    write_claims(pytester)
    result = run(pytester, "--evidence-compare", "before")
    result.stdout.fnmatch_lines(
        [
            "evidence compared with before: 0 verdicts of the matrix, 2 group verdicts or pass "
            "rates, 10 test outcomes, *",
            "  alpha test_alpha [[]preset=large]: verdict supported -> mixed, "
            "pass rate 1.0 -> 0.272727272727",
            "  alpha test_alpha [[]preset=small]: verdict supported -> mixed, "
            "pass rate 1.0 -> 0.818181818182",
            "  test_claims.py::test_alpha[[]3-large]: passed -> failed",
        ]
    )
    report = pytester.path / "reports" / "latest"
    comparison = json.loads((report / "compare.json").read_text())
    assert comparison["against"] == "before"
    verdicts = [(c["group"], c["verdict_before"], c["verdict_now"]) for c in comparison["verdicts"]]
    assert verdicts == [
        ({"preset": "large"}, "supported", "mixed"),
        ({"preset": "small"}, "supported", "mixed"),
    ]
    assert len(comparison["outcomes"]) == 10
    assert {c["value"] for c in comparison["values"]} == {"threshold"}
    for page in ("index.md", "index.html", "summary.md"):
        assert "Changes since before" in (report / page).read_text()
    run(pytester)  # without a comparison, the stale compare.json goes
    assert not (report / "compare.json").exists()


def test_no_evidence_writes_nothing_and_the_fixture_still_works(pytester):
    write_claims(pytester)
    result = run(pytester, "--no-evidence")
    result.assert_outcomes(passed=15, failed=10, xfailed=1)
    assert not (pytester.path / "reports").exists()
    result.stdout.no_fnmatch_line("*evidence report*")
    result.stdout.no_fnmatch_line("*no test recorded evidence*")


def test_a_run_without_evidence_keeps_the_last_report(pytester):
    write_claims(pytester)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    run(pytester, "test_claims.py")
    before = report_bytes(pytester.path / "reports" / "latest")
    result = run(pytester, "test_plain.py")
    result.stdout.fnmatch_lines(["evidence: no test recorded evidence; * unchanged"])
    assert report_bytes(pytester.path / "reports" / "latest") == before


def test_ini_sets_the_directory_and_the_command_line_overrides_it(pytester):
    write_claims(pytester)
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nevidence_dir = "out/evidence"\n')
    run(pytester)
    assert (pytester.path / "out" / "evidence" / "results.json").is_file()
    run(pytester, "--evidence-dir", "cli")
    assert (pytester.path / "cli" / "results.json").is_file()


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--evidence-dir", "a_file"], "", "--evidence-dir: * is an existing file*"),
        (["--evidence-dir", "a_file/sub"], "", "--evidence-dir: * cannot be created: * is a file"),
        ([], 'evidence_dir = "a_file"', "ini option evidence_dir: * is an existing file*"),
        (["--evidence-compare", "missing"], "", "--evidence-compare: * is not a directory"),
        (["--evidence-compare", "empty"], "", "--evidence-compare: * has no results.json*"),
        (["--evidence-compare", "broken"], "", "--evidence-compare: *results.json is not valid*"),
    ],
)  # fmt: skip
def test_bad_options_are_usage_errors_before_any_test(pytester, args, ini, message):
    pytester.makepyfile(test_ran="def test_ran(tmp_path_factory):\n    open('ran', 'w').close()\n")
    pytester.makefile("", a_file="")
    (pytester.path / "empty").mkdir()
    (pytester.path / "broken").mkdir()
    (pytester.path / "broken" / "results.json").write_text("{not json")
    if ini:
        pytester.makepyprojecttoml(f"[tool.pytest.ini_options]\n{ini}\n")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert not (pytester.path / "ran").exists()


def test_a_malformed_claim_marker_fails_its_test_and_only_it(pytester):
    pytester.makepyfile(
        test_marker="""
        import pytest

        @pytest.mark.claim(statement="no id")
        def test_malformed():
            pass

        @pytest.mark.claim("fine")
        def test_fine():
            pass
        """
    )
    run(pytester).assert_outcomes(passed=1, errors=1)
    tests = by_nodeid(results_of(pytester.path / "reports" / "latest"))
    malformed = tests["test_marker.py::test_malformed"]
    assert malformed["outcome"] == "error"
    assert malformed["message"].startswith('Failed: use @pytest.mark.claim("claim-id", ')


def test_the_claim_marker_is_registered(pytester):
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(['@pytest.mark.claim(id, statement="", decides=False): *'])


DECIDING_TESTS = """
import pytest


@pytest.mark.claim("gamma", statement="Gamma holds on most seeds.")
@pytest.mark.parametrize("preset", ["small", "large"])
@pytest.mark.parametrize("seed", range(4))
def test_gamma(evidence, preset, seed):
    holds = seed < (3 if preset == "small" else 1)
    evidence.record(verdict="supported" if holds else "refuted")


@pytest.mark.claim("gamma", decides=True)
@pytest.mark.parametrize("preset", ["small", "large"])
def test_gamma_across_seeds(evidence, preset):
    evidence.record(verdict="supported" if preset == "small" else "refuted")
    assert preset == "small", "the registry says supported"
"""


def test_a_deciding_test_gives_the_claims_verdict_beside_the_seeds_pass_rate(pytester):
    pytester.makepyfile(test_deciding=DECIDING_TESTS)
    run(pytester).assert_outcomes(passed=9, failed=1)
    verdicts = results_of(pytester.path / "reports" / "latest")["claims"][0]["verdicts"]
    by_preset = {row["group"]["preset"]: row for row in verdicts}
    assert by_preset["small"]["verdict"] == "supported"
    assert (by_preset["small"]["supported"], by_preset["small"]["decided"]) == (3, 4)
    assert by_preset["large"]["verdict"] == "refuted"
    assert (by_preset["large"]["supported"], by_preset["large"]["decided"]) == (1, 4)
    assert by_preset["large"]["outcome"] == "failed"
    header, row = first_table(pytester.path / "reports" / "latest" / "index.md")
    assert header == ["claim", "large", "small"]  # no description: groups sorted, claim ids
    assert row == [
        "**gamma**<br>“Gamma holds on most seeds.”",
        "🔴 **refuted** 1/4<br>test failed: AssertionError: the registry says supported",
        "🟢 **supported** 3/4",
    ]


def test_a_report_without_deciding_tests_opens_with_every_groups_pass_rate(pytester):
    write_claims(pytester)
    run(pytester)
    header, *rows = first_table(pytester.path / "reports" / "latest" / "index.md")
    assert header[:4] == ["claim", "test", "config", "preset"]
    assert [row[:2] for row in rows] == [
        ["alpha", "test_alpha"], ["alpha", "test_alpha"], ["beta", "test_beta"],
        ["beta", "test_beta_refuted"], ["(unclaimed)", "test_unclaimed"],
    ]  # fmt: skip


def first_table(page: Path) -> list[list[str]]:
    return tables_in(page.read_text())[0]


def tables_in(markdown: str) -> list[list[list[str]]]:
    """The Markdown tables of a text, each its header and rows as lists of stripped cells."""
    tables = []
    for block in markdown.split("\n\n"):
        if block.startswith("|"):
            header, _, *rows = block.splitlines()
            tables.append([cells(line) for line in [header, *rows]])
    return tables


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip("|").split(" | ")]


DESCRIBED_CONFTEST = """
def pytest_evidence_claims(config):
    return {
        "readings": [
            {"id": "seed", "name": "seed protocol", "supported": "reproduce"},
            {"id": "controlled", "name": "controlled", "supported": "survive their nulls"},
        ],
        "groups": {"preset": ["small", "large"]},
        "claims": [
            {"id": "zeta", "title": "1. Zeta first", "statement": "zeta, as the seed said it",
             "readings": {"seed": "What the seed's code did.",
                          "controlled": "Zeta against a shuffled null."},
             "thresholds": [{"name": "min_effect", "value": 0.5, "why": "a medium effect"}],
             "expected": [{"reading": "controlled", "group": {"preset": "large"},
                           "verdict": "refuted", "why": "the registry: it fails on large"}]},
            {"id": "alpha", "title": "2. Alpha second", "statement": "alpha, as said"},
        ],
    }
"""

DESCRIBED_TESTS = """
import pytest
from matplotlib.figure import Figure

PRESETS = ["large", "small"]  # sorted by name: the report must follow the described order
ZETA_LARGE = "refuted"


@pytest.fixture
def model(preset):
    if preset == "small":
        raise RuntimeError("no model")


@pytest.mark.claim("zeta/controlled", statement="Zeta holds beyond its null.")
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("seed", range(4))
def test_zeta(evidence, preset, seed):
    evidence.record(statistic=1000 + 10 * seed + (5 if preset == "large" else 0))
    assert preset == "small" or seed == 0


@pytest.mark.claim("zeta/controlled", statement="Zeta holds beyond its null.", decides=True)
@pytest.mark.parametrize("preset", PRESETS)
def test_zeta_across_seeds(evidence, preset):
    figure = Figure(figsize=(3, 2))
    figure.subplots().plot([0, 1], [1, 0])
    evidence.figure("effect by seed", figure)
    assert figure.get_suptitle() == f"1. Zeta first\\ncontrolled · preset {preset}: effect by seed"
    if preset == "small":
        evidence.record(verdict="supported", holds_on=4, seeds_tested=4, why="held on 4 of 4",
                        registry_check="reproduced")
    else:
        evidence.record(verdict=ZETA_LARGE, holds_on=1, seeds_tested=4, registry_check="consistent")


@pytest.mark.claim("zeta/seed", statement="Zeta holds beyond its null.", decides=True)
@pytest.mark.parametrize("preset", PRESETS)
def test_zeta_as_the_seed_did(evidence, preset):
    registry = "supported" if preset == "small" else "refuted"
    evidence.record(verdict="supported", holds_on=3, seeds_tested=4, registry_verdict=registry,
                    why="the printout reproduces")
    assert registry == "supported", "the registry says refuted"


@pytest.mark.claim("alpha/seed", decides=True)
@pytest.mark.parametrize("preset", PRESETS)
def test_alpha_as_the_seed_did(evidence, model, preset):
    evidence.record(verdict="inconclusive", holds_on=2, seeds_tested=4, why="half the seeds")


@pytest.mark.claim("alpha/controlled", decides=True)
@pytest.mark.parametrize("preset", PRESETS)
def test_alpha_controlled(evidence, preset):
    evidence.record(verdict="supported", summary=f"beats its null on {preset}")
"""


def write_described(pytester: pytest.Pytester, zeta_large: str = "refuted") -> None:
    pytester.makeconftest(DESCRIBED_CONFTEST)
    tests = DESCRIBED_TESTS.replace('ZETA_LARGE = "refuted"', f'ZETA_LARGE = "{zeta_large}"')
    pytester.makepyfile(test_described=tests)


def test_the_report_opens_with_the_verdict_matrix_in_the_described_order(pytester):
    write_described(pytester)
    run(pytester).assert_outcomes(passed=11, failed=4, errors=1)
    report = pytester.path / "reports" / "latest"
    markdown = (report / "index.md").read_text()
    assert markdown.startswith(
        "# Evidence report\n\n"
        "1 of the 2 claims reproduce on at least one of the 2 presets (1 on all 2): "
        "2 supported, 1 inconclusive, 1 error of 4 seed protocol verdicts. "
        "2 of the 2 claims survive their nulls on at least one of the 2 presets (1 on all 2): "
        "3 supported, 1 refuted of 4 controlled verdicts.\n\n"
        "🟢 supported · 🔴 refuted · 🟡 inconclusive · ⚫ error: no evidence either way\n\n|"
    )
    assert first_table(report / "index.md") == [
        ["claim", "seed protocol · small", "seed protocol · large",
         "controlled · small", "controlled · large"],
        ["**1. Zeta first**<br>“zeta, as the seed said it”",
         "🟢 **supported** 3/4<br>the printout reproduces",
         "🟢 **supported** 3/4<br>the registry says refuted<br>the printout reproduces",
         "🟢 **supported** 4/4<br>held on 4 of 4",
         "🔴 **refuted** 1/4<br>consistent, not decided on 4 seeds<br>"
         "the registry: it fails on large"],
        ["**2. Alpha second**<br>“alpha, as said”",
         "⚫ **error**<br>test error: RuntimeError: no model",
         "🟡 **inconclusive** 2/4<br>half the seeds",
         "🟢 **supported** beats its null on small",
         "🟢 **supported** beats its null on large"],
    ]  # fmt: skip
    assert (report / "summary.md").read_text() == markdown.split("\n\n## ", 1)[0] + "\n"

    html = (report / "index.html").read_text()
    assert html.index('<table id="verdicts">') < html.index("<table>")  # the first table
    assert '<th colspan="2">seed protocol</th><th colspan="2">controlled</th>' in html
    assert (
        '<td class="tone-refuted" title="the registry: it fails on large"><strong>refuted'
        "</strong> 1/4" in html
    )
    assert "<details><summary>why</summary>the registry: it fails on large</details>" in html


STUDY_TESTS = """
import pytest


@pytest.mark.claim("study/evolution", decides=True)
@pytest.mark.parametrize("statistic", ["zeta", "alpha"])
@pytest.mark.parametrize("preset", ["large", "small"])
def test_study(evidence, preset, statistic):
    evidence.record(verdict="supported" if preset == "small" else "refuted",
                    summary=f"{statistic} on {preset}")
"""


def test_a_group_of_two_parameters_is_a_column_per_first_and_a_row_per_second(pytester):
    """Not a column per combination: the matrix of a study of statistics by preset has a row per
    statistic and a column per preset, each in the described order."""
    pytester.makeconftest(DESCRIBED_CONFTEST.replace(
        '"groups": {"preset": ["small", "large"]}',
        '"groups": {"preset": ["small", "large"], "statistic": ["zeta", "alpha"]}'))  # fmt: skip
    pytester.makepyfile(test_study=STUDY_TESTS)
    run(pytester).assert_outcomes(passed=4)
    assert (pytester.path / "reports" / "latest" / "summary.md").read_text().startswith(
        "# Evidence report\n\n2 of the 2 statistics are supported by the evolution reading on "
        "at least one of the 2 presets (0 on all 2): 2 supported, 2 refuted of 4 evolution "
        "verdicts.")  # fmt: skip
    assert first_table(pytester.path / "reports" / "latest" / "index.md") == [
        ["claim", "evolution · small", "evolution · large"],
        ["**study · zeta**", "🟢 **supported** zeta on small", "🔴 **refuted** zeta on large"],
        ["**study · alpha**", "🟢 **supported** alpha on small", "🔴 **refuted** alpha on large"],
    ]  # fmt: skip


def test_each_claim_has_a_section_with_readings_verdicts_figures_and_thresholds(pytester):
    write_described(pytester)
    run(pytester)
    report = pytester.path / "reports" / "latest"
    markdown = (report / "index.md").read_text()
    sections = markdown.split("\n## ")[1:]
    assert [section.splitlines()[0] for section in sections] == ["1. Zeta first", "2. Alpha second"]
    zeta = sections[0]
    for expected in (
        "> zeta, as the seed said it",
        "Tested as: Zeta holds beyond its null.",
        "### Seed protocol\n\nWhat the seed's code did.",
        "### Controlled\n\nZeta against a shuffled null.",
        "| min_effect  | 0.5     | a medium effect |",
        "[claims.csv](claims.csv)",
    ):
        assert expected in zeta, expected
    assert zeta.index("### Seed protocol") < zeta.index("### Controlled") < zeta.index("Thresh")
    captions = re.findall(r"!\[([^]]*)\]", zeta)
    assert captions == ["preset small: effect by seed", "preset large: effect by seed"]
    assert re.search(
        r"\| large +\| 🔴 \*\*refuted\*\*<br>consistent, not decided on 4 seeds "
        r"+\| 1/4 +\| \[0.04559, 0.6994\] +\| the registry: it fails on large",
        zeta,
    )
    # Per-seed values stay out of index.md; they are in claims.csv and collapsed in index.html.
    assert "1005" not in markdown
    assert "1005" in (report / "claims.csv").read_text()
    html = (report / "index.html").read_text()
    details = "<details>\n<summary>1. Zeta first: per-seed values and test statistics</summary>"
    assert "<td>1005</td>" in html.split(details, 1)[1]


def test_a_comparison_shows_the_changed_verdicts_first_as_a_matrix(pytester):
    write_described(pytester, zeta_large="inconclusive")
    run(pytester, "--evidence-dir", "before")
    write_described(pytester)
    result = run(pytester, "--evidence-compare", "before")
    result.stdout.fnmatch_lines(
        [
            "evidence compared with before: 1 verdicts of the matrix, *",
            "  zeta/controlled [[]preset=large]: verdict inconclusive -> refuted",
        ]
    )
    summary = (pytester.path / "reports" / "latest" / "summary.md").read_text()
    changes = summary.split("## Changes since before\n\n", 1)[1]
    assert changes.startswith("| claim ")  # the changed verdicts come first
    assert tables_in(changes)[0][1:] == [
        ["1. Zeta first", "supported", "supported", "supported", "🔴 **inconclusive → refuted**"],
    ]
    assert "1 verdicts of the matrix, " in changes


def test_a_bad_description_is_a_usage_error(pytester):
    pytester.makeconftest("def pytest_evidence_claims(config):\n    return {'claims': [1]}\n")
    write_claims(pytester)
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: pytest_evidence_claims returned a bad result: each of 'claims' must be *"]
    )


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_evidence_directory_that_cannot_be_created_is_a_usage_error_before_any_test(pytester):
    pytester.makepyfile(test_ran="def test_ran():\n    open('ran', 'w').close()\n")
    result = run(pytester, "--evidence-dir", "/proc/nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == (
        "ERROR: --evidence-dir: /proc/nope cannot be created or written: No such file or directory"
    )
    assert not (pytester.path / "ran").exists()


def test_a_report_that_cannot_be_written_at_the_end_goes_to_a_temporary_directory(pytester):
    write_claims(pytester)
    pytester.makepyfile(
        test_zz_last="""
        import shutil
        from pathlib import Path

        def test_the_disk_goes(evidence):
            evidence.record(statistic=1)
            shutil.rmtree("reports/latest")
            Path("reports/latest").write_text("in the way")
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=16, failed=10, xfailed=1)
    line = next(line for line in result.stdout.lines if line.startswith("evidence: could not"))
    assert "NotADirectoryError" in line or "FileExistsError" in line
    fallback = Path(line.rsplit(" the report was written to ", 1)[1].removesuffix(" instead"))
    try:
        assert fallback.name.startswith("evidence-")
        tests = by_nodeid(results_of(fallback))
        assert "test_zz_last.py::test_the_disk_goes" in tests
        assert tests["test_claims.py::test_alpha[2-large]"]["values"]["statistic"] == 0.4123456789
        assert (fallback / "index.md").is_file()
        result.stdout.fnmatch_lines([f"evidence report: {fallback / 'index.md'}"])
    finally:
        shutil.rmtree(fallback)


BROWSER_CHECK = """(async () => {
    const decoded = await Promise.all([...document.images].map(
        image => image.decode().then(() => image.naturalWidth > 0, () => false)));
    const first = document.querySelector("table");
    return {images: decoded, alts: [...document.images].map(image => image.alt),
            first: first.id, bottom: first.getBoundingClientRect().bottom, screen: innerHeight,
            tooltips: first.querySelectorAll("td[title]").length};
})()"""


def test_the_report_in_a_real_browser_opens_with_the_matrix_and_loads_every_image(
    pytester, chromium
):
    write_described(pytester)
    run(pytester)
    report = pytester.path / "reports" / "latest"
    chromium.open((report / "index.html").as_uri())
    page = chromium.evaluate(BROWSER_CHECK)
    assert page["first"] == "verdicts"  # the verdict matrix is the first table
    assert page["bottom"] <= page["screen"]  # and all of it is on the first screen
    assert page["tooltips"] == 5  # each of the 5 cells with a why shows it as a tooltip
    assert page["alts"] == ["preset small: effect by seed", "preset large: effect by seed"]
    assert page["images"] == [True, True]  # every image decodes
    assert chromium.screenshot().startswith(PNG_SIGNATURE)
