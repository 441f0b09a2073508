"""Tiny random GPT-NeoX and Llama models made with HF transformers, written to disk and run: the
other side of the comparisons of `Transformer.from_pretrained` and `save_pretrained` on those
families (tests/model/test_pretrained_rotary_live.py) and the maker of their golden files
(tests/model/make_rotary_golden.py).

HF computes two things in float32 whatever the model's dtype (for half precision's sake): the
rotary angles (`inv_freq`, cos and sin) and Llama's RMSNorm. In float64 that would leave errors
of 1e-7; `float64_exact()` runs those two lines in float64 instead, the same formulas. It checks
itself: its inv_freq rounds to HF's own, and a patched float64 model agrees with HF's unpatched
float32 one to float32 rounding (the live tests).

Imports torch and transformers (the `bench` extra): nothing else in the suite imports this.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import (
    AutoModelForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)
from transformers.models.gpt_neox import modeling_gpt_neox
from transformers.models.llama import modeling_llama

# Sizes nothing else has, so a mix-up of axes cannot pass: GPT-NeoX d_head 8 with 4 heads (a
# per-block Q|K|V reading has the shapes of the per-head one), Llama d_head 6 with 4 query heads
# on 2 key-value heads; MLP widths that are no multiple of d_model.
TINY = {
    "gpt_neox": {"vocab_size": 40, "hidden_size": 32, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "intermediate_size": 20,
                 "max_position_embeddings": 16},
    "llama": {"vocab_size": 40, "hidden_size": 24, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 20,
              "max_position_embeddings": 16},
}  # fmt: skip
CLASSES = {
    "gpt_neox": (GPTNeoXConfig, GPTNeoXForCausalLM),
    "llama": (LlamaConfig, LlamaForCausalLM),
}
N_TOKENS = 12
# The keys of the hub's older config.json files besides the rotary ones (Pythia's; Llamas of
# transformers 4), each as HF writes it.
_COMMON_KEYS = ("bos_token_id", "eos_token_id", "hidden_act", "hidden_size", "initializer_range",
                "intermediate_size", "max_position_embeddings", "model_type",
                "num_attention_heads", "num_hidden_layers", "tie_word_embeddings", "use_cache",
                "vocab_size")  # fmt: skip
HUB_KEYS = {
    "gpt_neox": (*_COMMON_KEYS, "layer_norm_eps", "use_parallel_residual"),
    "llama": (*_COMMON_KEYS, "num_key_value_heads", "pretraining_tp", "rms_norm_eps",
              "attention_bias", "mlp_bias"),
}  # fmt: skip
SHARD_SIZE = "8KB"  # small enough that save_pretrained writes several shards of these models


def random_model(family: str, seed: int, **config):
    """A model of `family` with every parameter redrawn: N(0, 0.3²), norm gains 1 + N(0, 0.3²).
    HF's own init zeroes the biases and sets the gains to 1, which would hide a wrong mapping."""
    torch.manual_seed(seed)
    config_class, model_class = CLASSES[family]
    settings = {**TINY[family], "bos_token_id": 0, "eos_token_id": 0, **config}
    model = model_class(config_class(**settings))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.normal_(0.0, 0.3)
            if "norm" in name and name.endswith("weight"):
                parameter.add_(1.0)
    return model.eval()


def save(model, folder: Path, dtype: torch.dtype = torch.float32, sharded: bool = False) -> None:
    """save_pretrained's folder, the weights in `dtype`, in one file or in shards."""
    model = model.to(dtype)
    if sharded:
        model.save_pretrained(folder, max_shard_size=SHARD_SIZE)
    else:
        model.save_pretrained(folder)
    model.to(torch.float32)


def save_as_hub(model, folder: Path, dtype: torch.dtype = torch.float16) -> None:
    """As the hub's older checkpoints are (Pythia's; Llamas written by transformers 4): config.json
    states the rotary options by their old keys (GPT-NeoX's rotary_pct and rotary_emb_base,
    Llama's rope_theta) and no rope_parameters; the weights in `dtype` hold each block's
    buffers, `rotary_emb.inv_freq` and GPT-NeoX's attention masks `attention.bias` (booleans)
    and `attention.masked_bias`."""
    assert dtype != torch.bfloat16, "NumPy writes no bfloat16: use save(model, folder, dtype)"
    folder.mkdir(parents=True, exist_ok=True)
    full = json.loads(model.config.to_json_string(use_diff=False))
    neox, rope = full["model_type"] == "gpt_neox", full["rope_parameters"]
    config = {key: full[key] for key in HUB_KEYS[full["model_type"]]}
    if neox:
        config.update(rotary_pct=rope["partial_rotary_factor"], rotary_emb_base=rope["rope_theta"])
        if not full["attention_bias"]:  # Pythia's configs predate the key (HF's default: true)
            config["attention_bias"] = False
    else:
        config.update(rope_theta=rope["rope_theta"], rope_scaling=None)
    config.update(architectures=[type(model).__name__], transformers_version="4.24.0",
                  torch_dtype=str(dtype).removeprefix("torch."))  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tied = model.config.tie_word_embeddings
    head = "embed_out.weight" if neox else "lm_head.weight"  # Pythia's name of its head
    state = {
        (head if name == "lm_head.weight" else name): value.detach().to(dtype).numpy()
        for name, value in model.state_dict().items()
        if not (tied and name == "lm_head.weight")
    }
    blocks = "gpt_neox.layers" if neox else "model.layers"
    inv_freq = _inv_freq(model).to(torch.float32).numpy()
    n_pos = model.config.max_position_embeddings
    for layer in range(model.config.num_hidden_layers):
        attention = f"{blocks}.{layer}.{'attention' if neox else 'self_attn'}"
        state[f"{attention}.rotary_emb.inv_freq"] = inv_freq
        if neox:
            state[f"{attention}.bias"] = np.tril(np.ones((n_pos, n_pos), bool))[None, None]
            state[f"{attention}.masked_bias"] = np.array(-1e9, np.float32)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _inv_freq(model) -> torch.Tensor:
    base = model.gpt_neox if model.config.model_type == "gpt_neox" else model.model
    return base.rotary_emb.inv_freq


def load(folder: Path, dtype: torch.dtype = torch.float32):
    """The model HF reads from folder (any family: AutoModelForCausalLM), in `dtype` (half-
    precision weights convert exactly), its attention by PyTorch's SDPA (HF's "eager" attention
    takes its softmax in float32)."""
    return AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, attn_implementation="sdpa"
    ).eval()


def outputs(model, tokens: np.ndarray, dtype: torch.dtype):
    """(logits [B,T,V], hidden states [n_layers + 1, B, T, d]) computed by HF in `dtype` (the
    model is converted in place; float64 under float64_exact). The hidden states are each
    block's input, then the final norm's output."""
    model = model.to(dtype)
    with torch.no_grad(), float64_exact():
        result = model(torch.tensor(tokens), output_hidden_states=True)
    hidden = np.stack([state.numpy() for state in result.hidden_states])
    return result.logits.numpy(), hidden


@contextlib.contextmanager
def float64_exact():
    """HF's rotary embedding and RMSNorm computing in float64 on float64 inputs (HF's own lines
    cast to float32 there); unchanged on other dtypes."""
    patches = [(modeling_llama.LlamaRMSNorm, _rms_norm_forward),
               (modeling_llama.LlamaRotaryEmbedding, _rotary_forward),
               (modeling_gpt_neox.GPTNeoXRotaryEmbedding, _rotary_forward)]  # fmt: skip
    originals = [(cls, cls.forward) for cls, _ in patches]
    try:
        for cls, forward in patches:
            cls.forward = _unless_float64(cls.forward, forward)
        yield
    finally:
        for cls, forward in originals:
            cls.forward = forward


def _unless_float64(original, patched):
    def forward(self, x, *args, **kwargs):
        return (patched if x.dtype == torch.float64 else original)(self, x, *args, **kwargs)

    return forward


def _rms_norm_forward(self, hidden_states):
    """LlamaRMSNorm.forward without its cast to float32."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def _rotary_forward(self, x, position_ids):
    """The default rotary embedding's forward, inv_freq and angles in float64: inv_freq as HF's
    compute_default_rope_parameters has it, base ** -(arange(0, dim, 2) / dim), on the rotated
    dim = 2 len(inv_freq)."""
    dim = 2 * self.inv_freq.numel()
    base = self.config.rope_parameters["rope_theta"]
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    assert torch.allclose(inv_freq.float(), self.inv_freq.float(), rtol=1e-6, atol=0)
    freqs = position_ids[..., None].to(torch.float64) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * self.attention_scaling, emb.sin() * self.attention_scaling
