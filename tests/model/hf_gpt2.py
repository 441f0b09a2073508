"""Tiny random GPT-2s made with HF transformers, written to disk and run: the other side of the
comparisons of `Transformer.from_pretrained` (tests/model/test_pretrained_live.py) and the maker
of the golden files (tests/model/make_gpt2_golden.py).

Imports torch and transformers (the `bench` extra): nothing else in the suite imports this.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import GPT2Config, GPT2LMHeadModel

# Sizes nothing else has (d_head 4, n_inner != 4 d), so a mix-up of axes cannot pass.
TINY = {"vocab_size": 32, "n_positions": 12, "n_embd": 12, "n_layer": 2, "n_head": 3}
SIZES = tuple(TINY)  # the keys our loader needs stated (HF would default them to GPT-2 small's)
LAYOUTS = ("save_pretrained", "hub")


def random_gpt2(seed: int, **config) -> GPT2LMHeadModel:
    """A GPT2LMHeadModel with every parameter redrawn: N(0, 0.3²), LayerNorm gains 1 + N(0, 0.3²).
    HF's own init zeroes the biases and sets the gains to 1, which would hide a wrong mapping."""
    torch.manual_seed(seed)
    settings = {**TINY, "bos_token_id": 0, "eos_token_id": 0, **config}
    model = GPT2LMHeadModel(GPT2Config(**settings))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.normal_(0.0, 0.3)
            if ".ln_" in name and name.endswith("weight"):
                parameter.add_(1.0)
    return model.eval()


def save(model: GPT2LMHeadModel, folder: Path, layout: str) -> None:
    """Write config.json and model.safetensors. "save_pretrained": as HF writes them; "hub": as
    the hub's original gpt2 files hold them, keys without `transformer.`, no tied lm_head, and
    each block's attention-mask buffers `attn.bias` and `attn.masked_bias`."""
    if layout == "save_pretrained":
        model.save_pretrained(folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(folder / "config.json", use_diff=False)
    tied = model.config.tie_word_embeddings
    state = {
        name.removeprefix("transformer."): value.detach().numpy().copy()
        for name, value in model.state_dict().items()
        if not (tied and name == "lm_head.weight")
    }
    n_pos = model.config.n_positions
    for layer in range(model.config.n_layer):
        state[f"h.{layer}.attn.bias"] = np.tril(np.ones((n_pos, n_pos), np.float32))[None, None]
        state[f"h.{layer}.attn.masked_bias"] = np.array(-1e4, np.float32)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def state_only_sizes(folder: Path) -> None:
    """Rewrite folder's config.json with the model type and the sizes only, every option absent
    (as hand-written and early hub configs have it): HF reads the rest as GPT2Config's defaults."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({key: config[key] for key in ("model_type", *SIZES)}, indent=2))


def load(folder: Path) -> GPT2LMHeadModel:
    """The model HF reads from folder."""
    return GPT2LMHeadModel.from_pretrained(folder).eval()


def outputs(model: GPT2LMHeadModel, tokens: np.ndarray, dtype: torch.dtype):
    """(logits [B,T,V], hidden states [n_layer + 1, B, T, d]) computed by HF in `dtype` (the
    model is converted in place). The hidden states are each block's input, then the final
    LayerNorm's output."""
    model = model.to(dtype)
    with torch.no_grad():
        result = model(torch.tensor(tokens), output_hidden_states=True)
    hidden = np.stack([state.numpy() for state in result.hidden_states])
    return result.logits.numpy(), hidden
