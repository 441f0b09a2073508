"""The evidence plugin's hooks: what a project says of its claims beyond what its tests record,
and what other plugins add to run.json."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_evidence_claims(config: pytest.Config) -> dict[str, Any] | None:
    """The project's account of its claims, for the report; None if it has none.

    Plain JSON, every key optional (see `mechclaims.evidence.descriptions`):

        {
          "readings": [                                     # the matrix's column order
            {"id": "controlled", "name": "controlled",
             "supported": "survive their nulls"},           # what "supported" says of a claim
          ],
          "groups": {"preset": ["small", "large"]},        # the order of a parameter's values
          "claims": [                                       # the matrix's row order
            {"id": "alpha", "title": "1. Alpha", "statement": "the claim, as it was made",
             "readings": {"controlled": "what this reading measures, against which nulls"},
             "thresholds": [{"name": "min_effect", "value": 0.5, "why": "Cohen's medium d"}],
             "expected": [{"reading": "controlled", "group": {"preset": "small"},
                           "verdict": "supported", "why": "the verdict's one-line reason"}]},
          ],
        }

    A test's claim id is `<claim>/<reading>` (`alpha/controlled`); `group` is a deciding test's
    parameters other than `seed`. It is called once per process, at the start of the session.
    """


@pytest.hookspec
def pytest_evidence_run_info(config: pytest.Config) -> dict[str, Any] | None:
    """More of run.json, from another plugin: what varies between runs of the same tests (plain
    JSON, e.g. {"measurements": {"from_cache": 12, "computed": 3}}); each plugin's keys are
    added. It is called on the process that writes the report, at the end of the session."""
