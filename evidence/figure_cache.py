"""Figures kept between runs: a figure drawn by a function of plain data is drawn again only when
what it shows or how it is drawn has changed.

    evidence.figure("effect by seed", effect_figure, results, thresholds)

calls `effect_figure(results, thresholds)`, which returns a matplotlib Figure, only if the cache
holds no PNG of the same identity:

    the title      the test's claim, reading and parameters, and the figure's name
    the drawing    the function's module and qualified name and its code: its module's source and
                   that of every module it imports outside the installed distributions (the
                   claims' figures module too; mechclaims.evidence.code), and the code that
                   titles and renders it
    the data       the arguments, by their digest (mechclaims.evidence.store: plain values, type
                   for type and bit for bit; anything else is a TypeError naming it)
    the software   Python's major.minor and the versions of matplotlib, pillow (which writes the
                   PNG) and numpy

The cache is a directory in pytest's cache (.pytest_cache/d/evidence-figures): `-p
no:cacheprovider` turns it off and `--cache-clear` empties it. Its entries are store entries
holding a PNG's bytes: reading one never runs code, and one that cannot be read is said in one
line, drawn again and replaced. Rendering is deterministic, so a PNG read from the cache is the
very bytes drawing it gives: the report does not change. `counts` says how many figures were
reused and how many drawn; the report's run.json has them, summed over pytest-xdist's workers.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mechclaims.evidence.code import function_identity
from mechclaims.evidence.files import remove_if_present
from mechclaims.evidence.store import Unreadable, digest, read_entry, write_entry

CACHE_NAME = "evidence-figures"  # its directory in pytest's cache
RENDERING = ("matplotlib", "pillow", "numpy")
COUNTS_KEY = "evidence_figures"  # a pytest-xdist worker's counts, in its workeroutput
Render = Callable[[Any, str], bytes]  # (figure, title) -> PNG bytes


class FigureCacheWarning(UserWarning):
    """An entry that cannot be read or written: the figure is drawn, the run goes on."""


class FigureCache:
    """PNGs of drawn figures in `directory` (None: every figure is drawn), by their identity."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.counts: Counter[str] = Counter()  # "reused", "drawn"
        self.unwritable = False

    def png(self, title: str, draw: Callable[..., Any], data: tuple, keywords: dict,
            render: Render) -> bytes:  # fmt: skip
        """The PNG of `draw(*data, **keywords)` titled `title` and rendered by `render`: from
        the cache if it holds it, else drawn (and kept)."""
        identity = figure_identity(title, draw, data, keywords, render)
        path = self.entry_path(identity)
        stored = self.read(path, identity) if path is not None else None
        if stored is not None:
            self.counts["reused"] += 1
            return stored
        figure = draw(*data, **keywords)
        if not hasattr(figure, "savefig"):
            raise TypeError(f"{draw.__qualname__} returned a {type(figure).__name__}, not a "
                            "matplotlib Figure")  # fmt: skip
        png = render(figure, title)
        self.counts["drawn"] += 1
        if path is not None:
            self.write(path, identity, png)
        return png

    def entry_path(self, identity: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{hashlib.sha256(identity.encode()).hexdigest()[:40]}.npz"

    def read(self, path: Path, identity: str) -> bytes | None:
        """The PNG stored at `path`; None if there is none, or none readable (said, removed)."""
        if not path.is_file():
            return None
        try:
            png = read_entry(path, identity)
            if type(png) is not np.ndarray or png.dtype != np.uint8 or png.ndim != 1:
                raise Unreadable(f"{path}: holds no PNG's bytes")
        except Unreadable as error:
            warnings.warn(f"figure cache: unreadable entry {error}: drawn again",
                          FigureCacheWarning, stacklevel=4)  # fmt: skip
            remove_if_present(path)
            return None
        return png.tobytes()

    def write(self, path: Path, identity: str, png: bytes) -> None:
        try:
            write_entry(path, identity, np.frombuffer(png, dtype=np.uint8))
        except OSError as error:
            if not self.unwritable:
                self.unwritable = True
                warnings.warn(f"figure cache: cannot write {self.directory} "
                              f"({error.strerror or error}): figures are not kept",
                              FigureCacheWarning, stacklevel=4)  # fmt: skip

    def run_info(self, worker_counts: Counter[str]) -> dict[str, Any]:
        """run.json's account: where the cache is, how many figures were reused and drawn."""
        counts = self.counts + worker_counts
        return {"cache": None if self.directory is None else str(self.directory),
                "reused": counts["reused"], "drawn": counts["drawn"]}  # fmt: skip


FIGURE_CACHE_KEY = pytest.StashKey[FigureCache]()


def figure_cache(config: pytest.Config) -> FigureCache:
    """This process's figure cache: in pytest's cache directory, if pytest has one."""
    if FIGURE_CACHE_KEY not in config.stash:
        cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
        config.stash[FIGURE_CACHE_KEY] = FigureCache(cache.mkdir(CACHE_NAME) if cache else None)
    return config.stash[FIGURE_CACHE_KEY]


def figure_identity(title: str, draw: Callable[..., Any], data: tuple, keywords: dict,
                    render: Render) -> str:  # fmt: skip
    """Everything a drawn figure's PNG depends on (module docstring), as JSON."""
    python = f"{sys.implementation.name} {sys.version_info.major}.{sys.version_info.minor}"
    return json.dumps({
        "title": title,
        "draw": function_identity(draw),
        "render": function_identity(render),
        "data": digest([list(data), keywords], where=f"the data of figure {title!r}"),
        "software": {"python": python, **{name: metadata.version(name) for name in RENDERING}},
    }, sort_keys=True)  # fmt: skip
