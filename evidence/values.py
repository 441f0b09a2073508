"""Plain JSON values: what a recorded value becomes before it travels on a test report.

Numpy scalars and arrays become Python numbers and nested lists. Floats are rounded to
`SIGNIFICANT_DIGITS` significant digits, so that the last bits of a computation (which may
differ with the BLAS thread count) never reach the report. JSON has no NaN or infinity: they
become the strings "nan", "inf" and "-inf". For display, numbers are shown with
`DISPLAY_DIGITS` significant digits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

SIGNIFICANT_DIGITS = 12
DISPLAY_DIGITS = 4
SCALAR_TYPES = (bool, int, float, str, type(None))


def to_jsonable(value: Any, what: str = "value") -> Any:
    """`value` as plain JSON types; `what` names it in the error for an unsupported type."""
    if isinstance(value, (bool, str, type(None))):
        return value
    if isinstance(value, np.generic):
        return to_jsonable(value.item(), what)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return round_float(value)
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), what)
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item, what) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item, what) for item in value]
    raise TypeError(
        f"{what} has type {type(value).__name__}; record numbers, strings, bools, None, "
        "or lists, dicts and numpy arrays of them"
    )


def round_float(value: float) -> float | str:
    """`value` rounded to SIGNIFICANT_DIGITS; NaN and infinities as strings."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def is_scalar(value: Any) -> bool:
    return isinstance(value, SCALAR_TYPES)


def is_number(value: Any) -> bool:
    """True for a finite int or float (after `to_jsonable`, NaN and inf are strings)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def display(value: Any) -> str:
    """A short text for a table cell: floats with DISPLAY_DIGITS significant digits."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{DISPLAY_DIGITS}g}"
    return str(value)


_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
MAX_MESSAGE_LENGTH = 200


def one_line(text: str) -> str:
    """The first non-empty line of `text`, memory addresses masked, cut to a fixed length."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    first = _ADDRESS.sub("0x…", lines[0]) if lines else ""
    return first if len(first) <= MAX_MESSAGE_LENGTH else first[: MAX_MESSAGE_LENGTH - 1] + "…"
