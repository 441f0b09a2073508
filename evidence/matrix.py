"""The verdict matrix: a row per claim, a column per reading and group, a verdict in each cell.

(A group of several parameters is a column per value of its first, and a row per claim and
values of the others: `Decision.row`.)

The cells are the deciding tests' verdicts (`results`): the test of `selectivity/controlled`
with the parameters {"preset": "tiny-mha"} fills the row `selectivity`, column (`controlled`,
{"preset": "tiny-mha"}). Rows follow the described order of the claims, columns the described
order of the readings, then of the groups' values (`descriptions`); the rest sorts after them.
The summary above the matrix says, per reading, how many claims it supports.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mechclaims.evidence.descriptions import (
    claim_rank,
    group_rank,
    reading_entry,
    reading_name,
    reading_rank,
    split_claim_id,
)
from mechclaims.evidence.values import display

VERDICT_ORDER = ("supported", "inconclusive", "refuted", "error")


@dataclass(frozen=True)
class Decision:
    """One cell: a claim's reading for one group, and its entry in the results' `verdicts`."""

    claim: str
    reading: str
    group: dict[str, Any]
    entry: dict[str, Any]

    @property
    def row(self) -> Row:
        """The matrix row: the claim, and the group's parameters past its first. A group of
        several parameters (e.g. preset and statistic) is a column per value of its first and a
        row per claim and values of the others, not a column per combination."""
        return self.claim, tuple(list(self.group.items())[1:])

    @property
    def column_group(self) -> dict[str, Any]:
        return dict(list(self.group.items())[:1])

    @property
    def column(self) -> tuple[str, str]:
        return column_key(self.reading, self.column_group)


Row = tuple[str, tuple]  # (claim, ((parameter, value), ...))


def row_label(row: Row, name: str) -> str:
    """`name · value, value`: a row's claim (as `name`) and its own group values."""
    values = ", ".join(display(value) for _, value in row[1])
    return f"{name} · {values}" if values else name


def column_key(reading: str, group: dict[str, Any]) -> tuple[str, str]:
    return reading, json.dumps(group, sort_keys=True)


def decisions_of(results: dict[str, Any]) -> list[Decision]:
    return [
        Decision(*split_claim_id(claim["claim"]), entry["group"], entry)
        for claim in results["claims"]
        for entry in claim["verdicts"]
    ]


def matrix_rows(decisions: Iterable[Decision], descriptions: dict[str, Any]) -> list[Row]:
    """The rows (Decision.row): claims in the described order, then their groups' values."""
    return sorted(
        {d.row for d in decisions},
        key=lambda row: (claim_rank(descriptions, row[0]), group_rank(descriptions, dict(row[1]))),
    )


def matrix_columns(
    decisions: Iterable[Decision], descriptions: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """(reading, group) pairs: readings in the described order, then groups in theirs."""
    columns = {d.column: (d.reading, d.column_group) for d in decisions}
    return sorted(
        columns.values(),
        key=lambda column: (
            reading_rank(descriptions, column[0]),
            group_rank(descriptions, column[1]),
        ),
    )


def cells_by_position(decisions: Iterable[Decision]) -> dict[tuple[Row, tuple[str, str]], Decision]:
    """Each decision by (row, column key)."""
    return {(d.row, d.column): d for d in decisions}


def group_text(group: dict[str, Any]) -> str:
    """`preset tiny-mha, width 2`: a group's parameters as a reader says them."""
    return ", ".join(f"{name} {display(value)}" for name, value in group.items())


def column_spans(
    columns: list[tuple[str, dict[str, Any]]], descriptions: dict[str, Any]
) -> list[tuple[str, int]]:
    """(reading name, number of its columns) for each reading, in the columns' order."""
    return [
        (reading_name(descriptions, reading), len(list(same)))
        for reading, same in itertools.groupby(column[0] for column in columns)
    ]


def held(entry: dict[str, Any]) -> str:
    """`k/n`: on how many seeds the claim held (as the deciding test recorded it), else how many
    of the group's other tests supported it; '' if neither is known."""
    if "holds_on" in entry and "seeds_tested" in entry:
        return f"{entry['holds_on']}/{entry['seeds_tested']}"
    if entry.get("decided"):
        return f"{entry['supported']}/{entry['decided']}"
    return ""


def summary_sentences(decisions: list[Decision], descriptions: dict[str, Any]) -> list[str]:
    """One quotable sentence per reading: how many claims it supports (its `positive` verdict,
    "supported" unless the descriptions name another), on how many groups."""
    readings = dict.fromkeys(reading for reading, _ in matrix_columns(decisions, descriptions))
    return [
        reading_sentence(reading, [d for d in decisions if d.reading == reading], descriptions)
        for reading in readings
    ]


def reading_sentence(reading: str, cells: list[Decision], descriptions: dict[str, Any]) -> str:
    """E.g. `4 of the 6 claims reproduce as the seed measured them on at least one of the 3
    presets (1 on all 3): 9 supported, 2 inconclusive, 7 refuted of 18 seed protocol verdicts.`
    Counted by the matrix's rows and columns: `2 of the 4 statistics emerge ... of the 3
    presets` where a row is a claim's statistic."""
    verdicts: dict[Row, set[str]] = {}
    for cell in cells:
        verdicts.setdefault(cell.row, set()).add(cell.entry["verdict"])
    positive = reading_entry(descriptions, reading).get("positive", "supported")
    some = sum(positive in found for found in verdicts.values())
    every = sum(found == {positive} for found in verdicts.values())
    name = reading_name(descriptions, reading)
    supported = reading_entry(descriptions, reading).get("supported") or (
        f"are supported by the {name} reading" if name else "are supported"
    )
    rows = [dict(row[1]) for row in verdicts]
    row_noun = group_noun(rows) if any(rows) else "claim"
    subject = f"{some or 'None'} of the {plural(len(verdicts), row_noun)} {supported}"
    counted = " ".join(part for part in (str(len(cells)), name) if part)
    noun = "verdict" if len(cells) == 1 else "verdicts"
    return f"{subject}{where_supported(cells, some, every)}: {tally(cells)} of {counted} {noun}."


def where_supported(cells: list[Decision], some: int, every: int) -> str:
    """` on at least one of the 3 presets (1 on all 3)`; '' when there is one group."""
    groups = len({json.dumps(cell.column_group, sort_keys=True) for cell in cells})
    noun = group_noun(cell.column_group for cell in cells)
    if groups == 1:
        return ""
    if not some:
        return f" on any of the {groups} {noun}s"
    return f" on at least one of the {groups} {noun}s ({every} on all {groups})"


def finding(entry: dict[str, Any]) -> str:
    """The verdict in its reading's own words (emerges, fades, ...), else the verdict."""
    return entry.get("finding", entry["verdict"])


def tally(cells: list[Decision]) -> str:
    """`9 supported, 2 inconclusive, 7 refuted` (`2 emerges, 1 fades` in a reading's own words):
    how many cells have each, in the order of their verdicts."""
    counts = Counter(finding(cell.entry) for cell in cells)
    rank = {finding(cell.entry): verdict_rank(cell.entry["verdict"]) for cell in cells}
    ordered = sorted(counts, key=lambda word: (rank[word], word))
    return ", ".join(f"{counts[word]} {word}" for word in ordered)


def verdict_rank(verdict: str) -> int:
    """Where a verdict comes in VERDICT_ORDER; others (e.g. a checkpoint's) after, by name."""
    return VERDICT_ORDER.index(verdict) if verdict in VERDICT_ORDER else len(VERDICT_ORDER)


def group_noun(groups: Iterable[dict[str, Any]]) -> str:
    """What a group is called: its one parameter's name if they share it (`preset`), else group."""
    shapes = {tuple(group) for group in groups}
    if len(shapes) == 1:
        (names,) = shapes
        if len(names) == 1:
            return names[0]
    return "group"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
