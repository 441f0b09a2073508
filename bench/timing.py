"""Timing shared by the benchmarks: ours and PyTorch's, call for call on the same machine."""

from __future__ import annotations

import time

import numpy as np


def interleaved_medians(ours, theirs, rounds: int) -> tuple[float, float]:
    """Median seconds of two callables timed alternately, after one warm-up call each."""
    ours(), theirs()
    times = np.empty((rounds, 2))
    for row in range(rounds):
        for column, fn in enumerate((ours, theirs)):
            start = time.perf_counter()
            fn()
            times[row, column] = time.perf_counter() - start
    return tuple(np.median(times, axis=0))
