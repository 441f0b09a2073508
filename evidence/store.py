"""Results kept on disk between runs: plain values, in files that reading cannot make run code.

An entry is one uncompressed .npz file (np.savez) holding the entry's identity (what it is the
result of: JSON text, checked when it is read), the value as a JSON tree, and each numpy array
or scalar of the value as an array of its own. Every node of the tree says what it is, so that
a value comes back exactly as it went in:

    ["d", [[key, value], ...]]     a dict, in its order (its keys are nodes too)
    ["l", [...]]   ["t", [...]]    a list, a tuple
    ["s", "text"]  ["i", 3]        a str, an int
    ["b", true]    ["z"]           a bool, None
    ["f", "0x1.8p+1"]              a float as float.hex: every bit (nan, inf, -0.0)
    ["a", "0"]     ["n", "1"]      a numpy array, a numpy scalar: the entry's array "0", "1"

Anything else (an object array, a dataclass, a set, ...) cannot be stored: `encode` raises
`Unstorable` naming where it is in the value. `digest(value)` is the sha256 of the same
encoding: the key of a value, equal for equal values, type for type and bit for bit.

Reading never unpickles (np.load(allow_pickle=False)) and checks every node: a file that is not
such an entry (truncated, a pickle, an object array) or that holds another identity's result is
`Unreadable`, with a one-line reason. Writing goes through a temporary file and os.replace in
the same directory (`files.write_atomic`): a reader sees a whole entry or none, whoever writes.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from mechclaims.evidence.files import write_atomic

IDENTITY, VALUE = "identity", "value"  # the entry's arrays besides the value's own


class Unstorable(TypeError):
    """A value that is not made of plain values alone."""


class Unreadable(ValueError):
    """A file that is not a readable entry of the expected identity."""


def encode(value: Any, where: str = "value") -> tuple[list, list[np.ndarray]]:
    """The JSON tree of `value` and its arrays, in the order the tree names them."""
    arrays: list[np.ndarray] = []
    return _node(value, arrays, where), arrays


def _node(value: Any, arrays: list[np.ndarray], where: str) -> list:
    if value is None:
        return ["z"]
    if type(value) in (bool, str, int, float):  # not their subclasses: numpy's float64, ...
        tag = {bool: "b", str: "s", int: "i", float: "f"}[type(value)]
        return [tag, value.hex() if tag == "f" else value]
    if type(value) is np.ndarray or isinstance(value, np.generic):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise Unstorable(f"{where} is an array of Python objects ({array.dtype})")
        arrays.append(array)
        return ["a" if type(value) is np.ndarray else "n", str(len(arrays) - 1)]
    if type(value) in (list, tuple):
        tag = "l" if type(value) is list else "t"
        return [tag, [_node(item, arrays, f"{where}[{i}]") for i, item in enumerate(value)]]
    if type(value) is dict:
        return ["d", [[_node(key, arrays, f"{where} key {key!r}"),
                       _node(item, arrays, f"{where}[{key!r}]")]
                      for key, item in value.items()]]  # fmt: skip
    raise Unstorable(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}; only dicts, lists, "
        "tuples, str, int, float, bool, None and numpy arrays and scalars can be stored"
    )


def decode(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The value of a JSON tree (`encode`'s) and its arrays; ValueError for a malformed one."""
    if not isinstance(tree, list) or not tree or not isinstance(tree[0], str):
        raise ValueError(f"not a node: {str(tree)[:80]}")
    tag, payload = tree[0], tree[1:]
    if tag == "z" and not payload:
        return None
    if len(payload) != 1:
        raise ValueError(f"node {tag!r} has {len(payload)} parts")
    (content,) = payload
    kinds = {"b": bool, "s": str, "i": int, "f": str, "a": str, "n": str, "l": list, "t": list,
             "d": list}  # fmt: skip
    if tag not in kinds or type(content) is not kinds[tag]:
        raise ValueError(f"node {tag!r} holds a {type(content).__name__}")
    if tag in "bsi":
        return content
    if tag == "f":
        return float.fromhex(content)
    if tag in "an":
        array = arrays[content]
        return array if tag == "a" else array[()]
    if tag in "lt":
        items = [decode(item, arrays) for item in content]
        return items if tag == "l" else tuple(items)
    return {decode(key, arrays): decode(item, arrays) for key, item in map(_pair, content)}


def _pair(node: Any) -> list:
    if not isinstance(node, list) or len(node) != 2:
        raise ValueError("a dict's item is not a [key, value] pair")
    return node


def digest(value: Any, where: str = "value") -> str:
    """sha256 of `value`'s encoding: its tree, then each array's dtype, shape and bytes."""
    tree, arrays = encode(value, where)
    hashed = hashlib.sha256(json.dumps(tree).encode())
    for array in arrays:
        hashed.update(f"{array.dtype.str}{array.shape}".encode())
        hashed.update(np.ascontiguousarray(array).tobytes())
    return hashed.hexdigest()


def write_entry(path: Path, identity: str, value: Any) -> None:
    """Store `value` as the entry of `identity` at `path`, atomically (Unstorable: nothing
    written)."""
    tree, arrays = encode(value)
    buffer = io.BytesIO()
    np.savez(buffer, **{IDENTITY: _text_array(identity), VALUE: _text_array(json.dumps(tree))},
             **{str(index): array for index, array in enumerate(arrays)})  # fmt: skip
    write_atomic(path, buffer.getvalue())


def read_entry(path: Path, identity: str) -> Any:
    """The value of the entry at `path`, which must be `identity`'s; Unreadable if there is no
    such entry."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as error:  # whatever the bytes are, they are not an entry
        raise Unreadable(_reason(path, error)) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise Unreadable(f"{path}: not an .npz archive")
    try:
        with loaded:
            arrays = {name: loaded[name] for name in loaded.files}
        if _text(arrays.pop(IDENTITY)) != identity:
            raise ValueError("it holds the result of something else")
        return decode(json.loads(_text(arrays.pop(VALUE))), arrays)
    except Exception as error:  # a malformed archive or tree: the file is not an entry
        raise Unreadable(_reason(path, error)) from None


def _text_array(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8)


def _text(array: np.ndarray) -> str:
    if array.dtype != np.uint8 or array.ndim != 1:
        raise ValueError(f"a text array is {array.dtype} of {array.ndim} dimensions")
    return array.tobytes().decode()


def _reason(path: Path, error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{path}: {type(error).__name__}" + (f": {lines[0]}" if lines else "")
