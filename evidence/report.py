"""One run's report folder, rendered from the results (see `results`).

    index.md      the answer first: a summary a reader can quote and the verdict matrix
                  (`matrix`); then the changes since an earlier report, if compared; then a
                  section per claim: its statement, per reading what it measures, the verdict
                  per group with its why, the deciding figures, the thresholds with reasons.
                  Per-seed values and statistics are linked (claims.csv, results.json), not shown
    index.html    the same page, self-contained (figures embedded), the verdicts coloured, and
                  the per-seed values and statistics in collapsed <details>
    summary.md    the first screen alone: summary, matrix, changed verdicts (e.g. for CI)
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
import dataclasses
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mechclaims.evidence.compare import change_counts
from mechclaims.evidence.descriptions import (
    claim_entry,
    claim_rank,
    claim_title,
    expected_verdict,
    group_rank,
    reading_name,
    reading_rank,
    split_claim_id,
)
from mechclaims.evidence.document import (
    Banner,
    Block,
    Cell,
    Details,
    Figure,
    Heading,
    Legend,
    Paragraph,
    Quote,
    Table,
    to_html,
    to_markdown,
)
from mechclaims.evidence.files import remove_if_present, remove_unlisted_files, write_text_atomic
from mechclaims.evidence.matrix import (
    Decision,
    Row,
    cells_by_position,
    column_key,
    column_spans,
    decisions_of,
    group_text,
    held,
    matrix_columns,
    matrix_rows,
    row_label,
    summary_sentences,
)
from mechclaims.evidence.recorder import FIGURES_DIR
from mechclaims.evidence.results import (
    UNCLAIMED,
    function_of,
    group_params,
    param_names,
    value_names,
)
from mechclaims.evidence.values import display

TITLE = "Evidence report"
MATRIX_ID = "verdicts"
LEGEND = (
    ("supported", "supported"),
    ("refuted", "refuted"),
    ("inconclusive", "inconclusive"),
    ("error", "error: no evidence either way"),
)
MATRIX_KEY = "Each cell: the verdict of the claim's reading for that group, on how many seeds " \
    "it held (k/n), how it stands to the registry if not as recorded, and why."  # fmt: skip
DATA_POINTER = "Per-seed values and test statistics: [claims.csv](claims.csv) (a row per test), " \
    "[results.json](results.json) (everything, nested by claim), and in index.html."  # fmt: skip


def write_report(
    directory: Path, results: dict[str, Any], comparison: dict[str, Any] | None, run: dict[str, Any]
) -> None:
    """Write every file of the report into `directory`, results.json first."""
    write_text_atomic(directory / "results.json", json_text(results))
    remove_unlisted_files(directory / FIGURES_DIR, referenced_figures(results))
    write_text_atomic(directory / "claims.csv", claims_csv(results))
    first_screen = first_screen_blocks(results, comparison)
    blocks = first_screen + claim_blocks(results)
    write_text_atomic(directory / "summary.md", to_markdown(first_screen))
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


# ------------------------------------------------------------------ the first screen: the answer


def first_screen_blocks(results: dict[str, Any], comparison: dict[str, Any] | None) -> list[Block]:
    """Title, a banner if incomplete, the summary and verdict matrix, the changed verdicts."""
    blocks: list[Block] = [Heading(1, TITLE)]
    if not results["complete"]:
        blocks.append(
            Banner(
                f"Incomplete run ({results['stopped']}): only the tests that finished are shown."
            )
        )
    decisions = decisions_of(results)
    descriptions = results["descriptions"]
    if decisions:
        blocks += [
            Paragraph(" ".join(summary_sentences(decisions, descriptions))),
            Legend(LEGEND),
            verdict_matrix(decisions, results),
            Paragraph(MATRIX_KEY),
        ]
    else:  # no test decides: the pass rate of every group of tests is the answer
        blocks.append(Table(*summary_table(results["claims"]), anchor=MATRIX_ID))
    if comparison is not None:
        blocks += comparison_blocks(comparison, decisions, descriptions)
    return blocks


def verdict_matrix(decisions: list[Decision], results: dict[str, Any]) -> Table:
    """A row per claim (its title and statement), a column per reading and group."""
    descriptions = results["descriptions"]

    def label(row: Row) -> Cell:
        statement = claim_statement(row[0], results)
        title = row_label(row, claim_title(descriptions, row[0]))
        return Cell(title, sub=statement and f"“{statement}”")

    table = matrix_table(
        matrix_rows(decisions, descriptions),
        matrix_columns(decisions, descriptions),
        cells_by_position(decisions),
        label,
        lambda decision: verdict_cell(decision, descriptions),
        descriptions,
    )
    return dataclasses.replace(table, anchor=MATRIX_ID)


def matrix_table(
    row_keys: list[Row],
    columns: list[tuple[str, dict[str, Any]]],
    cells: dict[tuple[Row, tuple[str, str]], Decision],
    label: Callable[[Row], str | Cell],
    render: Callable[[Decision], str | Cell],
    descriptions: dict[str, Any],
) -> Table:
    """A row per claim (`label`; see Decision.row), a column per (reading, group) under its
    reading; in each cell its decision `render`ed, or a dash where there is none."""
    rows = [
        [label(row), *(
            render(cells[position]) if position in cells else "—"
            for position in ((row, column_key(*column)) for column in columns)
        )]
        for row in row_keys
    ]  # fmt: skip
    headers = [", ".join(display(value) for value in group.values()) for _, group in columns]
    spans = [("", 1), *column_spans(columns, descriptions)]
    return Table(["claim", *(header or "verdict" for header in headers)], rows, spans=spans)


def verdict_cell(decision: Decision, descriptions: dict[str, Any]) -> Cell:
    """The verdict, on how many seeds it held (else the decision's summary), how it stands to
    the registry, and why."""
    entry = decision.entry
    return Cell(
        entry["verdict"],
        text=held(entry) or entry.get("summary", ""),
        sub=check_note(entry),
        note=why(decision, descriptions),
        tone=entry["verdict"],
    )


def why(decision: Decision, descriptions: dict[str, Any]) -> str:
    """The verdict's reason as the test recorded it, else as the descriptions expect it."""
    expected = expected_verdict(descriptions, decision.claim, decision.reading, decision.group)
    return decision.entry.get("why") or expected.get("why", "")


def check_note(entry: dict[str, Any]) -> str:
    """How the verdict stands to the registry's, if it is not simply the same; else, for a
    deciding test that failed, why it failed."""
    check = entry.get("registry_check")
    expected = entry.get("registry_verdict")
    if check == "consistent":
        return f"consistent, not decided on {entry.get('seeds_tested', '?')} seeds"
    if check == "contradicted":
        return f"contradicts the registry: {expected}"
    if check == "missing" or expected == "missing":
        return "not in the registry"
    if check is None and expected not in (None, entry["verdict"]):
        return f"the registry says {expected}"
    if entry["outcome"] in ("failed", "error"):
        return f"test {entry['outcome']}: {entry['message']}"
    return ""


def claim_statement(claim: str, results: dict[str, Any]) -> str:
    """The claim as described (e.g. as it was first made), else as its tests state it."""
    described = claim_entry(results["descriptions"], claim).get("statement")
    stated = [part["statement"] for part in claim_parts(claim, results) if part["statement"]]
    return described or (stated[0] if stated else "")


def claim_parts(claim: str, results: dict[str, Any]) -> list[dict[str, Any]]:
    """The results of the claim's readings, in the described order."""
    parts = [part for part in results["claims"] if split_claim_id(part["claim"])[0] == claim]
    return sorted(
        parts,
        key=lambda part: reading_rank(results["descriptions"], split_claim_id(part["claim"])[1]),
    )


def comparison_blocks(
    comparison: dict[str, Any], decisions: list[Decision], descriptions: dict[str, Any]
) -> list[Block]:
    """The changes since an earlier report: the changed verdicts as a matrix, then the counts;
    the other changes in collapsed tables (in Markdown: a pointer to compare.json)."""
    blocks: list[Block] = [Heading(2, f"Changes since {comparison['against']}")]
    changed = [
        Decision(*split_claim_id(change["claim"]), change["group"], change)
        for change in comparison["decisions"]
    ]
    if changed:
        blocks.append(changes_matrix(changed, decisions, descriptions))
    else:
        blocks.append(Paragraph("No verdict changed."))
    blocks.append(Paragraph(f"{change_counts(comparison)}."))
    details = [
        block
        for key, title in (
            ("verdicts", "Group verdicts and pass rates"),
            ("outcomes", "Test outcomes and verdicts"),
            ("values", "Values"),
            ("added", "Tests added"),
            ("removed", "Tests removed"),
        )
        if comparison[key]
        for block in (Heading(3, title), _entries_table(comparison[key]))
    ]
    if details:
        blocks.append(
            Details("Every other change", details, "Every change: [compare.json](compare.json).")
        )
    return blocks


def changes_matrix(
    changed: list[Decision], decisions: list[Decision], descriptions: dict[str, Any]
) -> Table:
    """The matrix's rows with a changed verdict: `before → now` where it changed, the verdict
    (uncoloured) where it did not."""

    def render(decision: Decision) -> str | Cell:
        entry = decision.entry
        if "verdict_now" not in entry:
            return entry["verdict"]
        before, now = entry["verdict_before"] or "none", entry["verdict_now"] or "none"
        return Cell(f"{before} → {now}", tone=entry["verdict_now"] or "")

    return matrix_table(
        matrix_rows(changed, descriptions),
        matrix_columns([*decisions, *changed], descriptions),
        {**cells_by_position(decisions), **cells_by_position(changed)},
        lambda row: row_label(row, claim_title(descriptions, row[0])),
        render,
        descriptions,
    )


def summary_table(claims: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """One row per claim and group: verdict, pass rate, its 95% Wilson interval, outcomes."""
    summaries = [(claim["claim"], group) for claim in claims for group in claim["summary"]]
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


def terminal_matrix(results: dict[str, Any]) -> Table:
    """The verdict matrix in short cells (`refuted 0/20`), else the groups' summary table."""
    decisions = decisions_of(results)
    if not decisions:
        return Table(*summary_table(results["claims"]))
    descriptions = results["descriptions"]
    return matrix_table(
        matrix_rows(decisions, descriptions),
        matrix_columns(decisions, descriptions),
        cells_by_position(decisions),
        lambda row: row_label(row, row[0]),
        lambda decision: " ".join(filter(None, (decision.entry["verdict"], held(decision.entry)))),
        descriptions,
    )


# ------------------------------------------------------------------------ a section per claim


def claim_blocks(results: dict[str, Any]) -> list[Block]:
    """A section per claim in the described order; tests without a claim last."""
    descriptions = results["descriptions"]
    claims = dict.fromkeys(split_claim_id(part["claim"])[0] for part in results["claims"])
    ordered = sorted(claims, key=lambda c: (c == UNCLAIMED, claim_rank(descriptions, c)))
    return [block for claim in ordered for block in claim_section(claim, results)]


def claim_section(claim: str, results: dict[str, Any]) -> list[Block]:
    """Statement; per reading what it measures, its verdicts and deciding figures; thresholds;
    the per-seed detail collapsed (HTML) or pointed to (Markdown)."""
    descriptions = results["descriptions"]
    described = claim_entry(descriptions, claim)
    title = "Tests without a claim" if claim == UNCLAIMED else claim_title(descriptions, claim)
    parts = claim_parts(claim, results)
    quoted = claim_statement(claim, results)
    stated = next((part["statement"] for part in parts if part["statement"]), "")
    blocks: list[Block] = [Heading(2, title)]
    if quoted:
        blocks.append(Quote(quoted))
    if stated not in ("", quoted):
        blocks.append(Paragraph(f"Tested as: {stated}"))
    for part in parts:
        blocks += reading_blocks(claim, part, (quoted, stated), results)
    if described.get("thresholds"):
        blocks += [Heading(3, "Thresholds"), thresholds_table(described["thresholds"])]
    details = [block for part in parts for block in detail_blocks(part, descriptions)]
    blocks.append(Details(f"{title}: per-seed values and test statistics", details, DATA_POINTER))
    return blocks


def reading_blocks(
    claim: str, part: dict[str, Any], shown: tuple[str, ...], results: dict[str, Any]
) -> list[Block]:
    """One reading of a claim: what it measures (and its statement, if not `shown` already), its
    verdict per group, its deciding figures."""
    descriptions = results["descriptions"]
    reading = split_claim_id(part["claim"])[1]
    name = reading_name(descriptions, reading)
    blocks: list[Block] = [Heading(3, name[:1].upper() + name[1:])] if reading else []
    described = claim_entry(descriptions, claim).get("readings", {}).get(reading)
    if described:
        blocks.append(Paragraph(" ".join(described.split())))
    if part["statement"] and part["statement"] not in shown:
        blocks.append(Paragraph(f"Tested as: {part['statement']}"))
    decisions = [Decision(claim, reading, entry["group"], entry) for entry in part["verdicts"]]
    if decisions:
        blocks.append(reading_verdicts_table(decisions, descriptions))
    return blocks + [
        figure_block(test, figure)
        for test in figure_tests(part, descriptions, deciding=True)
        for figure in test["figures"]
    ]


def reading_verdicts_table(decisions: list[Decision], descriptions: dict[str, Any]) -> Table:
    """Per group: the verdict (and how it stands to the registry), held k/n with the interval of
    that rate and the rate required, the decision's summary if any, why."""
    decisions = sorted(decisions, key=lambda d: group_rank(descriptions, d.group))
    params = sorted({name for d in decisions for name in d.group})
    summaries = any("summary" in d.entry for d in decisions)
    headers = [*params, "verdict", "held", "95% CI", *(["decision"] * summaries), "why"]
    rows = [
        [
            *(display(d.group.get(name)) for name in params),
            Cell(d.entry["verdict"], sub=check_note(d.entry), tone=d.entry["verdict"]),
            held(d.entry),
            _rate_interval(d.entry),
            *([d.entry.get("summary", "")] * summaries),
            why(d, descriptions),
        ]
        for d in decisions
    ]
    return Table(headers, rows)


def figure_tests(part: dict[str, Any], descriptions: dict[str, Any], deciding: bool) -> list:
    """The tests whose figures show the reading (its deciding tests, or every test of a reading
    no test decides), or, with deciding=False, the others; in the groups' order."""
    decides = any(test["decides"] for test in part["tests"])
    chosen = [
        test
        for test in part["tests"]
        if test["figures"] and (test["decides"] or not decides) == deciding
    ]
    return sorted(chosen, key=lambda test: group_rank(descriptions, group_params(test)))


def figure_block(test: dict[str, Any], figure: dict[str, str]) -> Block:
    caption = ": ".join(part for part in (group_text(test["params"]), figure["name"]) if part)
    if "error" in figure:
        return Paragraph(f"Figure {caption} was not saved: {figure['error']}")
    return Figure(caption, figure["path"])


def thresholds_table(thresholds: list[dict[str, Any]]) -> Table:
    rows = [
        [threshold["name"], display(threshold.get("value")), threshold.get("why", "")]
        for threshold in thresholds
    ]
    return Table(["threshold", "value", "why"], rows)


def detail_blocks(part: dict[str, Any], descriptions: dict[str, Any]) -> list[Block]:
    """A reading's per-group statistics, every test's values, recorded tables, other figures."""
    blocks: list[Block] = [
        Heading(4, f"{part['claim']}: pass rates by group"),
        Table(*summary_table([part])),
    ]
    statistics = statistics_table(part["summary"])
    if statistics.rows:
        blocks += [Heading(4, f"{part['claim']}: statistics across seeds"), statistics]
    blocks += [Heading(4, f"{part['claim']}: tests"), per_test_table(part["tests"])]
    for test in part["tests"]:
        for table in test["tables"]:
            rows = [[cell_text(value) for value in row] for row in table["rows"]]
            heading = Heading(4, f"{_test_id(test)}: {table['name']}")
            blocks += [heading, Table(table["columns"], rows)]
    blocks += [
        figure_block(test, figure)
        for test in figure_tests(part, descriptions, deciding=False)
        for figure in test["figures"]
    ]
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


def _entries_table(entries: list[dict[str, Any]]) -> Table:
    headers = [name.replace("_", " ") for name in entries[0]]
    return Table(headers, [[cell_text(value) for value in entry.values()] for entry in entries])


def _test_id(test: dict[str, Any]) -> str:
    return test["nodeid"].split("::", 1)[-1]


def _pass_rate(group: dict[str, Any]) -> str:
    if not group["decided"]:
        return "no decided test"
    return f"{group['supported']}/{group['decided']} = {display(group['pass_rate'])}"


def _interval(bounds: list[float] | None) -> str:
    return "" if bounds is None else f"[{display(bounds[0])}, {display(bounds[1])}]"


def _rate_interval(entry: dict[str, Any]) -> str:
    """The 95% interval of the rate the claim held at, and the rate it had to reach."""
    if "rate_low" in entry and "rate_high" in entry:
        interval = _interval([entry["rate_low"], entry["rate_high"]])
    else:
        interval = _interval(entry["pass_rate_ci95"])
    required = entry.get("required_rate")
    return interval if required is None else f"{interval}, required {display(required)}"


def cell_text(value: Any) -> str:
    """A table cell; a dict of parameters as `name=value, ...`."""
    if isinstance(value, dict):
        return ", ".join(f"{name}={display(item)}" for name, item in value.items())
    return display(value)


def _csv_cell(value: Any) -> str:
    return "" if value is None else str(value)
