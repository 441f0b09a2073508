"""Write fixtures/golden/gpt2/: tiny random GPT-2s made with HF transformers, and their outputs.

    python -m tests.model.make_gpt2_golden      (from the repository root, with the bench extra)

Run once, by hand: the test suite never runs it (it needs torch and transformers), it reads what
this wrote (tests/model/test_pretrained.py). One folder per GELU flavour and key layout, each
holding config.json and model.safetensors (float32 weights, as checkpoints are) and expected.npz:
`tokens` [3, 12], and what HF computes from those weights in float64, `logits` [3, 12, 32] and
`hidden_states` [3, 3, 12, 12] (each block's input, then the final LayerNorm's output).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
import transformers

from tests.model import hf_gpt2

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden" / "gpt2"
# Each variant: its own seed, and options away from HF's defaults where the layout allows.
VARIANTS = {
    "gelu_new-save_pretrained": (1, {"activation_function": "gelu_new"}),
    "gelu_new-hub": (2, {"activation_function": "gelu_new", "layer_norm_epsilon": 1e-3}),
    "gelu-save_pretrained": (3, {"activation_function": "gelu", "n_inner": 20}),
    "gelu-hub": (4, {"activation_function": "gelu"}),
}


def main() -> None:
    shutil.rmtree(GOLDEN, ignore_errors=True)
    for name, (seed, config) in VARIANTS.items():
        folder = GOLDEN / name
        model = hf_gpt2.random_gpt2(seed, **config)
        hf_gpt2.save(model, folder, layout=name.split("-", 1)[1])
        tokens = np.random.default_rng(seed).integers(0, model.config.vocab_size, (3, 12))
        logits, hidden_states = hf_gpt2.outputs(model, tokens, torch.float64)
        np.savez(folder / "expected.npz", tokens=tokens, logits=logits, hidden_states=hidden_states)
    print(f"wrote {GOLDEN} with torch {torch.__version__}, transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
