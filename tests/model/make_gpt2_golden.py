"""Write fixtures/golden/gpt2/: tiny random GPT-2s made with HF transformers, and their outputs.

    python -m tests.model.make_gpt2_golden [VARIANT ...]   (from the repository root, with the
                                                            bench extra; default: every variant)

Run once, by hand: the test suite never runs it (it needs torch and transformers), it reads what
this wrote (tests/model/test_pretrained.py). One folder per variant (activation function and
other options, then the key layout), each holding config.json and model.safetensors (float32
weights, as checkpoints are) and expected.npz: `tokens` [3, 12], and what HF computes in float64
from the model it reads back from the folder, `logits` [3, 12, 32] and `hidden_states`
[3, 3, 12, 12] (each block's input, then the final LayerNorm's output). A variant whose
config.json states the sizes only (SIZES_ONLY) holds hf_config.json too: the config HF builds
from it, every absent option at HF's default.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import transformers

from tests.model import hf_gpt2

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden" / "gpt2"
# Each variant: its own seed, and options away from HF's defaults where the layout allows; its
# name ends in its key layout.
VARIANTS = {
    "gelu_new-save_pretrained": (1, {"activation_function": "gelu_new"}),
    "gelu_new-hub": (2, {"activation_function": "gelu_new", "layer_norm_epsilon": 1e-3}),
    "gelu-save_pretrained": (3, {"activation_function": "gelu", "n_inner": 20}),
    "gelu-hub": (4, {"activation_function": "gelu"}),
    "defaults-hub": (5, {}),
    "relu-untied-save_pretrained": (6, {"activation_function": "relu",
                                        "tie_word_embeddings": False}),
    "gelu_pytorch_tanh-untied-hub": (7, {"activation_function": "gelu_pytorch_tanh",
                                         "tie_word_embeddings": False,
                                         "reorder_and_upcast_attn": True}),
}  # fmt: skip
SIZES_ONLY = ("defaults-hub",)  # config.json states the sizes only: every option at its default


def write(name: str) -> None:
    seed, config = VARIANTS[name]
    folder = GOLDEN / name
    shutil.rmtree(folder, ignore_errors=True)
    hf_gpt2.save(hf_gpt2.random_gpt2(seed, **config), folder, layout=name.rsplit("-", 1)[1])
    if name in SIZES_ONLY:
        hf_gpt2.state_only_sizes(folder)
    model = hf_gpt2.load(folder)  # what HF reads from the files, absent keys at its defaults
    if name in SIZES_ONLY:
        (folder / "hf_config.json").write_text(model.config.to_json_string(use_diff=False))
    tokens = np.random.default_rng(seed).integers(0, model.config.vocab_size, (3, 12))
    logits, hidden_states = hf_gpt2.outputs(model, tokens, torch.float64)
    np.savez(folder / "expected.npz", tokens=tokens, logits=logits, hidden_states=hidden_states)


def main(names: list[str]) -> None:
    for name in names or VARIANTS:
        write(name)
    print(f"wrote {GOLDEN} with torch {torch.__version__}, transformers {transformers.__version__}")


if __name__ == "__main__":
    main(sys.argv[1:])
