"""TransformerConfig: every architectural choice of the model, validated, plus named presets."""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any

ATTENTIONS = ("standard", "parameter-free")
NORMS = ("pre", "post")
# LayerNorm (subtract the mean, divide by the standard deviation; gain and bias) or RMSNorm
# (divide by the root mean square; gain only), as TransformerLens's "LN" and "RMS".
NORMALIZATIONS = ("layernorm", "rmsnorm")
# Activation names as TransformerLens, HF and PyTorch use them: "gelu" is the exact GELU,
# x Φ(x) with the erf; "gelu_new" GPT-2's tanh approximation (HF's "gelu_new"); "silu" x σ(x)
# (Llama's, in its gated MLP).
ACT_FNS = ("relu", "gelu", "gelu_new", "silu")
# "rotary": no position embedding; queries and keys are rotated by their position in each head's
# first `rotary_dim` dimensions, GPT-NeoX's and HF Llama's rotate-half layout.
POS_EMBEDS = ("learned", "sinusoidal", "rotary")
# How initial weights are drawn (before `init_scale` multiplies them all):
#   gpt2:    every weight N(0, 0.02²), biases 0, LayerNorm gain 1 and bias 0;
#   gpt2-residual-scaled: GPT-2's own init, as HF's GPT2PreTrainedModel._init_weights does it:
#            `gpt2`, except that the projections into the residual stream (attention W_O,
#            HF's attn.c_proj, and MLP W_out, HF's mlp.c_proj) are N(0, (0.02 / sqrt(2 n_layers))²)
#            (the GPT-2 paper's 1/sqrt(N) for N = 2 n_layers residual layers). Same draws in the
#            same order as `gpt2`: W_O and W_out are `gpt2`'s divided by sqrt(2 n_layers);
#   pytorch: PyTorch's defaults: embeddings N(0, 1), each linear weight and bias
#            U(-1/sqrt(fan_in), 1/sqrt(fan_in)), LayerNorm gain 1 and bias 0;
#   seed:    the seed's MiniGPT: embeddings, positions and unembed N(0, 0.1²),
#            MLP weights He-normal N(0, 2/fan_in), biases 0;
#   pythia:  GPT-NeoX's, as Pythia's configs name it (its `step0` checkpoints hold this draw):
#            `small_init` N(0, 2 / (5 d)) for the embedding, W_Q/W_K/W_V, W_in and the
#            unembedding; `wang_init` N(0, (2 / (n_layers sqrt(d)))²) for W_O and W_out; biases 0;
#            norm gains 1 and biases 0 (see transformer._draw for the source);
#   llama2c: Karpathy's llama2.c (model.py, `Transformer._init_weights`), the init of its
#            TinyStories Llamas: every weight N(0, 0.02²), except the up projection (its `w3`,
#            our W_in of a gated MLP) and W_O (its `wo`), N(0, (0.02 / sqrt(2 n_layers))²);
#            biases 0, RMSNorm gains 1; the unembedding tied to the embedding (W_U = W_Eᵀ).
INITS = ("gpt2", "gpt2-residual-scaled", "pytorch", "seed", "pythia", "llama2c")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_mlp: int
    n_ctx: int
    attention: str = "standard"
    norm: str = "pre"
    ln_affine: bool = True
    final_ln: bool = True
    act_fn: str = "gelu_new"  # GPT-2's, as the default init is GPT-2's
    pos_embed: str = "learned"
    unembed_bias: bool = True
    causal: bool = True
    normalization: str = "layernorm"
    rotary_dim: int | None = None  # pos_embed "rotary": dimensions rotated per head (None: d_head)
    rotary_base: float = 10000.0  # pos_embed "rotary": HF's rope_theta / rotary_emb_base
    parallel_attn_mlp: bool = False  # attention and MLP both read resid_pre (GPT-NeoX's, GPT-J's)
    gated_mlp: bool = False  # act(x W_gate) * (x W_in), then W_out (Llama's SwiGLU with "silu")
    n_key_value_heads: int | None = None  # grouped-query attention; None: n_heads (MHA)
    attn_bias: bool = True  # b_Q, b_K, b_V, b_O
    mlp_bias: bool = True  # b_in, b_out (and b_gate when gated)
    init: str = "gpt2"
    init_scale: float = 1.0
    dtype: str = "float64"
    ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_mlp", "n_ctx"):
            _check_positive_int(name, getattr(self, name))
        for name, allowed in (
            ("attention", ATTENTIONS),
            ("norm", NORMS),
            ("act_fn", ACT_FNS),
            ("pos_embed", POS_EMBEDS),
            ("normalization", NORMALIZATIONS),
            ("init", INITS),
            ("dtype", DTYPES),
        ):
            _check_choice(name, getattr(self, name), allowed)
        for name in ("ln_affine", "final_ln", "unembed_bias", "causal", "parallel_attn_mlp",
                     "gated_mlp", "attn_bias", "mlp_bias"):  # fmt: skip
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        _check_number("init_scale", self.init_scale, minimum=0.0, strictly=False)
        _check_number("ln_eps", self.ln_eps, minimum=0.0, strictly=True)
        _check_number("rotary_base", self.rotary_base, minimum=1.0, strictly=True)
        if self.d_model % self.n_heads:
            raise ValueError(
                f"n_heads={self.n_heads} must divide d_model={self.d_model} "
                f"(allowed: {_divisors(self.d_model)})"
            )
        if self.attention == "parameter-free" and self.n_heads != 1:
            raise ValueError(
                f"n_heads must be 1 for attention='parameter-free', got {self.n_heads}"
            )
        self._check_heads()
        self._check_rotary()
        if self.parallel_attn_mlp and self.norm != "pre":
            raise ValueError("parallel_attn_mlp needs norm='pre' (each sublayer reads resid_pre)")

    def _check_heads(self) -> None:
        if self.n_key_value_heads is None:
            return
        _check_positive_int("n_key_value_heads", self.n_key_value_heads)
        if self.attention != "standard":
            raise ValueError("n_key_value_heads needs attention='standard'")
        if self.n_heads % self.n_key_value_heads:
            raise ValueError(
                f"n_key_value_heads={self.n_key_value_heads} must divide n_heads={self.n_heads} "
                f"(allowed: {_divisors(self.n_heads)})"
            )

    def _check_rotary(self) -> None:
        if self.rotary_dim is not None:
            if self.pos_embed != "rotary":
                raise ValueError(f"rotary_dim needs pos_embed='rotary', got {self.pos_embed!r}")
            _check_positive_int("rotary_dim", self.rotary_dim)
        if self.pos_embed != "rotary":
            return
        if self.attention != "standard":
            raise ValueError("pos_embed='rotary' needs attention='standard' (it rotates q and k)")
        if self.rotary_dims % 2 or self.rotary_dims > self.d_head:
            given = "" if self.rotary_dim else " (rotary_dim None: d_head)"
            raise ValueError(
                f"rotary_dim must be even and at most d_head={self.d_head}, got "
                f"{self.rotary_dims}{given}"
            )

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_kv_heads(self) -> int:
        """Heads of keys and values: n_key_value_heads, or n_heads without grouped queries."""
        return self.n_heads if self.n_key_value_heads is None else self.n_key_value_heads

    @property
    def rotary_dims(self) -> int:
        """Dimensions of each head that rotary rotates: 0 without rotary."""
        if self.pos_embed != "rotary":
            return 0
        return self.d_head if self.rotary_dim is None else self.rotary_dim

    @classmethod
    def preset(cls, name: str) -> TransformerConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
        return PRESETS[name]

    def replace(self, **changes: Any) -> TransformerConfig:
        unknown = [key for key in changes if key not in _field_names()]
        if unknown:
            raise ValueError(_unknown_field_message(unknown[0]))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_overrides(assignments: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Typed config changes from `KEY=VALUE` strings: `init_scale=0` -> {"init_scale": 0.0}."""
    changes: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {assignment!r}")
        if key not in _field_names():
            raise ValueError(_unknown_field_message(key))
        changes[key] = _parse_value(key, text)
    return changes


def _parse_value(key: str, text: str) -> Any:
    kind, optional = _FIELD_TYPES[key].removesuffix(" | None"), _FIELD_TYPES[key].endswith("None")
    if optional and text.lower() == "none":
        return None
    if kind == "bool":
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{key} must be true or false, got {text!r}")
        return lowered in ("true", "1", "yes")
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{key} must be an integer, got {text!r}") from None
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{key} must be a number, got {text!r}") from None
    return text


def _field_names() -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(TransformerConfig))


_FIELD_TYPES = {field.name: str(field.type) for field in dataclasses.fields(TransformerConfig)}


def _unknown_field_message(key: str) -> str:
    near = difflib.get_close_matches(key, _field_names(), n=3)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    return f"unknown config field {key!r}{hint} (fields: {', '.join(_field_names())})"


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _check_number(name: str, value: Any, minimum: float, strictly: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    too_small = value <= minimum if strictly else value < minimum
    if not math.isfinite(value) or too_small:
        bound = f"> {minimum}" if strictly else f">= {minimum}"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


PRESETS: dict[str, TransformerConfig] = {
    # The seed project's MiniGPT (mechinterp.py): attention is softmax(x xᵀ) x, no weights.
    "seed-minigpt": TransformerConfig(
        vocab_size=10, d_model=32, n_layers=2, n_heads=1, d_mlp=128, n_ctx=512,
        attention="parameter-free", norm="post", ln_affine=False, final_ln=False,
        act_fn="relu", pos_embed="learned", unembed_bias=False, init="seed",
    ),
    # The seed notebook's PyTorch TinyTransformer; the notebook had no mask (causal=False).
    "tiny-mha": TransformerConfig(
        vocab_size=10, d_model=16, n_layers=2, n_heads=2, d_mlp=64, n_ctx=8,
        attention="standard", norm="post", ln_affine=True, final_ln=False,
        act_fn="relu", pos_embed="learned", unembed_bias=True, init="pytorch",
    ),
    # GPT-2's architecture at toy size; its init draws every weight N(0, 0.02²), unscaled.
    "gpt2-style": TransformerConfig(
        vocab_size=10, d_model=64, n_layers=2, n_heads=4, d_mlp=256, n_ctx=16,
        attention="standard", norm="pre", ln_affine=True, final_ln=True,
        act_fn="gelu_new", pos_embed="learned", unembed_bias=True, init="gpt2",
    ),
    # TransformerLens's `gpt2` (GPT-2 small, 124M parameters plus an untied unembedding) with
    # GPT-2's own init. float32, as TransformerLens and HF load it: in float64 its 163M
    # parameters would take 1.3 GB. `Transformer.from_pretrained` reads the real weights.
    "gpt2-small": TransformerConfig(
        vocab_size=50257, d_model=768, n_layers=12, n_heads=12, d_mlp=3072, n_ctx=1024,
        attention="standard", norm="pre", ln_affine=True, final_ln=True,
        act_fn="gelu_new", pos_embed="learned", unembed_bias=False,
        init="gpt2-residual-scaled", dtype="float32",
    ),
    # EleutherAI's Pythia-70M (GPT-NeoX; its HF config.json): rotary on a quarter of each head
    # (rotary_pct 0.25), attention and MLP in parallel, exact GELU, an untied unembedding, and
    # the init its `step0` checkpoint holds (init "pythia"). Its 70M parameters in float32.
    "pythia-70m": TransformerConfig(
        vocab_size=50304, d_model=512, n_layers=6, n_heads=8, d_mlp=2048, n_ctx=2048,
        attention="standard", norm="pre", ln_affine=True, final_ln=True,
        act_fn="gelu", pos_embed="rotary", rotary_dim=16, rotary_base=10000.0,
        parallel_attn_mlp=True, unembed_bias=False, init="pythia", dtype="float32",
    ),
    # Karpathy's llama2.c stories15M (karpathy/tinyllamas, trained on TinyStories), the smallest
    # public Llama of a published training recipe: RMSNorm, SwiGLU (hidden 768), rotary on all
    # of each 48-wide head, no biases, the unembedding tied to the embedding, llama2.c's init.
    # (SmolLM2-135M, 30 blocks of 576, would cost about 5x pythia-70m per claim here.)
    "llama2c-stories15m": TransformerConfig(
        vocab_size=32000, d_model=288, n_layers=6, n_heads=6, d_mlp=768, n_ctx=256,
        attention="standard", norm="pre", normalization="rmsnorm", ln_affine=True,
        final_ln=True, act_fn="silu", gated_mlp=True, pos_embed="rotary", rotary_base=10000.0,
        attn_bias=False, mlp_bias=False, unembed_bias=False, init="llama2c", dtype="float32",
    ),
}  # fmt: skip
