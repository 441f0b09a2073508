"""The controller's side of the plugin: gathers the test reports, writes the report at the end.

It is registered only on the process that runs the session (not on pytest-xdist workers), and
sees every test's reports through `pytest_runtest_logreport`, from whichever worker they come.
A run that stops early (Ctrl-C, -x or --maxfail, a collection error, an internal error) still
writes what it has, marked incomplete. A report that cannot be written where it should go (a
full disk, a directory removed during the run) is written to a new temporary directory, with
the figures that can be copied, and the terminal says where: a long run's evidence is not lost.
A run in which no test recorded evidence (e.g. only unit tests) writes nothing, so the last
report of the claims stays in place.
"""

from __future__ import annotations

import contextlib
import json
import platform
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from tabulate import tabulate

from mechclaims.evidence.compare import change_counts, compare_results
from mechclaims.evidence.descriptions import DESCRIPTIONS_KEY
from mechclaims.evidence.figure_cache import COUNTS_KEY, figure_cache
from mechclaims.evidence.matrix import decisions_of, summary_sentences
from mechclaims.evidence.outcomes import combined_outcome, phase_message, phase_outcome
from mechclaims.evidence.recorder import FIGURES_DIR
from mechclaims.evidence.report import cell_text, terminal_matrix, write_report
from mechclaims.evidence.results import build_results, record_of
from mechclaims.evidence.settings import Settings

PAYLOAD_ATTRIBUTE = "evidence_payload"  # the test report's attribute that carries the evidence
PACKAGES = ("pytest", "pytest-xdist", "numpy", "scipy", "pandas", "matplotlib", "tabulate")
MAX_LISTED_CHANGES = 10


class ReportCollector:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.payloads: dict[str, dict[str, Any]] = {}
        self.phases: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
        self.durations: dict[str, float] = defaultdict(float)
        self.workers: set[str] = set()
        self.worker_figures: Counter[str] = Counter()  # figures reused and drawn on xdist workers
        self.interruption: str | None = None
        self.started = time.time()
        self.results: dict[str, Any] | None = None
        self.comparison: dict[str, Any] | None = None
        self.written_to = settings.directory  # where the report went: elsewhere if it had to
        self.write_error: OSError | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        payload = getattr(report, PAYLOAD_ATTRIBUTE, None)
        if payload is not None:
            self.payloads[report.nodeid] = payload
        if report.nodeid not in self.payloads:
            return
        self.phases[report.nodeid].append((phase_outcome(report), phase_message(report)))
        self.durations[report.nodeid] += report.duration
        worker = getattr(report, "worker_id", None)  # set by pytest-xdist
        if worker is not None:
            self.workers.add(worker)

    @pytest.hookimpl(optionalhook=True)  # pytest-xdist's
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        self.worker_figures.update(getattr(node, "workeroutput", {}).get(COUNTS_KEY, {}))

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # Ctrl-C, and pytest's own stops: collection errors, xdist's -x, pytest.exit().
        self.interruption = str(excinfo.value) or excinfo.typename

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if session.config.option.collectonly or not self.payloads:
            return
        self.results = build_results(
            self.records(),
            self.stop_reason(session, exitstatus),
            session.config.stash[DESCRIPTIONS_KEY],
        )
        if self.settings.earlier_results is not None:
            self.comparison = compare_results(
                self.settings.earlier_results, self.results, self.settings.compare_against
            )
        run = self.run_info(session, exitstatus)
        try:
            write_report(self.settings.directory, self.results, self.comparison, run)
        except OSError as error:
            self.write_error = error
            self.written_to = fallback_directory(self.settings.directory)
            write_report(self.written_to, self.results, self.comparison, run)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        if self.results is None:
            if not terminalreporter.config.option.collectonly:
                write(f"evidence: no test recorded evidence; {self.settings.directory} unchanged")
            return
        terminalreporter.write_sep("=", "evidence")
        for sentence in summary_sentences(decisions_of(self.results), self.results["descriptions"]):
            write(sentence)
        matrix = terminal_matrix(self.results)
        write(tabulate(matrix.rows, headers=matrix.flat_headers(), disable_numparse=True))
        if self.comparison is not None:
            for line in comparison_lines(self.comparison):
                write(line)
        if self.write_error is not None:
            write(
                f"evidence: could not write {self.settings.directory} "
                f"({type(self.write_error).__name__}: {self.write_error}); "
                f"the report was written to {self.written_to} instead",
                red=True,
                bold=True,
            )
        status = "" if self.results["complete"] else f" (incomplete: {self.results['stopped']})"
        write(f"evidence report: {self.written_to / 'index.md'}{status}")

    def records(self) -> list[dict[str, Any]]:
        """One record per test that finished; a test cut short has no outcome and is left out."""
        records = []
        for nodeid, payload in self.payloads.items():
            outcome = combined_outcome(self.phases[nodeid])
            if outcome is not None:
                records.append(record_of(nodeid, payload, *outcome))
        return records

    def stop_reason(self, session: pytest.Session, exitstatus: int) -> str | None:
        """Why the run stopped before its end, or None if it ran every collected test."""
        for reason in (self.interruption, session.shouldfail, session.shouldstop):
            if reason:
                return reason if isinstance(reason, str) else "stopped early"
        if exitstatus == pytest.ExitCode.INTERNAL_ERROR:
            return "internal error"
        return None

    def run_info(self, session: pytest.Session, exitstatus: int) -> dict[str, Any]:
        """run.json: what varies between runs of the same tests."""
        finished = time.time()
        return {
            "started": _utc(self.started),
            "finished": _utc(finished),
            "duration_s": round(finished - self.started, 3),
            "exitstatus": int(exitstatus),
            "args": [str(arg) for arg in session.config.invocation_params.args],
            "host": platform.node(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "packages": _package_versions(),
            "workers": len(self.workers),
            "figures": figure_cache(session.config).run_info(self.worker_figures),
            **merged(session.config.hook.pytest_evidence_run_info(config=session.config)),
            "test_durations_s": {
                nodeid: round(self.durations[nodeid], 4) for nodeid in sorted(self.durations)
            },
        }


def merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Every plugin's part of run.json in one dict."""
    return {key: value for part in parts for key, value in part.items()}


def comparison_lines(comparison: dict[str, Any]) -> list[str]:
    """The terminal's account of a comparison: counts, then the changed verdicts of the matrix,
    the other changed group verdicts and pass rates, the changed outcomes."""
    lines = [f"evidence compared with {comparison['against']}: {change_counts(comparison)}"]
    decided = {_where(change) for change in comparison["decisions"]}
    changes = (
        [
            f"  {change['claim']} [{cell_text(change['group'])}]: verdict "
            f"{change['verdict_before']} -> {change['verdict_now']}"
            for change in comparison["decisions"]
        ]
        + [
            f"  {change['claim']} {change['test']} [{cell_text(change['group'])}]: verdict "
            f"{change['verdict_before']} -> {change['verdict_now']}, pass rate "
            f"{change['pass_rate_before']} -> {change['pass_rate_now']}"
            for change in comparison["verdicts"]
            if _where(change) not in decided
        ]
        + [
            f"  {change['nodeid']}: {change['outcome_before']} -> {change['outcome_now']}"
            for change in comparison["outcomes"]
        ]
    )
    lines += changes[:MAX_LISTED_CHANGES]
    if len(changes) > MAX_LISTED_CHANGES:
        lines.append(f"  ... and {len(changes) - MAX_LISTED_CHANGES} more: see compare.json")
    return lines


def _where(change: dict[str, Any]) -> str:
    return json.dumps([change["claim"], change["test"], change["group"]])


def fallback_directory(directory: Path) -> Path:
    """A new temporary directory for a report that could not be written to `directory`, with
    the figures the tests saved there, as far as they can be read."""
    fallback = Path(tempfile.mkdtemp(prefix="evidence-"))
    with contextlib.suppress(OSError):
        shutil.copytree(directory / FIGURES_DIR, fallback / FIGURES_DIR)
    return fallback


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
