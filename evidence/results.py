"""The report's content from the tests' records: rows sorted, claims summarized.

A test record is one dict of plain JSON: nodeid, claim, statement, params (the test's
parametrization), outcome, verdict, message, values, tables and figures. The results (the
content of results.json, from which every other file is rendered) nest the records by claim;
each claim has a summary per group of tests. A group is a test function with one value of every
parameter except `seed` (e.g. one preset): it pools the seeds. Two test functions of one
claim are different readings of it and are never pooled. For each group:

- `pass_rate`: the share of decided tests (verdict supported or refuted) that support the
  claim, with its 95% Wilson interval `pass_rate_ci95`;
- `verdict`: the verdict its tests share, or `mixed`;
- `statistics`: for every numeric value recorded, its median and 2.5-97.5% range over the group.

A test marked `decides=True` gives the claim's verdict for its parameters (other than `seed`):
each claim lists these under `verdicts`, each with the pass rate of the claim's other tests of
the same parameters (e.g. the per-seed tests beside a cross-seed verdict), and the values of
DECISION_VALUES the deciding test recorded:

    why                       the verdict's one-line reason (e.g. a registry's)
    finding                   the reading's own word for the verdict, where it has words of
                              its own (e.g. emerges, persists, fades for supported, refuted)
    summary                   a one-line account of the decision
    holds_on, seeds_tested    on how many of how many seeds the claim held
    rate_low, rate_high       the 95% interval of that rate; required_rate: the rate it needs
    registry_verdict          the verdict a registry of claims expects
    registry_check            how the verdict stands to it: reproduced, consistent (decided on
                              fewer or other seeds: weaker, not contrary), contradicted, missing

`descriptions` holds what the project says of its claims (`descriptions`), so that every file
of the report can be rendered from the results alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from mechclaims.evidence.outcomes import OUTCOME_VERDICTS, OUTCOMES
from mechclaims.evidence.stats import spread, wilson_interval
from mechclaims.evidence.values import is_number, is_scalar, round_float

RESULTS_FORMAT = 2
UNCLAIMED = "(unclaimed)"
POOLED_PARAM = "seed"
# Values that claims commonly record come first in tables; any others follow by name.
COMMON_VALUES = ("statistic", "threshold", "null_value", "p_value", "effect")
DECISION_VALUES = (
    "why", "finding", "summary", "holds_on", "seeds_tested", "rate_low", "rate_high",
    "required_rate", "registry_verdict", "registry_check",
)  # fmt: skip


def record_of(nodeid: str, payload: dict[str, Any], outcome: str, message: str) -> dict[str, Any]:
    """One test's row: its payload (from the test report) and its outcome."""
    values = dict(payload["values"])
    verdict = values.pop("verdict", None) or OUTCOME_VERDICTS[outcome]
    return {
        "nodeid": nodeid,
        "claim": payload["claim"],
        "statement": payload["statement"],
        "decides": payload.get("decides", False),
        "params": payload["params"],
        "outcome": outcome,
        "verdict": verdict,
        "message": message,
        "values": values,
        "tables": payload["tables"],
        "figures": payload["figures"],
    }


def build_results(
    records: Iterable[dict[str, Any]], stopped: str | None, descriptions: dict[str, Any]
) -> dict[str, Any]:
    """results.json: every record, sorted and nested by claim, with the claims' summaries."""
    by_claim: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=record_order):
        by_claim.setdefault(record["claim"], []).append(record)
    return {
        "format": RESULTS_FORMAT,
        "complete": stopped is None,
        "stopped": stopped,
        "descriptions": descriptions,
        "claims": [claim_results(claim, rows) for claim, rows in by_claim.items()],
    }


def claim_results(claim: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    statements = [row["statement"] for row in rows if row["statement"]]
    return {
        "claim": claim,
        "statement": statements[0] if statements else "",
        "verdicts": [deciding_verdict(row, rows) for row in rows if row["decides"]],
        "summary": [group_summary(group_rows) for group_rows in groups(rows).values()],
        "tests": [
            {key: row[key] for key in row if key not in ("claim", "statement")} for row in rows
        ],
    }


def groups(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows of one claim by test function and parameters other than POOLED_PARAM."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        key = json.dumps([base_nodeid(row["nodeid"]), group_params(row)])
        grouped.setdefault(key, []).append(row)
    return grouped


def deciding_verdict(decider: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A deciding test's verdict, with the pass rate of the claim's other tests of its group and
    the DECISION_VALUES it recorded."""
    group = group_params(decider)
    others = [row for row in rows if not row["decides"] and group_params(row) == group]
    return {
        "test": function_of(decider["nodeid"]),
        "group": group,
        "verdict": decider["verdict"],
        "outcome": decider["outcome"],
        "message": decider["message"],
        **pass_rate(others),
        **{name: decider["values"][name] for name in DECISION_VALUES if name in decider["values"]},
    }


def pass_rate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many rows are decided (supported or refuted), how many support, with a Wilson CI."""
    verdicts = [row["verdict"] for row in rows]
    supported = verdicts.count("supported")
    decided = supported + verdicts.count("refuted")
    return {
        "supported": supported,
        "decided": decided,
        "pass_rate": round_float(supported / decided) if decided else None,
        "pass_rate_ci95": (
            [round_float(bound) for bound in wilson_interval(supported, decided)]
            if decided
            else None
        ),
    }


def group_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    verdicts = [row["verdict"] for row in rows]
    return {
        "test": function_of(rows[0]["nodeid"]),
        "group": group_params(rows[0]),
        "tests": len(rows),
        "outcomes": {
            outcome: count
            for outcome in OUTCOMES
            if (count := sum(row["outcome"] == outcome for row in rows))
        },
        "verdict": verdicts[0] if len(set(verdicts)) == 1 else "mixed",
        **pass_rate(rows),
        "statistics": {
            name: spread(
                [row["values"][name] for row in rows if is_number(row["values"].get(name))]
            )
            for name in value_names(rows, numeric=True)
        },
    }


def value_names(rows: Iterable[dict[str, Any]], numeric: bool = False) -> list[str]:
    """Names of the scalar (or numeric) values recorded in `rows`, COMMON_VALUES first."""
    wanted = is_number if numeric else is_scalar
    names = {name for row in rows for name, value in row["values"].items() if wanted(value)}
    return [name for name in COMMON_VALUES if name in names] + sorted(names - set(COMMON_VALUES))


def param_names(rows: Iterable[dict[str, Any]]) -> list[str]:
    return sorted({name for row in rows for name in row["params"]})


def group_params(row: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in sorted(row["params"].items()) if name != POOLED_PARAM}


def base_nodeid(nodeid: str) -> str:
    """The node id without parameters: `claims/x.py::test_a[3]` -> `claims/x.py::test_a`."""
    return nodeid.split("[", 1)[0]


def function_of(nodeid: str) -> str:
    """The test's name without its file and parameters: `claims/x.py::test_a[3]` -> `test_a`."""
    return base_nodeid(nodeid).split("::", 1)[-1]


def record_order(record: dict[str, Any]) -> tuple:
    """Claims by id (unclaimed tests last), then test function, parameters, node id."""
    params = tuple((name, sortable(record["params"][name])) for name in sorted(record["params"]))
    nodeid = record["nodeid"]
    return (record["claim"] == UNCLAIMED, record["claim"], base_nodeid(nodeid), params, nodeid)


def sortable(value: Any) -> tuple:
    """A key that orders numbers numerically, before strings, before anything else."""
    if is_number(value):
        return (0, value, "")
    if isinstance(value, str):
        return (1, 0, value)
    return (2, 0, json.dumps(value))
