"""The `evidence` fixture's object: what one test records for the report.

    evidence.record(statistic=0.81, threshold=0.5, p_value=0.002, layer=1)
    evidence.table("selectivity by token", dataframe_or_list_of_dict_rows)
    evidence.figure("attention pattern", fig)
    evidence.figure("effect by seed", effect_figure, results, thresholds)

Values become plain JSON (see `values`). A name is recorded once per test; the
parametrization's names (`preset`, `seed`, ...) and the report's own columns cannot be used.
`verdict`, if recorded, must be one of `VERDICTS` and overrides the verdict of the outcome.
A figure is a matplotlib Figure, or a function that draws one from plain data (its arguments,
after the function), which is called only if the figure cache has no PNG of the same title,
data and code (`figure_cache`): a rerun reuses the figures that did not change. A figure is
titled with the test's claim, reading and parameters and its own name (above any title it has),
so that it says what it shows wherever it goes; then it is saved at once as a PNG (fixed dpi, no
software stamp: the bytes depend only on the drawing) under `figures/` of the evidence
directory, and closed if pyplot manages it; a function's figure is drawn only to be saved. A
figure that cannot be saved (a full disk) is recorded with its error instead of failing the
test: the test's verdict still counts.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import sys
from collections.abc import Container
from pathlib import Path
from typing import Any

from mechclaims.evidence.figure_cache import FigureCache
from mechclaims.evidence.files import write_atomic
from mechclaims.evidence.outcomes import check_verdict
from mechclaims.evidence.values import to_jsonable

# The report's own columns; a recorded value may not take their names (`verdict` may be
# recorded: it fills the verdict column).
ROW_COLUMNS = ("claim", "nodeid", "test", "outcome", "verdict", "message")
FIGURES_DIR = "figures"
FIGURE_DPI = 100


class Evidence:
    """Named values, tables and figures of one test."""

    def __init__(
        self,
        nodeid: str,
        params: dict[str, Any],
        directory: Path | None,
        heading: str = "",
        figure_cache: FigureCache | None = None,
    ) -> None:
        """`directory` is the evidence directory figures are saved under (None saves nothing);
        `heading` is the start of every figure's title (its claim, reading and parameters);
        `figure_cache` keeps the figures functions draw (None: they are always drawn)."""
        self._nodeid = nodeid
        self._heading = heading
        self._reserved = (set(ROW_COLUMNS) - {"verdict"}) | set(params)
        self._directory = directory
        self._figure_cache = figure_cache or FigureCache(None)
        self.values: dict[str, Any] = {}
        self.tables: list[dict[str, Any]] = []
        self.figures: list[dict[str, str]] = []

    def record(self, **values: Any) -> None:
        """Record named values: numbers, strings, bools, None, lists, dicts or numpy arrays."""
        for name, value in values.items():
            self._check_new_name(name, "value", self.values)
            if name in self._reserved:
                raise ValueError(
                    f"value name {name!r} is taken by the report's columns or the test's "
                    f"parameters ({', '.join(sorted(self._reserved))}); choose another"
                )
            if name == "verdict":
                check_verdict(value)
            self.values[name] = to_jsonable(value, what=f"value {name!r}")

    def table(self, name: str, data: Any) -> None:
        """Record a table: a pandas DataFrame or a list of dict rows."""
        self._check_new_name(name, "table", {table["name"] for table in self.tables})
        self.tables.append({"name": name, **table_columns_and_rows(data, what=f"table {name!r}")})

    def figure(self, name: str, fig: Any, *data: Any, **keywords: Any) -> None:
        """Record a figure: a matplotlib Figure, or `fig(*data, **keywords)` (a function of plain
        data that returns one, drawn unless the figure cache has it); titled, saved as
        figures/<test and name>.png, closed."""
        self._check_new_name(name, "figure", {figure["name"] for figure in self.figures})
        title = ": ".join(part for part in (self._heading, name) if part)
        if hasattr(fig, "savefig"):
            if data or keywords:
                raise TypeError(f"figure {name!r}: a Figure takes no data (give a function that "
                                "draws it from the data)")  # fmt: skip
            png = functools.partial(rendered_png, fig, title)
        elif callable(fig):
            png = functools.partial(self._figure_cache.png, title, fig, data, keywords,
                                    rendered_png)  # fmt: skip
        else:
            raise TypeError(f"figure {name!r} must be a matplotlib Figure or a function that "
                            f"draws one, got {type(fig).__name__}")  # fmt: skip
        entry = {"name": name, "path": f"{FIGURES_DIR}/{figure_filename(self._nodeid, name)}"}
        if self._directory is not None:
            try:
                write_atomic(self._directory / entry["path"], png())
            except OSError as error:
                entry["error"] = f"{type(error).__name__}: {error}"
        if hasattr(fig, "savefig"):
            close_figure(fig)
        self.figures.append(entry)

    def payload(self) -> dict[str, Any]:
        """What travels on the test report: plain JSON."""
        return {"values": self.values, "tables": self.tables, "figures": self.figures}

    @staticmethod
    def _check_new_name(name: Any, kind: str, taken: Container[str]) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a {kind} name must be a non-empty string, got {name!r}")
        if name in taken:
            raise ValueError(f"{kind} {name!r} was already recorded in this test")


def table_columns_and_rows(data: Any, what: str) -> dict[str, list]:
    """Columns and rows of a DataFrame (its index kept unless a default range) or of dict rows."""
    import pandas as pd  # here, not at the top: pandas would slow every pytest start

    if isinstance(data, pd.DataFrame):
        frame = data if isinstance(data.index, pd.RangeIndex) else data.reset_index()
        columns = [str(column) for column in frame.columns]
        rows = frame.to_numpy(dtype=object).tolist()
    elif isinstance(data, list) and all(isinstance(row, dict) for row in data):
        columns = list(dict.fromkeys(str(key) for row in data for key in row))
        rows = [[row.get(column) for column in columns] for row in data]
    else:
        raise TypeError(
            f"{what} must be a pandas DataFrame or a list of dicts, got {type(data).__name__}"
        )
    return {"columns": columns, "rows": to_jsonable(rows, what)}


def figure_filename(nodeid: str, name: str) -> str:
    """A file name from the test and figure names: readable, filesystem-safe and unique."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{nodeid}-{name}").strip("._")[:100]
    digest = hashlib.sha256(f"{nodeid}\0{name}".encode()).hexdigest()[:10]
    return f"{slug}-{digest}.png"


def title_figure(fig: Any, title: str) -> None:
    """Put `title` above the figure's own title, if any; make room for it if nothing lays the
    figure out."""
    fig.suptitle("\n".join(part for part in (title, fig.get_suptitle()) if part), fontsize=10)
    if fig.get_layout_engine() is None:
        fig.set_layout_engine("constrained")


def rendered_png(fig: Any, title: str) -> bytes:
    """The figure titled `title` as PNG; closed."""
    title_figure(fig, title)
    try:
        return png_bytes(fig)
    finally:
        close_figure(fig)


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG, rendered by Agg at a fixed dpi without the Software stamp."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    return buffer.getvalue()


def close_figure(fig: Any) -> None:
    # Only pyplot keeps figures open; importing it here would choose a GUI backend for nothing.
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
