"""torch and transformers for the live comparisons with HF, or the module's skip.

Skipped without them (the `bench` extra). CI sets MECHCLAIMS_REQUIRE_TRANSFORMERS=1, which turns
the skip into an import error: a comparison cannot silently not run there."""

from __future__ import annotations

import importlib
import os

import pytest

REASON = "compares with HF transformers (extra `bench`)"


def torch_and_transformers():
    """(torch, transformers), importing them or skipping the calling test module."""
    if os.environ.get("MECHCLAIMS_REQUIRE_TRANSFORMERS") == "1":
        return importlib.import_module("torch"), importlib.import_module("transformers")
    return (
        pytest.importorskip("torch", reason=REASON),
        pytest.importorskip("transformers", reason=REASON),
    )
