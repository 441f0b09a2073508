"""A report page as a list of blocks, each rendered to Markdown and to self-contained HTML.

index.md and index.html are two renderings of the same blocks, so they cannot drift apart.
In HTML, figures are embedded as base64 data URIs: the page needs no other file and no network.
"""

from __future__ import annotations

import base64
import html
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
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]

    def markdown(self) -> str:
        return tabulate(
            [[_markdown_cell(cell) for cell in row] for row in self.rows],
            headers=[_markdown_cell(header) for header in self.headers],
            tablefmt="github",
            disable_numparse=True,
        )

    def html(self, directory: Path) -> str:  # tabulate's "html" format escapes the cells
        return tabulate(self.rows, headers=self.headers, tablefmt="html", disable_numparse=True)


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


Block = Heading | Paragraph | Quote | Banner | Table | Figure

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 80rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.4; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
blockquote { border-left: 4px solid #ccc; margin: 0.5rem 0; padding: 0.2rem 1rem; color: #444; }
.banner { background: #fdecea; border: 2px solid #c62828; padding: 0.6rem 1rem; font-weight: bold; }
figure { margin: 1rem 0; } img { max-width: 100%; }
figcaption { font-size: 0.9rem; color: #444; }
"""


def to_markdown(blocks: Sequence[Block]) -> str:
    return "\n\n".join(block.markdown() for block in blocks) + "\n"


def to_html(blocks: Sequence[Block], title: str, directory: Path) -> str:
    """One self-contained page; `directory` is where the figures' paths are relative to."""
    body = "\n".join(block.html(directory) for block in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _markdown_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", r"\|")
