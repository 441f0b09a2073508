"""Write fixtures/golden/gpt_neox/ and fixtures/golden/llama/: tiny random GPT-NeoX and Llama
models made with HF transformers, and their outputs.

    python -m tests.model.make_rotary_golden [FAMILY/VARIANT ...]   (from the repository root,
                                                                    with the bench extra;
                                                                    default: every variant)

Run once, by hand: the test suite never runs it (it needs torch and transformers), it reads what
this wrote (tests/model/test_pretrained_rotary.py). One folder per variant, holding what
save_pretrained writes (config.json, model.safetensors or shards and their index) in the
variant's weight dtype, or the hub's older layout (tests/model/hf_rotary.save_as_hub), and
expected.npz: `tokens` [3, 12], and what HF computes in float64 (hf_rotary.float64_exact) from
the model it reads back from the folder: `logits` [3, 12, 40] and `hidden_states`
[3, 3, 12, d_model] (each block's input, then the final norm's output).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import transformers

from tests.model import hf_rotary

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
# family/variant: (seed, HF config options, weight dtype, how it is written)
VARIANTS = {
    "gpt_neox/parallel-partial": (1, {"rotary_pct": 0.5, "rotary_emb_base": 500.0}, torch.float32,
                                  "save_pretrained"),
    "gpt_neox/sequential-full": (2, {"use_parallel_residual": False, "rotary_pct": 1.0,
                                     "hidden_act": "gelu_new", "layer_norm_eps": 1e-3},
                                 torch.float32, "save_pretrained"),
    "gpt_neox/pythia-hub-float16": (3, {"rotary_pct": 0.25}, torch.float16, "hub"),
    "gpt_neox/tied-nobias-relu-bfloat16": (4, {"tie_word_embeddings": True,
                                               "attention_bias": False, "hidden_act": "relu",
                                               "rotary_pct": 0.5}, torch.bfloat16,
                                           "save_pretrained"),
    "gpt_neox/sequential-silu-sharded": (5, {"use_parallel_residual": False, "rotary_pct": 0.5,
                                             "hidden_act": "silu"}, torch.float32, "sharded"),
    "llama/gqa": (11, {"rope_theta": 500.0, "rms_norm_eps": 1e-5}, torch.float32,
                  "save_pretrained"),
    "llama/mha-tied-biases": (12, {"num_key_value_heads": 4, "attention_bias": True,
                                   "mlp_bias": True, "tie_word_embeddings": True},
                              torch.float32, "save_pretrained"),
    "llama/mqa-gelu-bfloat16": (13, {"num_key_value_heads": 1, "hidden_act": "gelu"},
                                torch.bfloat16, "save_pretrained"),
    "llama/float16-sharded": (14, {}, torch.float16, "sharded"),
    "llama/hub": (15, {"rope_theta": 50.0}, torch.float32, "hub"),
}  # fmt: skip


def write(name: str) -> None:
    seed, config, dtype, layout = VARIANTS[name]
    family = name.split("/")[0]
    folder = GOLDEN / name
    shutil.rmtree(folder, ignore_errors=True)
    model = hf_rotary.random_model(family, seed, **config)
    if layout == "hub":
        hf_rotary.save_as_hub(model, folder, dtype)
    else:
        hf_rotary.save(model, folder, dtype, sharded=layout == "sharded")
    model = hf_rotary.load(folder, torch.float64)  # what HF reads from the files
    tokens = np.random.default_rng(seed).integers(0, model.config.vocab_size,
                                                  (3, hf_rotary.N_TOKENS))  # fmt: skip
    logits, hidden_states = hf_rotary.outputs(model, tokens, torch.float64)
    np.savez(folder / "expected.npz", tokens=tokens, logits=logits, hidden_states=hidden_states)


def main(names: list[str]) -> None:
    for name in names or VARIANTS:
        write(name)
    print(f"wrote {GOLDEN} with torch {torch.__version__}, transformers {transformers.__version__}")


if __name__ == "__main__":
    main(sys.argv[1:])
