"""The figure cache: a figure drawn by a function of plain data is drawn once and its PNG reused
(the very bytes) while its title, data, drawing code and rendering software are unchanged; any
change draws it again; an entry that cannot be read is drawn again and replaced; and run.json
counts the figures reused and drawn, summed over pytest-xdist's workers."""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from mechclaims.evidence import code
from mechclaims.evidence import figure_cache as cache_module
from mechclaims.evidence.figure_cache import FigureCache, FigureCacheWarning
from mechclaims.evidence.recorder import Evidence

DRAWING = """
from matplotlib.figure import Figure

DRAWN = []


def curve(values, label="values"):
    DRAWN.append(list(values))
    figure = Figure(figsize=(2, 2))
    figure.subplots().plot(values, label=label)
    return figure
"""


@pytest.fixture
def drawing(tmp_path, monkeypatch):
    """A module of the user's own with a drawing function, imported afresh."""
    (tmp_path / "drawing23.py").write_text(DRAWING)
    monkeypatch.syspath_prepend(str(tmp_path))
    for cached in (code.module_digest, code.module_facts, code.source_digest):
        cached.cache_clear()
    yield importlib.import_module("drawing23")
    del sys.modules["drawing23"]


def recorded(tmp_path, cache: FigureCache, draw, *data, heading="1. Alpha", **keywords) -> bytes:
    """The PNG one test's evidence saves for a figure `draw(*data, **keywords)`."""
    evidence = Evidence("test_a.py::test_a", {}, tmp_path / "report", heading, cache)
    evidence.figure("effect", draw, *data, **keywords)
    return (tmp_path / "report" / evidence.figures[0]["path"]).read_bytes()


def test_a_figure_is_drawn_once_and_its_png_reused_byte_for_byte(tmp_path, drawing):
    uncached = recorded(tmp_path, FigureCache(None), drawing.curve, [1.0, 2.0])
    cache = FigureCache(tmp_path / "cache")
    assert recorded(tmp_path, cache, drawing.curve, [1.0, 2.0]) == uncached
    assert recorded(tmp_path, cache, drawing.curve, [1.0, 2.0]) == uncached
    assert drawing.DRAWN == [[1.0, 2.0], [1.0, 2.0]]  # without the cache, then once with it
    assert cache.counts == {"drawn": 1, "reused": 1}


@pytest.mark.parametrize(
    "change",
    ["data", "int for float", "keyword", "title", "drawing code", "matplotlib", "pillow"],
)
def test_a_figure_is_drawn_again_when_anything_it_shows_or_is_drawn_by_changes(
    tmp_path, drawing, monkeypatch, change
):
    cache = FigureCache(tmp_path / "cache")
    recorded(tmp_path, cache, drawing.curve, [1.0, 2.0])
    data, keywords, heading = [1.0, 2.0], {}, "1. Alpha"
    if change == "data":
        data = [1.0, 2.5]
    elif change == "int for float":
        data = [1, 2.0]
    elif change == "keyword":
        keywords = {"label": "other"}
    elif change == "title":
        heading = "1. Alpha, renamed"
    elif change == "drawing code":
        (tmp_path / "drawing23.py").write_text(DRAWING + "# one more line\n")
        for cached in (code.module_digest, code.module_facts, code.source_digest):
            cached.cache_clear()
    else:
        real = cache_module.metadata.version
        monkeypatch.setattr(cache_module.metadata, "version",
                            lambda name: "0.0" if name == change else real(name))  # fmt: skip
    recorded(tmp_path, cache, drawing.curve, data, heading=heading, **keywords)
    assert cache.counts == {"drawn": 2}


def test_an_entry_that_cannot_be_read_is_drawn_again_and_replaced(tmp_path, drawing):
    cache = FigureCache(tmp_path / "cache")
    png = recorded(tmp_path, cache, drawing.curve, [1.0, 2.0])
    (entry,) = (tmp_path / "cache").iterdir()
    entry.write_bytes(entry.read_bytes()[:-200])
    with pytest.warns(FigureCacheWarning, match=rf"unreadable entry {entry}: .*: drawn again"):
        assert recorded(tmp_path, cache, drawing.curve, [1.0, 2.0]) == png
    assert recorded(tmp_path, cache, drawing.curve, [1.0, 2.0]) == png
    assert cache.counts == {"drawn": 2, "reused": 1}


def test_what_cannot_be_a_key_or_a_figure_is_a_type_error(tmp_path, drawing):
    cache = FigureCache(tmp_path / "cache")
    with pytest.raises(TypeError, match=r"the data of figure '1. Alpha: effect'\[0\]\[0\] is a"):
        recorded(tmp_path, cache, drawing.curve, {1, 2})
    with pytest.raises(TypeError, match=r"len returned a int, not a matplotlib Figure"):
        recorded(tmp_path, cache, len, [1.0])
    evidence = Evidence("test_a.py::test_a", {}, None)
    with pytest.raises(TypeError, match="a Figure takes no data"):
        evidence.figure("effect", Figure(), [1.0])
    with pytest.raises(TypeError, match="must be a matplotlib Figure or a function"):
        evidence.figure("other", np.zeros(2))


def test_nothing_is_drawn_when_nothing_is_saved(drawing):
    evidence = Evidence("test_a.py::test_a", {}, None, "", FigureCache(None))
    evidence.figure("effect", drawing.curve, [1.0])
    assert drawing.DRAWN == []
    assert evidence.figures == [{"name": "effect", "path": evidence.figures[0]["path"]}]


DRAWN_TESTS = """
import pytest
from matplotlib.figure import Figure


def curve(values):
    figure = Figure(figsize=(2, 2))
    figure.subplots().plot(values)
    return figure


@pytest.mark.claim("alpha")
@pytest.mark.parametrize("seed", range(4))
def test_alpha(evidence, seed):
    evidence.figure("curve", curve, [0.0, float(seed)])
"""


def test_run_json_counts_the_figures_summed_over_xdist_workers(pytester):
    pytester.makepyfile(test_drawn=DRAWN_TESTS)
    pytester.runpytest("--evidence-dir", "serial").assert_outcomes(passed=4)
    pytester.runpytest_subprocess("--evidence-dir", "n2", "-n", "2").assert_outcomes(passed=4)
    cache = str(pytester.path / ".pytest_cache" / "d" / "evidence-figures")
    for name, counts in (("serial", {"reused": 0, "drawn": 4}), ("n2", {"reused": 4, "drawn": 0})):
        run = json.loads((pytester.path / name / "run.json").read_text())
        assert run["figures"] == {"cache": cache, **counts}
    for figure in (pytester.path / "serial" / "figures").iterdir():
        assert (pytester.path / "n2" / "figures" / figure.name).read_bytes() == figure.read_bytes()
