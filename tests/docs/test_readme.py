"""The README's "Write your own claim" shows examples/own-claim file for file, verbatim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "own-claim"
SHOWN = re.compile(
    r"^`examples/own-claim/(?P<name>[^`]+)`:\n\n```\w*\n(?P<text>.*?)^```$", re.S | re.M
)


def shown_files() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return {match["name"]: match["text"] for match in SHOWN.finditer(readme)}


def test_the_readme_shows_every_file_of_the_example():
    example = {path.name for path in EXAMPLE.iterdir() if path.suffix in (".py", ".toml")}
    assert set(shown_files()) == example


@pytest.mark.parametrize("name", sorted(shown_files()))
def test_each_shown_file_is_the_example_file(name):
    assert shown_files()[name] == (EXAMPLE / name).read_text(encoding="utf-8")
