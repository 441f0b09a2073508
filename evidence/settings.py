"""The evidence plugin's options, read and checked once at configure time.

    --evidence-dir DIR       where the report goes (ini `evidence_dir`, default reports/latest)
    --no-evidence            record in memory only; write and print nothing
    --evidence-compare DIR   compare with the report in DIR (ini `evidence_compare`)

A path given on the command line is relative to the directory pytest was started in; one
from the ini file, to the rootdir. A bad value is a usage error that names the option, before
any test runs: the report's directory is tried (created, written, and what was created removed
again), so that a run of hours never ends unable to write its evidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mechclaims.evidence.files import writability_problem

DEFAULT_DIR = "reports/latest"


@dataclass(frozen=True)
class Settings:
    directory: Path | None  # None with --no-evidence: nothing is written
    compare_against: str | None = None  # the earlier report, as the option named it
    earlier_results: dict[str, Any] | None = None

    @property
    def enabled(self) -> bool:
        return self.directory is not None


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("evidence", "evidence report of the claims")
    group.addoption(
        "--evidence-dir",
        dest="evidence_dir",
        metavar="DIR",
        help=f"write the evidence report into DIR (default: ini evidence_dir, else {DEFAULT_DIR})",
    )
    group.addoption(
        "--no-evidence",
        dest="no_evidence",
        action="store_true",
        help="write no evidence report (tests still record their values)",
    )
    group.addoption(
        "--evidence-compare",
        dest="evidence_compare",
        metavar="DIR",
        help="compare this run with the evidence report in DIR (default: ini evidence_compare)",
    )
    parser.addini(
        "evidence_dir", "directory of the evidence report, relative to rootdir", default=DEFAULT_DIR
    )
    parser.addini(
        "evidence_compare",
        "earlier evidence report to compare with, relative to rootdir",
        default="",
    )


def read_settings(config: pytest.Config, try_directory: bool = True) -> Settings:
    """The options' values, checked; raises pytest.UsageError naming a bad option. With
    `try_directory`, the report's directory is tried: created and written (see `files`)."""
    if config.getoption("no_evidence"):
        return Settings(directory=None)
    report = _path_option(config, "evidence_dir")
    if report is None:
        raise pytest.UsageError(
            "ini option evidence_dir is empty: name a directory or use --no-evidence"
        )
    _, directory, option = report
    problem = writability_problem(directory, try_it=try_directory)
    if problem:
        raise pytest.UsageError(f"{option}: {problem}")
    earlier = _path_option(config, "evidence_compare")
    if earlier is None:
        return Settings(directory)
    given, compare_dir, option = earlier
    return Settings(directory, given, _earlier_results(compare_dir, option))


def _path_option(config: pytest.Config, name: str) -> tuple[str, Path, str] | None:
    """(as given, resolved path, name of the option) from the command line, else the ini file."""
    given = config.getoption(name)
    if given:
        return (
            given,
            (config.invocation_params.dir / given).resolve(),
            "--" + name.replace("_", "-"),
        )
    given = config.getini(name)
    if given:
        return given, (config.rootpath / given).resolve(), f"ini option {name}"
    return None


def _earlier_results(directory: Path, option: str) -> dict[str, Any]:
    """The results.json of an earlier report, checked to be one."""
    path = directory / "results.json"
    if not directory.is_dir():
        raise pytest.UsageError(f"{option}: {directory} is not a directory")
    if not path.is_file():
        raise pytest.UsageError(
            f"{option}: {directory} has no results.json (not an evidence report?)"
        )
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise pytest.UsageError(f"{option}: {path} is not valid JSON: {error}") from None
    if not isinstance(results, dict) or not isinstance(results.get("claims"), list):
        raise pytest.UsageError(
            f"{option}: {path} is not an evidence results.json (no claims list)"
        )
    return results
