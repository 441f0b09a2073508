"""The digests of code that stored results are keyed by: a module's digest changes with its source
and with the source of every module it imports (at any depth, relative or not, also inside a
function), and with the version of an installed distribution it imports; and with nothing else."""

from __future__ import annotations

import functools
import hashlib
import importlib
from pathlib import Path

import numpy as np
import pytest

from mechclaims.evidence import code

MODULES = {
    "__init__.py": "",
    "drawing.py": (
        "import numpy as np\n\nfrom .limits import LIMIT\n\n\n"
        "def draw(values):\n    from toypkg23 import late\n\n"
        "    return np.clip(values, 0, LIMIT) + late.OFFSET\n"
    ),
    "limits.py": "from toypkg23.deeper import SCALE\n\nLIMIT = 1 * SCALE\n",
    "deeper.py": "SCALE = 2\n",
    "late.py": "OFFSET = 0\n",
    "unrelated.py": "VALUE = 0\n",
}


@pytest.fixture
def fresh_digests():
    """Digests computed afresh (they are computed once per process), before and after."""
    caches = (code.module_digest, code.module_facts, code.source_digest)
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


@pytest.fixture
def toy_package(tmp_path, monkeypatch, fresh_digests) -> Path:
    package = tmp_path / "toypkg23"
    package.mkdir()
    for name, text in MODULES.items():
        (package / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("toypkg23.drawing")
    yield package
    for name in list(importlib.sys.modules):
        if name.startswith("toypkg23"):
            del importlib.sys.modules[name]


def digest_after(change: str, package: Path) -> str:
    """The drawing module's digest after one more line in module `change` (or none)."""
    before = code.module_digest("toypkg23.drawing")
    if change:
        with (package / change).open("a") as module:
            module.write("# one more line\n")
    for cache in (code.module_digest, code.module_facts, code.source_digest):
        cache.cache_clear()
    after = code.module_digest("toypkg23.drawing")
    return "same" if after == before else "changed"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("drawing.py", "changed"),
        ("limits.py", "changed"),  # relative import of a constant
        ("deeper.py", "changed"),  # imported by an imported module
        ("late.py", "changed"),  # imported inside a function
        ("__init__.py", "changed"),  # a parent package runs when its module is imported
        ("unrelated.py", "same"),
        ("", "same"),
    ],
)
def test_a_module_digest_changes_with_the_source_of_what_it_imports(toy_package, change, expected):
    assert digest_after(change, toy_package) == expected


def test_an_installed_distribution_enters_by_its_version(toy_package, monkeypatch):
    assert code.module_facts("numpy") == (f"numpy {np.__version__}", ())
    before = code.module_digest("toypkg23.drawing")
    monkeypatch.setattr(code.metadata, "version", lambda name: "0.0.0")
    for cache in (code.module_digest, code.module_facts):
        cache.cache_clear()
    assert code.module_digest("toypkg23.drawing") != before


def test_the_standard_library_enters_by_name_and_this_package_by_its_source(fresh_digests):
    assert code.module_facts("json") == ("standard library", ())
    layers = code.module_facts("mechclaims.model.layers")
    origin = Path(importlib.import_module("mechclaims.model.layers").__file__)
    assert layers[0] == hashlib.sha256(origin.read_bytes()).hexdigest()
    assert "numpy" in layers[1]


def test_a_module_whose_name_is_not_its_distribution_s_finds_it():
    assert code.distribution_version("PIL").startswith("pillow ")


def test_a_function_is_named_by_its_module_and_qualified_name(toy_package):
    drawing = importlib.import_module("toypkg23.drawing")
    assert code.function_identity(drawing.draw) == {
        "function": "toypkg23.drawing.draw",
        "code": code.module_digest("toypkg23.drawing"),
    }
    with pytest.raises(TypeError, match="is not a function of a module"):
        code.function_identity(functools.partial(drawing.draw, 1))
