"""Benchmarks compare like with like: PyTorch gets the one thread the root conftest gives BLAS."""

import pytest

torch = pytest.importorskip("torch", reason="the benchmarks compare with PyTorch (extra `bench`)")
torch.set_num_threads(1)
