"""Speed of the NumPy transformer against PyTorch eager on the same weights.

Run: `pip install -e ".[test,bench]" && pytest bench/` (not part of the default test run).
Each benchmark times our model with pytest-benchmark and the PyTorch twin (`bench.torch_twin`)
with the same timer, on the same inputs, and checks the issue's target ratio:

    forward, full cache, seed workload (seed-minigpt, 1000 x 4)      faster than PyTorch
    forward, full cache, mid-size model (32 x 64 tokens, float32)     within 1.2x of PyTorch
    loss_and_grads, mid-size model                                    within 1.5x of PyTorch

Both sides use the threads their BLAS is given (set OPENBLAS_NUM_THREADS / torch threads alike).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from model.config import TransformerConfig
from model.transformer import Transformer

torch = pytest.importorskip("torch", reason="the benchmarks compare with PyTorch (extra `bench`)")
from bench import torch_twin  # noqa: E402  (imports torch)

MID_SIZE = TransformerConfig.preset("gpt2-style").replace(
    vocab_size=512, d_model=256, n_heads=8, d_mlp=1024, n_layers=4, n_ctx=64, dtype="float32"
)
WORKLOADS = {
    "seed": (TransformerConfig.preset("seed-minigpt"), 1000, 4),
    "mid-size": (MID_SIZE, 32, 64),
}
TARGETS = {("forward", "seed"): 1.0, ("forward", "mid-size"): 1.2, ("train", "mid-size"): 1.5}


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _setup(workload: str):
    cfg, batch, n_pos = WORKLOADS[workload]
    model = Transformer(cfg, seed=0)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, n_pos))
    return cfg, model, tokens


def _check_target(benchmark, kind: str, workload: str, torch_seconds: float) -> None:
    ours = benchmark.stats.stats.median
    ratio = ours / torch_seconds
    benchmark.extra_info.update(torch_median_s=torch_seconds, ratio_to_torch=ratio)
    target = TARGETS[(kind, workload)]
    print(f"\n{kind} {workload}: numpy {ours * 1e3:.2f} ms, torch {torch_seconds * 1e3:.2f} ms, "
          f"ratio {ratio:.2f} (target <= {target})")  # fmt: skip
    assert ratio <= target, f"{kind} on {workload}: {ratio:.2f}x PyTorch, target {target}x"


@pytest.mark.parametrize("workload", ["seed", "mid-size"])
def test_forward_with_full_cache(benchmark, workload):
    cfg, model, tokens = _setup(workload)
    params, torch_tokens = torch_twin.torch_params(model.params), torch.tensor(tokens)
    with torch.no_grad():
        np.testing.assert_allclose(
            torch_twin.forward(cfg, params, torch_tokens).numpy(), model(tokens),
            rtol=1e-3, atol=1e-4,
        )  # fmt: skip
        torch_seconds = _median_seconds(lambda: torch_twin.forward(cfg, params, torch_tokens), 30)
    benchmark.pedantic(model.run_with_cache, args=(tokens,), rounds=30, warmup_rounds=2)
    _check_target(benchmark, "forward", workload, torch_seconds)


def test_training_step(benchmark):
    cfg, model, tokens = _setup("mid-size")
    targets = np.roll(tokens, -1, axis=1)
    params = torch_twin.torch_params(model.params, requires_grad=True)
    torch_tokens, torch_targets = torch.tensor(tokens), torch.tensor(targets)

    def torch_step():
        for tensor in params.values():
            tensor.grad = None
        torch_twin.loss(cfg, params, torch_tokens, torch_targets).backward()

    torch_seconds = _median_seconds(torch_step, 15)
    benchmark.pedantic(model.loss_and_grads, args=(tokens, targets), rounds=15, warmup_rounds=1)
    _check_target(benchmark, "train", "mid-size", torch_seconds)
