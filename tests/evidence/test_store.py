"""The store of results on disk: a value comes back exactly (type for type, bit for bit), reading
never runs code, a file that is not the expected entry is Unreadable, and writes are atomic."""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mechclaims.evidence.store import (
    Unreadable,
    Unstorable,
    digest,
    encode,
    read_entry,
    write_entry,
)

IDENTITY = '{"measure": "toy", "seed": 3}'
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.text(max_size=8),
)
NUMPY = st.one_of(
    hnp.arrays(hnp.scalar_dtypes(), hnp.array_shapes(min_dims=0, max_side=3)),
    hnp.from_dtype(np.dtype(np.float64)).map(np.float64),
    hnp.from_dtype(np.dtype(np.int64)).map(np.int64),
    st.booleans().map(np.bool_),
    st.floats(width=32).map(np.float32),
)
VALUES = st.recursive(
    st.one_of(SCALARS, NUMPY),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=3),
    ),
    max_leaves=12,
)


def same(a, b) -> bool:
    """Equal type for type and bit for bit (nan equals nan, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a.hex() == b.hex() or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (np.ndarray, np.generic)):
        a, b = np.asarray(a), np.asarray(b)
        layout = a.flags.f_contiguous == b.flags.f_contiguous
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes() and layout
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    return a == b


@given(VALUES)
def test_a_value_comes_back_type_for_type_and_bit_for_bit(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("entry") / "entry.npz"
    write_entry(path, IDENTITY, value)
    assert same(read_entry(path, IDENTITY), value)


def test_what_a_measurement_returns_comes_back_exactly(tmp_path):
    result = {
        "statistic": 0.1 + 0.2, "count": 3, "one": 1.0, "negative_zero": -0.0, "nan": math.nan,
        "holds": True, "phi": None, "name": "dim0 token 7", "listed": [1, 2.5, "x"],
        "pair": (1, 2), "float64": np.float64(0.5), "int64": np.int64(7), "bool": np.bool_(True),
        "matrix": np.arange(6.0).reshape(2, 3), "fortran": np.asfortranarray(np.eye(3)[:, :2]),
        "flags": np.array([True, False]), "ids": np.array([3, 1], dtype=np.int64),
        "nested": {"network": np.array([0.25]), "null": {"mean": 1e-300}}, 5: "an int key",
    }  # fmt: skip
    path = tmp_path / "entry.npz"
    write_entry(path, IDENTITY, result)
    assert same(read_entry(path, IDENTITY), result)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"cells": np.array([{"a": 1}], dtype=object)}, "value['cells'] is an array of Python"),
        ({"units": {1, 2}}, "value['units'] is a builtins.set"),
        ([1, Path("x")], "value[1] is a pathlib"),
        ({"text": np.str_("x"), "sub": type("Str", (str,), {})("y")}, "value['sub'] is a"),
    ],
)
def test_what_is_not_plain_values_cannot_be_stored_and_the_error_says_where(value, where):
    with pytest.raises(Unstorable, match=f"^{where}".replace("[", r"\[").replace("(", r"\(")):
        encode(value)


def test_a_dataclass_cannot_be_stored(tmp_path):
    @dataclass
    class Case:
        value: float

    with pytest.raises(Unstorable, match=r"value\['case'\] is a .*Case; only dicts"):
        write_entry(tmp_path / "entry.npz", IDENTITY, {"case": Case(1.0)})
    assert not (tmp_path / "entry.npz").exists()


def test_a_digest_tells_apart_what_round_trips_tell_apart():
    values = [1, 1.0, True, np.int64(1), np.float64(1.0), 0.0, -0.0, [1, 2], (1, 2),
              np.array([1.0, 2.0]), np.array([1.0, 2.0], dtype=np.float32),
              np.array([[1.0, 2.0]]), {"a": 1, "b": 2}, {"b": 2, "a": 1}, "1", None]  # fmt: skip
    digests = [digest(value) for value in values]
    assert len(set(digests)) == len(values)
    assert digest({"a": np.arange(3.0)}) == digest({"a": np.arange(3.0)})


def test_an_entry_of_another_identity_is_unreadable(tmp_path):
    path = tmp_path / "entry.npz"
    write_entry(path, IDENTITY, {"x": 1.0})
    with pytest.raises(Unreadable, match="holds the result of something else"):
        read_entry(path, IDENTITY.replace("3", "4"))


@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty", "text", "npy", "missing"])
def test_a_damaged_or_foreign_file_is_unreadable_in_one_line(tmp_path, damage):
    path = tmp_path / "entry.npz"
    write_entry(path, IDENTITY, {"matrix": np.arange(1000.0)})
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "flipped": data[:600] + bytes([data[600] ^ 0xFF]) + data[601:],
        "empty": b"",
        "text": b"not an entry\n",
    }
    if damage == "npy":
        np.save(path.with_suffix(".npy"), np.arange(3))
        path.with_suffix(".npy").replace(path)
    elif damage == "missing":
        path.unlink()
    else:
        path.write_bytes(damaged[damage])
    with pytest.raises(Unreadable) as caught:
        read_entry(path, IDENTITY)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(str(path))


class Planted:
    """What unpickling runs: it touches the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("planted", ["pickle", "object array"])
def test_reading_a_planted_entry_runs_no_code(tmp_path, planted):
    """A shared cache is written by whoever can write there: an entry whose unpickling would
    run code is unreadable, and the code does not run."""
    marker, path = tmp_path / "marker", tmp_path / "entry.npz"
    if planted == "pickle":
        path.write_bytes(pickle.dumps({"statistic": Planted(marker)}))
    else:
        np.savez(path, identity=np.frombuffer(IDENTITY.encode(), np.uint8),
                 value=np.frombuffer(b'["a", "0"]', np.uint8),
                 **{"0": np.array([Planted(marker)], dtype=object)})  # fmt: skip
    pickle.loads(pickle.dumps(Planted(tmp_path / "armed")))  # the payload would run
    assert (tmp_path / "armed").exists()
    with pytest.raises(Unreadable):
        read_entry(path, IDENTITY)
    assert not marker.exists()


WRITER = """
import sys
import time
from pathlib import Path
import numpy as np
from mechclaims.evidence.store import write_entry

path, identity = Path(sys.argv[1]), sys.argv[2]
fill, until = float(sys.argv[3]), float(sys.argv[4])
while time.time() < until:
    write_entry(path, identity, {"fill": np.full(200_000, fill)})
"""


def test_concurrent_writers_never_show_a_reader_half_an_entry(tmp_path):
    """Two processes rewrite one entry (1.6 MB) as fast as they can while this one reads it:
    every read is one writer's whole value. A write that truncated the file and wrote into it
    in place would show readers half-written entries."""
    path = tmp_path / "entry.npz"
    write_entry(path, IDENTITY, {"fill": np.full(200_000, 1.0)})
    until = time.time() + 1.5
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), IDENTITY, fill,
                                 str(until)]) for fill in ("1.0", "2.0")]  # fmt: skip
    reads = 0
    try:
        while time.time() < until:
            fill = read_entry(path, IDENTITY)["fill"]
            assert fill.shape == (200_000,)
            assert fill[0] in (1.0, 2.0)
            assert np.all(fill == fill[0])
            reads += 1
    finally:
        for writer in writers:
            writer.wait()
    assert reads > 10
    assert all(writer.returncode == 0 for writer in writers)
    assert sorted(os.listdir(tmp_path)) == ["entry.npz"]  # no temporary file left
