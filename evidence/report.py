"""One run's report folder, rendered from the results (see `results`).

    index.md      summary per claim and group, then a section per claim: statement,
                  statistics across seeds, one row per test, tables, figures
    index.html    the same page, self-contained (figures embedded)
    claims.csv    one row per test: claim, node id, parameters, outcome, verdict, message,
                  every scalar value recorded
    results.json  the results: every test nested by claim, with statements and summaries
    compare.json  the changes since an earlier report (only with --evidence-compare)
    figures/      the figures' PNGs, saved by the tests; unreferenced ones are deleted
    run.json      everything that varies between runs of the same tests: times, host,
                  versions, durations, workers

Every file but run.json depends only on the tests' records, which are sorted: the same tests
give the same bytes, serially or under pytest-xdist. Each file is replaced atomically.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from mechclaims.evidence.compare import change_counts
from mechclaims.evidence.document import (
    Banner,
    Block,
    Figure,
    Heading,
    Paragraph,
    Quote,
    Table,
    to_html,
    to_markdown,
)
from mechclaims.evidence.files import remove_if_present, remove_unlisted_files, write_text_atomic
from mechclaims.evidence.recorder import FIGURES_DIR
from mechclaims.evidence.results import UNCLAIMED, function_of, param_names, value_names
from mechclaims.evidence.values import display

TITLE = "Evidence report"


def write_report(
    directory: Path, results: dict[str, Any], comparison: dict[str, Any] | None, run: dict[str, Any]
) -> None:
    """Write every file of the report into `directory`."""
    remove_unlisted_files(directory / FIGURES_DIR, referenced_figures(results))
    blocks = report_blocks(results, comparison)
    write_text_atomic(directory / "results.json", json_text(results))
    write_text_atomic(directory / "claims.csv", claims_csv(results))
    write_text_atomic(directory / "index.md", to_markdown(blocks))
    write_text_atomic(directory / "index.html", to_html(blocks, TITLE, directory))
    if comparison is None:
        remove_if_present(directory / "compare.json")
    else:
        write_text_atomic(directory / "compare.json", json_text(comparison))
    write_text_atomic(directory / "run.json", json_text(run))


def json_text(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def referenced_figures(results: dict[str, Any]) -> set[str]:
    return {
        Path(figure["path"]).name
        for claim in results["claims"]
        for test in claim["tests"]
        for figure in test["figures"]
    }


def claims_csv(results: dict[str, Any]) -> str:
    rows = [(claim["claim"], test) for claim in results["claims"] for test in claim["tests"]]
    tests = [test for _, test in rows]
    params, values = param_names(tests), value_names(tests)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["claim", "nodeid", *params, "outcome", "verdict", "message", *values])
    for claim, test in rows:
        writer.writerow(
            [
                claim,
                test["nodeid"],
                *(_csv_cell(test["params"].get(name)) for name in params),
                test["outcome"],
                test["verdict"],
                test["message"],
                *(_csv_cell(test["values"].get(name)) for name in values),
            ]
        )
    return text.getvalue()


def report_blocks(results: dict[str, Any], comparison: dict[str, Any] | None) -> list[Block]:
    blocks: list[Block] = [Heading(1, TITLE)]
    if not results["complete"]:
        blocks.append(
            Banner(
                f"Incomplete run ({results['stopped']}): only the tests that finished are shown."
            )
        )
    if any(claim["verdicts"] for claim in results["claims"]):
        blocks += [Heading(2, "Verdicts"), Table(*verdicts_table(results))]
    blocks += [Heading(2, "Summary"), Table(*summary_table(results))]
    if comparison is not None:
        blocks += comparison_blocks(comparison)
    for claim in results["claims"]:
        blocks += claim_blocks(claim)
    return blocks


def verdicts_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per deciding test: its verdict, and how often the claim's other tests held."""
    verdicts = [(claim["claim"], row) for claim in results["claims"] for row in claim["verdicts"]]
    columns = sorted({name for _, row in verdicts for name in row["group"]})
    headers = ["claim", *columns, "verdict", "held", "95% CI", "check"]
    rows = [
        [
            claim,
            *(display(row["group"].get(name)) for name in columns),
            row["verdict"],
            _pass_rate(row),
            _interval(row["pass_rate_ci95"]),
            row["outcome"] if not row["message"] else f"{row['outcome']}: {row['message']}",
        ]
        for claim, row in verdicts
    ]
    return headers, rows


def summary_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per claim and group: verdict, pass rate, its 95% Wilson interval, outcomes."""
    summaries = [
        (claim["claim"], group) for claim in results["claims"] for group in claim["summary"]
    ]
    columns = sorted({name for _, group in summaries for name in group["group"]})
    headers = ["claim", "test", *columns, "verdict", "pass rate", "95% CI", "outcomes"]
    rows = [
        [
            claim,
            group["test"],
            *(display(group["group"].get(name)) for name in columns),
            group["verdict"],
            _pass_rate(group),
            _interval(group["pass_rate_ci95"]),
            ", ".join(f"{count} {outcome}" for outcome, count in group["outcomes"].items()),
        ]
        for claim, group in summaries
    ]
    return headers, rows


def claim_blocks(claim: dict[str, Any]) -> list[Block]:
    """A claim's section: statement, statistics across seeds, tests, their tables and figures."""
    title = "Tests without a claim" if claim["claim"] == UNCLAIMED else f"Claim: {claim['claim']}"
    blocks: list[Block] = [Heading(2, title)]
    if claim["statement"]:
        blocks.append(Quote(claim["statement"]))
    statistics = statistics_table(claim["summary"])
    if statistics.rows:
        blocks += [Heading(3, "Statistics across seeds"), statistics]
    blocks += [Heading(3, "Tests"), per_test_table(claim["tests"])]
    attachments = [block for test in claim["tests"] for block in attachments_of(test)]
    if attachments:
        blocks += [Heading(3, "Tables and figures"), *attachments]
    return blocks


def statistics_table(summary: list[dict[str, Any]]) -> Table:
    """Per group and numeric value: how many tests recorded it, median, 2.5% and 97.5%."""
    rows = [
        [group["test"], cell_text(group["group"]), name, str(spread["n"]),
         *(display(spread[key]) for key in ("median", "low", "high"))]
        for group in summary
        for name, spread in group["statistics"].items()
    ]  # fmt: skip
    return Table(["test", "group", "value", "n", "median", "2.5%", "97.5%"], rows)


def per_test_table(tests: list[dict[str, Any]]) -> Table:
    params, values = param_names(tests), value_names(tests)
    headers = ["test", *params, "outcome", "verdict", *values, "message"]
    rows = [
        [
            function_of(test["nodeid"]),
            *(display(test["params"].get(name)) for name in params),
            test["outcome"],
            test["verdict"],
            *(display(test["values"].get(name)) for name in values),
            test["message"],
        ]
        for test in tests
    ]
    return Table(headers, rows)


def attachments_of(test: dict[str, Any]) -> list[Block]:
    """A test's recorded tables (each under a heading) and figures."""
    test_id = test["nodeid"].split("::", 1)[-1]
    blocks: list[Block] = []
    for table in test["tables"]:
        blocks += [
            Heading(4, f"{test_id}: {table['name']}"),
            Table(table["columns"], [[cell_text(value) for value in row] for row in table["rows"]]),
        ]
    blocks += [Figure(f"{test_id}: {figure['name']}", figure["path"]) for figure in test["figures"]]
    return blocks


def comparison_blocks(comparison: dict[str, Any]) -> list[Block]:
    """The changes since an earlier report: one table per kind of change that occurred."""
    blocks: list[Block] = [
        Heading(2, f"Changes since {comparison['against']}"),
        Paragraph(change_counts(comparison)),
    ]
    for key, title in (
        ("verdicts", "Group verdicts and pass rates"),
        ("outcomes", "Test outcomes and verdicts"),
        ("values", "Values"),
        ("added", "Tests added"),
        ("removed", "Tests removed"),
    ):
        entries = comparison[key]
        if entries:
            headers = [name.replace("_", " ") for name in entries[0]]
            blocks += [
                Heading(3, title),
                Table(
                    headers, [[cell_text(value) for value in entry.values()] for entry in entries]
                ),
            ]
    return blocks


def _pass_rate(group: dict[str, Any]) -> str:
    if not group["decided"]:
        return "no decided test"
    return f"{group['supported']}/{group['decided']} = {display(group['pass_rate'])}"


def _interval(bounds: list[float] | None) -> str:
    return "" if bounds is None else f"[{display(bounds[0])}, {display(bounds[1])}]"


def cell_text(value: Any) -> str:
    """A table cell; a dict of parameters as `name=value, ...`."""
    if isinstance(value, dict):
        return ", ".join(f"{name}={display(item)}" for name, item in value.items())
    return display(value)


def _csv_cell(value: Any) -> str:
    return "" if value is None else str(value)
