"""What changed between an earlier report's results.json and this run's results.

Groups (a claim's test function at one value of each parameter but `seed`) and deciding
verdicts (the cells of the verdict matrix) are matched by claim, test and group; tests by node
id. Reported: changed deciding verdicts (a cell in one run only counts as changed, with
None for the other), changed group verdicts and pass rates, changed test outcomes and verdicts,
changed scalar values (likewise), and tests added or removed.
"""

from __future__ import annotations

import json
from typing import Any

from mechclaims.evidence.values import is_scalar


def compare_results(earlier: dict[str, Any], now: dict[str, Any], against: str) -> dict[str, Any]:
    """The changes from `earlier` to `now`; `against` names the earlier report."""
    earlier_tests, now_tests = _tests(earlier), _tests(now)
    common = [nodeid for nodeid in now_tests if nodeid in earlier_tests]
    return {
        "against": against,
        "decisions": _decision_changes(earlier, now),
        "verdicts": _changes(_groups(earlier), _groups(now), ("verdict", "pass_rate")),
        "outcomes": _changes(earlier_tests, now_tests, ("outcome", "verdict")),
        "values": [
            change
            for nodeid in common
            for change in _value_changes(earlier_tests[nodeid], now_tests[nodeid])
        ],
        "added": [
            now_tests[nodeid]["where"] for nodeid in now_tests if nodeid not in earlier_tests
        ],
        "removed": [
            earlier_tests[nodeid]["where"] for nodeid in earlier_tests if nodeid not in now_tests
        ],
    }


def change_counts(comparison: dict[str, Any]) -> str:
    """One line: how many verdicts, outcomes and values changed, how many tests came and went."""
    count = {
        key: len(comparison[key])
        for key in ("decisions", "verdicts", "outcomes", "values", "added", "removed")
    }
    return (
        f"{count['decisions']} verdicts of the matrix, "
        f"{count['verdicts']} group verdicts or pass rates, {count['outcomes']} test outcomes, "
        f"{count['values']} values changed; "
        f"{count['added']} tests added, {count['removed']} removed"
    )


def _decision_changes(earlier: dict[str, Any], now: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells of the verdict matrix whose verdict differs, in this run's order, then the
    cells only the earlier run had."""
    before, after = _decisions(earlier), _decisions(now)
    return [
        {
            **dict(zip(("claim", "test", "group"), json.loads(key), strict=True)),
            "verdict_before": before.get(key),
            "verdict_now": after.get(key),
        }
        for key in [*after, *(key for key in before if key not in after)]
        if before.get(key) != after.get(key)
    ]


def _decisions(results: dict[str, Any]) -> dict[str, str]:
    """Each deciding verdict by (claim, test, group)."""
    return {
        json.dumps([claim["claim"], entry["test"], entry["group"]]): entry["verdict"]
        for claim in results["claims"]
        for entry in claim["verdicts"]
    }


def _groups(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each claim's summary groups by (claim, test, group), with `where` naming them."""
    return {
        json.dumps([claim["claim"], group["test"], group["group"]]): {
            "where": {"claim": claim["claim"], "test": group["test"], "group": group["group"]},
            **group,
        }
        for claim in results["claims"]
        for group in claim["summary"]
    }


def _tests(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each test by node id, with `where` naming it."""
    return {
        test["nodeid"]: {"where": {"claim": claim["claim"], "nodeid": test["nodeid"]}, **test}
        for claim in results["claims"]
        for test in claim["tests"]
    }


def _changes(
    earlier: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]], keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """For entries in both runs whose `keys` differ: where, and each key before and now."""
    return [
        {
            **now[name]["where"],
            **{
                f"{key}_{when}": side[name].get(key)
                for key in keys
                for when, side in (("before", earlier), ("now", now))
            },
        }
        for name in now
        if name in earlier and any(earlier[name].get(key) != now[name].get(key) for key in keys)
    ]


def _value_changes(earlier: dict[str, Any], now: dict[str, Any]) -> list[dict[str, Any]]:
    """The scalar values of one test that differ between the runs."""
    names = sorted(
        {
            name
            for test in (earlier, now)
            for name, value in test["values"].items()
            if is_scalar(value)
        }
    )
    return [
        {
            **now["where"],
            "value": name,
            "before": earlier["values"].get(name),
            "now": now["values"].get(name),
        }
        for name in names
        if earlier["values"].get(name) != now["values"].get(name)
    ]
