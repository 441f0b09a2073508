"""The repository's layout as pytest collects it: without __init__.py files (rootdir-relative
imports), two test modules with the same basename in one run are an import-file mismatch; and
its layers, each importing nothing of ours above it."""

import ast
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTED = ("claims", "tests", "bench")


def test_every_test_module_basename_is_unique_across_the_run():
    modules = [p for d in COLLECTED for p in (ROOT / d).rglob("test_*.py")]
    counts = Counter(p.name for p in modules)
    assert modules, "no test modules found"
    assert [name for name, n in counts.items() if n > 1] == []


LAYERS = {"model": {"model"}, "interp": {"model", "interp"}}  # folder: what of ours it may import


def imported_names(path: Path) -> set[str]:
    """Every module name a file imports (absolute imports)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_a_layer_imports_nothing_of_ours_above_it(folder):
    """model/ imports only model/ (nor the package's front door, which imports model/), and
    interp/ only model/ and interp/."""
    allowed = {f"mechclaims.{layer}" for layer in LAYERS[folder]}
    for path in sorted((ROOT / folder).rglob("*.py")):
        ours = {name for name in imported_names(path) if name.split(".")[0] == "mechclaims"}
        above = {name for name in ours if ".".join(name.split(".")[:2]) not in allowed}
        assert not above, f"{path.relative_to(ROOT)} imports {sorted(above)}"
