"""A test's outcome from its phase reports, its one-line message, and the verdict it gives.

Outcomes are pytest's categories, with one change: a strict xfail that passes, which pytest
counts as failed (`[XPASS(strict)]`), is recorded as `xpassed`, so that every outcome says
whether the claim's assertion held. The verdict of a test is the `verdict` it recorded, if
any, else the one its outcome gives:

    passed   -> supported     the claim's assertion held
    xpassed  -> supported     it held although the test expected it not to (strict: suite red)
    failed   -> refuted       the assertion failed (or the test crashed: see its message)
    xfailed  -> refuted       it failed as the test expected (a refuted claim, marked xfail)
    skipped  -> inconclusive  no evidence was taken
    error    -> error         setup or teardown failed: no evidence either way
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from mechclaims.evidence.values import one_line

VERDICTS = ("supported", "refuted", "inconclusive")
OUTCOME_VERDICTS = {
    "passed": "supported",
    "xpassed": "supported",
    "failed": "refuted",
    "xfailed": "refuted",
    "skipped": "inconclusive",
    "error": "error",
}
# The order in which a test's phases override each other: a failed call wins over a teardown
# error, which wins over a passed call.
OUTCOMES = ("passed", "skipped", "xfailed", "xpassed", "error", "failed")
STRICT_XPASS = "[XPASS(strict)]"


def phase_outcome(report: Any) -> str | None:
    """What one phase report says of its test; None for a setup or teardown that passed."""
    expected_to_fail = hasattr(report, "wasxfail")
    if report.when in ("setup", "teardown"):
        if report.failed:
            return "error"
        if report.skipped:
            return "xfailed" if expected_to_fail else "skipped"
        return None
    if expected_to_fail:
        return "xfailed" if report.skipped else "xpassed"
    if report.failed and str(report.longrepr).startswith(STRICT_XPASS):
        return "xpassed"
    return report.outcome


def phase_message(report: Any) -> str:
    """The report's one-line reason: the failure's first line, the skip or xfail reason."""
    longrepr = report.longrepr
    if longrepr is None:
        return one_line(getattr(report, "wasxfail", ""))
    if isinstance(longrepr, (tuple, list)):  # a skip: (path, lineno, "Skipped: reason")
        return one_line(longrepr[-1])
    reprcrash = getattr(longrepr, "reprcrash", None)
    return one_line(reprcrash.message if reprcrash is not None else longrepr)


def combined_outcome(phases: Iterable[tuple[str | None, str]]) -> tuple[str, str] | None:
    """The (outcome, message) of a test from its phases' (outcome, message) pairs.

    None when no phase gave an outcome: the run stopped before the test's call finished.
    """
    decided = [phase for phase in phases if phase[0] is not None]
    if not decided:
        return None
    return max(decided, key=lambda phase: OUTCOMES.index(phase[0]))


def check_verdict(verdict: Any) -> str:
    """A recorded verdict: one of VERDICTS, or a project's own word (lowercase, hyphenated,
    e.g. "unlike-random"), which the report shows in a neutral tone."""
    if verdict not in VERDICTS and not (
        isinstance(verdict, str) and re.fullmatch(r"[a-z]+(?:-[a-z]+)*", verdict)
    ):
        raise ValueError(
            f"verdict must be one of {', '.join(VERDICTS)} or a lowercase hyphenated word; "
            f"got {verdict!r}"
        )
    return verdict
