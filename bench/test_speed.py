"""Speed of the NumPy transformer against PyTorch eager on the same weights.

Run: `pip install -e ".[test,bench]" && pytest bench/` (not part of the default test run).
Each benchmark times our model with pytest-benchmark and the PyTorch twin (`bench.torch_twin`)
with the same timer, on the same inputs, and checks the issue's target ratio:

    forward, full cache, seed workload (seed-minigpt, 1000 x 4)      faster than PyTorch
    forward, full cache, mid-size model (32 x 64 tokens, float32)     within 1.2x of PyTorch
    loss_and_grads, mid-size model                                    within 1.5x of PyTorch
    forward, gpt2-small (float32, 8 x 128 tokens), logits only       within 1.1x of PyTorch
    ... the same with every hook_resid_post cached                    within 1.1x of PyTorch
    forward, pythia-70m (float32, 8 x 128 tokens), logits only       as fast as PyTorch
    ... the same with every hook_resid_post cached                    as fast as PyTorch
    forward, llama2c-stories15m (float32, 8 x 128), logits only      as fast as PyTorch
    ... the same with every hook_resid_post cached                    as fast as PyTorch

Both sides run on one thread (the root conftest limits BLAS to one; PyTorch is set to match),
with freed memory reused (`model.memory`, process-wide, so PyTorch gets it too), and they are
timed interleaved, call for call, so that both see the same machine. pytest-benchmark's table
shows our side; the ratio to PyTorch is in `extra_info` and printed. bench/test_twin.py checks
that the twin computes our function (float64, to 1e-10), variant by variant.

What NumPy cannot fuse costs most on the pretrained-size presets: pythia-70m's exact GELU
goes through scipy's scalar erf (a fifth of our forward; PyTorch's vectorized erf, 1% of its
own), and every softmax, SiLU and norm is several passes where PyTorch makes one.
"""

from __future__ import annotations

import numpy as np
import pytest

from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer

torch = pytest.importorskip("torch", reason="the benchmarks compare with PyTorch (extra `bench`)")
from bench import torch_twin  # noqa: E402  (imports torch)
from bench.timing import interleaved_medians  # noqa: E402

MID_SIZE = TransformerConfig.preset("gpt2-style").replace(
    vocab_size=512, d_model=256, n_heads=8, d_mlp=1024, n_layers=4, n_ctx=64, dtype="float32"
)
WORKLOADS = {
    "seed": (TransformerConfig.preset("seed-minigpt"), 1000, 4),
    "mid-size": (MID_SIZE, 32, 64),
    "gpt2-small": (TransformerConfig.preset("gpt2-small"), 8, 128),
    "pythia-70m": (TransformerConfig.preset("pythia-70m"), 8, 128),
    "llama2c-stories15m": (TransformerConfig.preset("llama2c-stories15m"), 8, 128),
}
# The pretrained-size presets and their timed rounds per side (the faster, the more rounds).
PRETRAINED_SIZES = {"gpt2-small": 5, "pythia-70m": 7, "llama2c-stories15m": 11}
TARGETS = {
    ("forward", "seed"): 1.0,
    ("forward", "mid-size"): 1.2,
    ("train", "mid-size"): 1.5,
    ("forward logits", "gpt2-small"): 1.1,
    ("forward resid_post", "gpt2-small"): 1.1,
    ("forward logits", "pythia-70m"): 1.0,
    ("forward resid_post", "pythia-70m"): 1.0,
    ("forward logits", "llama2c-stories15m"): 1.0,
    ("forward resid_post", "llama2c-stories15m"): 1.0,
}


def _setup(workload: str):
    cfg, batch, n_pos = WORKLOADS[workload]
    model = Transformer(cfg, seed=0)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, n_pos))
    return cfg, model, tokens


def _check_target(benchmark, kind: str, workload: str, ours, theirs, rounds: int) -> None:
    benchmark.pedantic(ours, rounds=rounds, warmup_rounds=1)
    ours_s, theirs_s = interleaved_medians(ours, theirs, rounds)
    ratio = ours_s / theirs_s
    target = TARGETS[(kind, workload)]
    benchmark.extra_info.update(numpy_median_s=ours_s, torch_median_s=theirs_s, ratio=ratio)
    print(f"\n{kind} {workload}: numpy {ours_s * 1e3:.2f} ms, torch {theirs_s * 1e3:.2f} ms, "
          f"ratio {ratio:.2f} (target <= {target})")  # fmt: skip
    assert ratio <= target, f"{kind} on {workload}: {ratio:.2f}x PyTorch, target {target}x"


@pytest.mark.parametrize("workload", ["seed", "mid-size"])
def test_forward_with_full_cache(benchmark, workload):
    cfg, model, tokens = _setup(workload)
    params, torch_tokens = torch_twin.torch_params(model.params), torch.tensor(tokens)

    def torch_forward():
        with torch.no_grad():
            return torch_twin.forward(cfg, params, torch_tokens)

    np.testing.assert_allclose(torch_forward().numpy(), model(tokens), rtol=1e-3, atol=1e-4)
    rounds = 100 if workload == "seed" else 20
    _check_target(benchmark, "forward", workload, lambda: model.run_with_cache(tokens),
                  torch_forward, rounds)  # fmt: skip


def test_training_step(benchmark):
    cfg, model, tokens = _setup("mid-size")
    targets = np.roll(tokens, -1, axis=1)
    params = torch_twin.torch_params(model.params, requires_grad=True)
    torch_tokens, torch_targets = torch.tensor(tokens), torch.tensor(targets)

    def torch_step():
        for tensor in params.values():
            tensor.grad = None
        torch_twin.loss(cfg, params, torch_tokens, torch_targets).backward()

    _check_target(benchmark, "train", "mid-size", lambda: model.loss_and_grads(tokens, targets),
                  torch_step, 10)  # fmt: skip


@pytest.fixture(scope="module", params=list(PRETRAINED_SIZES))
def pretrained_size(request):
    """A pretrained-size preset on both sides, built once per module (gpt2-small, 163M float32
    parameters: 10 s; pythia-70m and llama2c-stories15m: a few seconds)."""
    cfg, model, tokens = _setup(request.param)
    params, torch_tokens = torch_twin.torch_params(model.params), torch.tensor(tokens)
    return request.param, cfg, model, tokens, params, torch_tokens


@pytest.mark.parametrize("output", ["logits", "resid_post"])
def test_pretrained_size_forward(benchmark, pretrained_size, output):
    """The logits alone, or with every block's hook_resid_post cached (and returned by both)."""
    workload, cfg, model, tokens, params, torch_tokens = pretrained_size
    resid_posts = [f"blocks.{layer}.hook_resid_post" for layer in range(cfg.n_layers)]

    def ours():
        if output == "logits":
            return model(tokens), []
        logits, cache = model.run_with_cache(tokens, names_filter=resid_posts)
        return logits, [cache[name] for name in resid_posts]

    def theirs():
        kept = [] if output == "resid_post" else None
        with torch.no_grad():
            return torch_twin.forward(cfg, params, torch_tokens, kept), kept or []

    (logits, kept), (torch_logits, torch_kept) = ours(), theirs()
    assert len(kept) == len(torch_kept) == (0 if output == "logits" else cfg.n_layers)
    for mine, twin in [(logits, torch_logits), *zip(kept, torch_kept, strict=True)]:
        scale = np.abs(mine).max()
        np.testing.assert_allclose(twin.numpy(), mine, rtol=1e-3, atol=1e-4 * scale)
    rounds = PRETRAINED_SIZES[workload]
    _check_target(benchmark, f"forward {output}", workload, ours, theirs, rounds)
