"""A report page as a list of blocks, each rendered to Markdown and to self-contained HTML.

index.md and index.html are two renderings of the same blocks, so they cannot drift apart.
In HTML, figures are embedded as base64 data URIs: the page needs no other file and no network.
"""

from __future__ import annotations

import base64
import html
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate


@dataclass(frozen=True)
class Heading:
    level: int
    text: str

    def markdown(self) -> str:
        return f"{'#' * self.level} {self.text}"

    def html(self, directory: Path) -> str:
        return f"<h{self.level}>{html.escape(self.text)}</h{self.level}>"


@dataclass(frozen=True)
class Paragraph:
    text: str

    def markdown(self) -> str:
        return self.text

    def html(self, directory: Path) -> str:
        return f"<p>{html.escape(self.text)}</p>"


@dataclass(frozen=True)
class Quote:
    text: str

    def markdown(self) -> str:
        return "\n".join(f"> {line}" for line in self.text.splitlines())

    def html(self, directory: Path) -> str:
        return f"<blockquote>{html.escape(self.text)}</blockquote>"


@dataclass(frozen=True)
class Banner:
    """A warning that must not be missed, e.g. that the run is incomplete."""

    text: str

    def markdown(self) -> str:
        return f"> **⚠ {self.text}**"

    def html(self, directory: Path) -> str:
        return f'<div class="banner">⚠ {html.escape(self.text)}</div>'


@dataclass(frozen=True)
class Cell:
    """A table cell richer than a string: a bold `head`, then `text`; a `sub` line below; a
    `note` (e.g. why), and a `tone` that colours it (one of TONES).

    In Markdown the lines follow each other (`<br>`), the tone a coloured mark before the head;
    in HTML the tone is the cell's class, the note its tooltip and a line that expands.
    """

    head: str
    text: str = ""
    sub: str = ""
    note: str = ""
    tone: str = ""
    note_label: str = "why"

    def markdown(self) -> str:
        head = f"**{self.head}**" if self.head else ""
        first = " ".join(part for part in (tone_mark(self.tone), head, self.text) if part)
        return "<br>".join(line for line in (first, self.sub, self.note) if line)

    def html(self) -> str:
        head = f"<strong>{html.escape(self.head)}</strong> " if self.head else ""
        parts = [f"{head}{html.escape(self.text)}".strip()]
        if self.sub:
            parts.append(f'<div class="sub">{html.escape(self.sub)}</div>')
        if self.note:
            parts.append(
                f"<details><summary>{html.escape(self.note_label)}</summary>"
                f"{html.escape(self.note)}</details>"
            )
        tone = f' class="tone-{tone_class(self.tone)}"' if self.tone else ""
        title = f' title="{html.escape(self.note)}"' if self.note else ""
        return f"<td{tone}{title}>{''.join(parts)}</td>"


@dataclass(frozen=True)
class Table:
    """Rows of cells under headers. `spans` groups the columns under a label each, as
    (label, number of columns): a header row of its own in HTML; in Markdown, which has one
    header row, each header starts with its group's label (`controlled · tiny-mha`)."""

    headers: Sequence[str]
    rows: Sequence[Sequence[str | Cell]]
    anchor: str = ""  # the table's id in HTML
    spans: Sequence[tuple[str, int]] = ()

    def flat_headers(self) -> list[str]:
        """The headers, each after its group's label: one header row, as Markdown has."""
        labels = [label for label, width in self.spans for _ in range(width)]
        return [
            " · ".join(part for part in parts if part)
            for parts in itertools.zip_longest(labels, self.headers, fillvalue="")
        ]

    def markdown(self) -> str:
        return tabulate(
            [[_markdown_cell(cell) for cell in row] for row in self.rows],
            headers=[_markdown_cell(header) for header in self.flat_headers()],
            tablefmt="github",
            disable_numparse=True,
        )

    def html(self, directory: Path) -> str:
        anchor = f' id="{html.escape(self.anchor)}"' if self.anchor else ""
        spans = "".join(
            f'<th colspan="{width}">{html.escape(label)}</th>' for label, width in self.spans
        )
        head = "".join(f"<th>{html.escape(header)}</th>" for header in self.headers)
        body = "\n".join(
            "<tr>" + "".join(_html_cell(cell) for cell in row) + "</tr>" for row in self.rows
        )
        return (
            f"<table{anchor}>\n<thead>{f'<tr>{spans}</tr>' if spans else ''}<tr>{head}</tr>"
            f"</thead>\n<tbody>\n{body}\n</tbody>\n</table>"
        )


@dataclass(frozen=True)
class Legend:
    """What each tone means: a line of coloured marks (Markdown) or swatches (HTML)."""

    tones: Sequence[tuple[str, str]]  # (tone, what it means)

    def markdown(self) -> str:
        return " · ".join(f"{TONES[tone]} {meaning}" for tone, meaning in self.tones)

    def html(self, directory: Path) -> str:
        items = "".join(
            f'<span class="swatch tone-{tone}">{html.escape(meaning)}</span>'
            for tone, meaning in self.tones
        )
        return f'<p class="legend">{items}</p>'


@dataclass(frozen=True)
class Details:
    """Blocks a reader opens on demand: collapsed in HTML; in Markdown only `pointer`, a line
    that says where the same content is (e.g. a link to a data file)."""

    summary: str
    blocks: Sequence[Block]
    pointer: str = ""

    def markdown(self) -> str:
        return self.pointer

    def html(self, directory: Path) -> str:
        inner = "\n".join(block.html(directory) for block in self.blocks)
        return f"<details>\n<summary>{html.escape(self.summary)}</summary>\n{inner}\n</details>"


@dataclass(frozen=True)
class Figure:
    title: str
    path: str  # relative to the report's directory

    def markdown(self) -> str:
        title = self.title.replace("[", r"\[").replace("]", r"\]")
        return f"![{title}]({self.path})"

    def html(self, directory: Path) -> str:
        caption = html.escape(self.title)
        file = directory / self.path
        if not file.is_file():
            return f"<p>figure {caption} is missing: {html.escape(self.path)}</p>"
        data = base64.b64encode(file.read_bytes()).decode("ascii")
        return (
            f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )


Block = Heading | Paragraph | Quote | Banner | Table | Legend | Details | Figure

# A cell's tone: its mark in Markdown; its colour is in STYLE. A project's own verdict words
# (e.g. "unlike-random") share the tone "other".
TONES = {
    "supported": "🟢", "refuted": "🔴", "inconclusive": "🟡", "error": "⚫", "mixed": "🟠",
    "other": "🔵",
}  # fmt: skip


def tone_class(tone: str) -> str:
    return tone if tone in TONES else "other"


def tone_mark(tone: str) -> str:
    return TONES[tone_class(tone)] if tone else ""


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 90rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.4; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td .sub { font-size: 0.85rem; color: #444; }
#verdicts td:first-child { min-width: 15rem; }  /* the claim keeps its width */
td details { font-size: 0.85rem; color: #333; } td summary { cursor: pointer; color: #555; }
.tone-supported { background: #d4edda; } .tone-refuted { background: #f8d7da; }
.tone-inconclusive { background: #fff3cd; } .tone-error { background: #d6d8db; }
.tone-mixed { background: #ffe5cc; } .tone-other { background: #d6e9f8; }
.legend .swatch { display: inline-block; padding: 0.1rem 0.6rem; margin-right: 0.4rem;
                  border: 1px solid #ccc; font-size: 0.85rem; }
blockquote { border-left: 4px solid #ccc; margin: 0.5rem 0; padding: 0.2rem 1rem; color: #444; }
.banner { background: #fdecea; border: 2px solid #c62828; padding: 0.6rem 1rem; font-weight: bold; }
figure { margin: 1rem 0; } img { max-width: 100%; }
figcaption { font-size: 0.9rem; color: #444; }
body > details { margin: 0.5rem 0 1rem; } body > details > summary { cursor: pointer; }
"""


def to_markdown(blocks: Sequence[Block]) -> str:
    return "\n\n".join(text for block in blocks if (text := block.markdown())) + "\n"


def to_html(blocks: Sequence[Block], title: str, directory: Path) -> str:
    """One self-contained page; `directory` is where the figures' paths are relative to."""
    body = "\n".join(block.html(directory) for block in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _markdown_cell(cell: str | Cell) -> str:
    text = cell.markdown() if isinstance(cell, Cell) else cell
    return " ".join(str(text).split()).replace("|", r"\|")


def _html_cell(cell: str | Cell) -> str:
    return cell.html() if isinstance(cell, Cell) else f"<td>{html.escape(str(cell))}</td>"
