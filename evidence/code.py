"""What computed a stored result: digests of its code, so that a change to any of it is a new key.

A result kept between runs (a measurement, a drawn figure) is served again only while the code
that computed it is unchanged. Two digests say what that code is:

    files_digest(packages)   every .py file of these packages (their directories, found by
                             importlib: wherever and however they are installed), each named by
                             its module's name (the same digest for an editable install, a
                             wheel's or a copy)
    module_digest(name)      the module's source, and that of every module it imports that no
                             installed distribution provides, transitively; the imports are read
                             from the source (ast: every import statement, also those inside
                             functions), not taken from what happens to be loaded. An installed
                             distribution's module (numpy, matplotlib) enters by the
                             distribution's name and version, the standard library not at all
                             (the caller names Python's version); the package this plugin is
                             part of is read as source wherever it is installed.

Neither sees code reached without an import statement (importlib.import_module of a computed
name, exec) nor data files the code reads: such code must not compute stored results, or must
put what it reads into the result's key. Both are computed once per process.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import sys
import sysconfig
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

OWN_PACKAGE = __name__.partition(".")[0]  # read as source wherever it is installed
INSTALLED = tuple(
    Path(sysconfig.get_paths()[name]).resolve()
    for name in ("stdlib", "platstdlib", "purelib", "platlib")
)


@functools.cache
def files_digest(packages: tuple[str, ...]) -> str:
    """The digest of every .py file of `packages` (module docstring)."""
    hashed = hashlib.sha256()
    for name, path in sorted(package_files(packages).items()):
        hashed.update(f"{name}\0{source_digest(path)}\0".encode())
    return hashed.hexdigest()


def package_files(packages: tuple[str, ...]) -> dict[str, Path]:
    """{module name: its file} of every .py file under the directories of `packages`: named
    alike however the packages are laid out (a package's __init__.py as `package.__init__`)."""
    named: dict[str, Path] = {}
    for package in packages:
        for directory in importlib.util.find_spec(package).submodule_search_locations:
            for path in Path(directory).rglob("*.py"):
                module = ".".join((package, *path.relative_to(directory).with_suffix("").parts))
                named[module] = path.resolve()
    return named


@functools.cache
def module_digest(name: str) -> str:
    """The digest of module `name`'s code (module docstring)."""
    reached: dict[str, str] = {}
    waiting = [name]
    while waiting:
        current = waiting.pop()
        if current not in reached:
            reached[current], imports = module_facts(current)
            waiting += imports
    return hashlib.sha256(json.dumps(reached, sort_keys=True).encode()).hexdigest()


def function_identity(function: Callable[..., Any]) -> dict[str, str]:
    """What a function is, for a key: its module, its qualified name and its module's code."""
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", None)
    if not module or not name:
        raise TypeError(f"{function!r} is not a function of a module (a def or a class)")
    return {"function": f"{module}.{name}", "code": module_digest(module)}


@functools.cache
def module_facts(name: str) -> tuple[str, tuple[str, ...]]:
    """What module `name` adds to a digest, and the modules it imports: for a module read as
    source, its source's digest and its imports; for an installed distribution's module, the
    distribution and its version; for the standard library, that it is."""
    origin = module_origin(name)
    top = name.partition(".")[0]
    if top in sys.stdlib_module_names:
        return "standard library", ()
    if origin is None:
        return "not found", ()
    if not read_as_source(name):
        return distribution_version(top), ()
    source = Path(origin).read_bytes()
    is_package = Path(origin).name == "__init__.py"
    return source_digest(Path(origin)), imported_modules(name, source, is_package)


def read_as_source(name: str) -> bool:
    """Whether module `name` enters a digest by its source: this plugin's package, and any
    module outside the standard library and the installed distributions."""
    origin = module_origin(name)
    if origin is None:
        return False
    if name.partition(".")[0] == OWN_PACKAGE:
        return True
    return not any(Path(origin).resolve().is_relative_to(path) for path in INSTALLED)


def module_origin(name: str) -> str | None:
    """The file module `name` is loaded from; None for a built-in, a namespace package or a
    module that cannot be found."""
    module = sys.modules.get(name)
    if module is not None:
        origin = getattr(module, "__file__", None)
    else:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):  # a parent that is not a package, ...
            return None
        origin = spec.origin if spec is not None and spec.has_location else None
    return origin if origin and Path(origin).is_file() else None


def imported_modules(name: str, source: bytes, is_package: bool) -> tuple[str, ...]:
    """The modules the source of module `name` imports (and their parent packages), by name."""
    package = name if is_package else name.rpartition(".")[0]
    found: list[str] = []
    for node in statements(ast.parse(source).body):
        if isinstance(node, ast.Import):
            found += [prefix for alias in node.names for prefix in prefixes(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = imported_base(package, node)
            found += prefixes(base)
            found += [f"{base}.{alias.name}" for alias in node.names
                      if is_submodule(base, alias.name)]  # fmt: skip
    return tuple(dict.fromkeys(found))


def statements(nodes: list[ast.AST]):
    """Every statement among `nodes` and in their blocks (imports are statements)."""
    for node in nodes:
        yield node
        for block in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from statements(getattr(node, block, []))


def imported_base(package: str, node: ast.ImportFrom) -> str:
    """The module a `from ... import` statement imports from, its dots resolved."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def prefixes(name: str) -> list[str]:
    """`a.b.c` -> a, a.b, a.b.c: importing a module imports its parent packages."""
    parts = name.split(".")
    return [".".join(parts[:index]) for index in range(1, len(parts) + 1) if parts[0]]


def is_submodule(base: str, attribute: str) -> bool:
    """Whether `from base import attribute` imports a module (of a package read as source)."""
    if attribute == "*" or not read_as_source(base):
        return False
    return module_origin(f"{base}.{attribute}") is not None


def distribution_version(top: str) -> str:
    """`name version` of the installed distribution that provides the top-level module `top`."""
    names = [top] if has_distribution(top) else distributions_of().get(top, [])
    versions = sorted({f"{name} {metadata.version(name)}" for name in names})
    return ", ".join(versions) or f"{top}: no distribution"


def has_distribution(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


@functools.cache
def distributions_of() -> dict[str, list[str]]:
    """{top-level module: its distributions}: slow, asked only when a module's name is not its
    distribution's (PIL: pillow)."""
    return metadata.packages_distributions()


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    hashed = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            hashed.update(chunk)
    return hashed.hexdigest()


source_digest = functools.cache(file_digest)  # a source file, read once per process
