"""The fast row reductions the layers use, and the opt-in malloc tuning."""

import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mechclaims.model import layers
from mechclaims.model.memory import reuse_freed_memory

rows = st.integers(1, 40).flatmap(
    lambda n: arrays(
        np.float64,
        st.tuples(st.integers(1, 5), st.integers(1, 3), st.just(n)),
        elements=st.floats(-1e6, 1e6),
    )
)


@given(rows)
def test_row_reductions_equal_numpys_for_short_and_long_rows(values):
    np.testing.assert_array_equal(layers.row_max(values), values.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(layers.row_sum(values), values.sum(axis=-1, keepdims=True),
                               rtol=1e-12, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(layers.row_mean(values), values.mean(axis=-1, keepdims=True),
                               rtol=1e-12, atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("length", [3, layers.SHORT_ROW, layers.SHORT_ROW + 1, 40])
def test_row_max_ignores_masked_entries(length):
    values = np.random.default_rng(0).standard_normal((6, length))
    values[:, 1:] = -np.inf
    np.testing.assert_array_equal(layers.row_max(values)[:, 0], values[:, 0])


@given(rows)
def test_log_softmax_matches_scipy(values):
    from scipy.special import log_softmax

    np.testing.assert_allclose(layers.log_softmax(values), log_softmax(values, axis=-1),
                               rtol=1e-10, atol=1e-10)  # fmt: skip


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_reuse_freed_memory_takes_effect_on_glibc_and_allocation_still_works():
    assert reuse_freed_memory() is True
    blocks = [np.ones(1 << 20) for _ in range(4)]
    del blocks
    assert np.ones(1 << 20).sum() == 1 << 20
