"""TransformerConfig validation, presets, overrides; initialisation; token and parameter checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mechclaims.model.config import TransformerConfig, parse_overrides
from mechclaims.model.transformer import Transformer, param_shapes
from tests.model.strategies import configs, generic_params, seeds

SMALL = {
    "vocab_size": 5,
    "d_model": 8,
    "n_layers": 2,
    "n_heads": 2,
    "d_mlp": 12,
    "n_ctx": 6,
}
PRESET_NAMES = ("seed-minigpt", "tiny-mha", "gpt2-style", "gpt2-small", "pythia-70m",
                "llama2c-stories15m")  # fmt: skip


def small(**changes) -> TransformerConfig:
    return TransformerConfig(**{**SMALL, **changes})


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vocab_size", 0),
        ("vocab_size", -3),
        ("d_model", 0),
        ("n_layers", 0),
        ("n_heads", 0),
        ("n_heads", -2),
        ("d_mlp", 0),
        ("n_ctx", 0),
        ("n_ctx", -1),
        ("n_heads", 3),  # does not divide d_model=8
        ("attention", "linear"),
        ("attention", "Standard"),
        ("norm", "mid"),
        ("act_fn", "tanh"),
        ("act_fn", "gelu_fast"),
        ("pos_embed", "alibi"),
        ("normalization", "layer"),
        ("rotary_base", 0.5),
        ("n_key_value_heads", 3),  # does not divide n_heads=2
        ("n_key_value_heads", 0),
        ("init", "xavier"),
        ("dtype", "float16"),
        ("dtype", "int64"),
        ("init_scale", -0.5),
        ("init_scale", float("nan")),
        ("init_scale", float("inf")),
        ("ln_eps", 0.0),
        ("ln_eps", -1e-5),
    ],
)
def test_bad_values_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        small(**{field: value})
    with pytest.raises(ValueError, match=field):
        small().replace(**{field: value})


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"rotary_dim": 2}, "rotary_dim"),  # without rotary positions
        ({"pos_embed": "rotary", "rotary_dim": 3}, "rotary_dim"),  # odd
        ({"pos_embed": "rotary", "rotary_dim": 6}, "rotary_dim"),  # more than d_head=4
        ({"pos_embed": "rotary", "d_model": 6}, "rotary_dim"),  # d_head 3: odd
        ({"pos_embed": "rotary", "attention": "parameter-free", "n_heads": 1}, "rotary"),
        ({"n_key_value_heads": 1, "attention": "parameter-free", "n_heads": 1}, "n_key_value"),
        ({"parallel_attn_mlp": True, "norm": "post"}, "parallel_attn_mlp"),
    ],
)
def test_combinations_the_model_cannot_run_name_the_field(changes, named):
    with pytest.raises(ValueError, match=named):
        small(**changes)


def test_n_heads_not_dividing_d_model_names_both():
    with pytest.raises(ValueError, match="n_heads") as excinfo:
        small(d_model=10, n_heads=4)
    assert "d_model" in str(excinfo.value)


@pytest.mark.parametrize("n_heads", [2, 4])
def test_parameter_free_attention_needs_one_head(n_heads):
    with pytest.raises(ValueError, match="n_heads"):
        small(attention="parameter-free", n_heads=n_heads)
    assert small(attention="parameter-free", n_heads=1).n_heads == 1


@pytest.mark.parametrize(
    "field", ["vocab_size", "d_model", "n_layers", "n_heads", "d_mlp", "n_ctx"]
)
@pytest.mark.parametrize("value", [2.0, "4", True, None])
def test_sizes_must_be_ints(field, value):
    with pytest.raises(TypeError, match=field):
        small(**{field: value})


@pytest.mark.parametrize(
    "field",
    ["ln_affine", "final_ln", "unembed_bias", "causal", "parallel_attn_mlp", "gated_mlp",
     "attn_bias", "mlp_bias"],
)  # fmt: skip
@pytest.mark.parametrize("value", [1, 0, "true", None, np.float64(1.0)])
def test_bool_fields_reject_non_bools(field, value):
    with pytest.raises(TypeError, match=field):
        small(**{field: value})
    assert getattr(small(**{field: False}), field) is False


def test_init_scale_must_be_a_number():
    with pytest.raises(TypeError, match="init_scale"):
        small(init_scale="1")
    with pytest.raises(TypeError, match="init_scale"):
        small(init_scale=True)


def test_replace_changes_one_field_and_rejects_unknown_ones():
    cfg = small()
    changed = cfg.replace(d_mlp=7, causal=False)
    assert changed.d_mlp == 7
    assert changed.causal is False
    assert cfg.d_mlp == SMALL["d_mlp"]
    assert cfg.causal is True
    assert dataclasses.replace(changed, d_mlp=cfg.d_mlp, causal=True) == cfg
    with pytest.raises(ValueError, match="n_head") as excinfo:
        cfg.replace(n_head=4)
    assert "n_heads" in str(excinfo.value)  # the near match is suggested
    with pytest.raises(ValueError, match="colour"):
        cfg.replace(colour="red")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 4


def test_unknown_preset_lists_the_allowed_names():
    with pytest.raises(ValueError, match="gpt3") as excinfo:
        TransformerConfig.preset("gpt3")
    for name in PRESET_NAMES:
        assert name in str(excinfo.value)


# What DESIGN.md's model contract says of each preset.
PRESET_FIELDS = {
    "seed-minigpt": {
        "vocab_size": 10, "d_model": 32, "n_layers": 2, "n_heads": 1, "d_mlp": 128, "n_ctx": 512,
        "attention": "parameter-free", "causal": True, "norm": "post", "ln_affine": False,
        "ln_eps": 1e-5, "act_fn": "relu", "pos_embed": "learned", "final_ln": False,
        "unembed_bias": False, "init": "seed",
    },
    "tiny-mha": {
        "vocab_size": 10, "d_model": 16, "n_heads": 2, "n_layers": 2, "d_mlp": 64, "n_ctx": 8,
        "attention": "standard", "norm": "post", "ln_affine": True, "act_fn": "relu",
        "pos_embed": "learned", "unembed_bias": True, "init": "pytorch", "causal": True,
    },
    "gpt2-style": {
        "vocab_size": 10, "d_model": 64, "n_heads": 4, "n_layers": 2, "d_mlp": 256, "n_ctx": 16,
        "attention": "standard", "norm": "pre", "act_fn": "gelu_new", "final_ln": True,
        "unembed_bias": True, "init": "gpt2", "causal": True, "dtype": "float64",
    },
    # TransformerLens's `gpt2`: HookedTransformer.from_pretrained("gpt2").cfg
    "gpt2-small": {
        "vocab_size": 50257, "d_model": 768, "n_heads": 12, "n_layers": 12, "d_mlp": 3072,
        "n_ctx": 1024, "attention": "standard", "norm": "pre", "ln_affine": True,
        "act_fn": "gelu_new", "final_ln": True, "pos_embed": "learned", "unembed_bias": False,
        "ln_eps": 1e-5, "causal": True, "init": "gpt2-residual-scaled", "dtype": "float32",
    },
    # EleutherAI/pythia-70m's config.json (GPT-NeoX): rotary_pct 0.25 of d_head 64
    "pythia-70m": {
        "vocab_size": 50304, "d_model": 512, "n_heads": 8, "n_layers": 6, "d_mlp": 2048,
        "n_ctx": 2048, "norm": "pre", "normalization": "layernorm", "act_fn": "gelu",
        "pos_embed": "rotary", "rotary_dim": 16, "rotary_base": 10000.0,
        "parallel_attn_mlp": True, "gated_mlp": False, "n_key_value_heads": None,
        "attn_bias": True, "mlp_bias": True, "unembed_bias": False, "final_ln": True,
        "ln_eps": 1e-5, "init": "pythia", "dtype": "float32",
    },
    # llama2.c's stories15M (ModelArgs dim 288, n_layers 6, n_heads 6, hidden_dim 768,
    # vocab 32000, max_seq_len 256, norm_eps 1e-5)
    "llama2c-stories15m": {
        "vocab_size": 32000, "d_model": 288, "n_heads": 6, "n_layers": 6, "d_mlp": 768,
        "n_ctx": 256, "norm": "pre", "normalization": "rmsnorm", "act_fn": "silu",
        "gated_mlp": True, "pos_embed": "rotary", "rotary_dim": None, "rotary_base": 10000.0,
        "parallel_attn_mlp": False, "n_key_value_heads": None, "attn_bias": False,
        "mlp_bias": False, "unembed_bias": False, "final_ln": True, "ln_eps": 1e-5,
        "init": "llama2c", "dtype": "float32",
    },
}  # fmt: skip


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_match_the_design(name):
    cfg = TransformerConfig.preset(name)
    for field, value in {"dtype": "float64", **PRESET_FIELDS[name]}.items():
        assert getattr(cfg, field) == value, field
    assert cfg.init_scale == 1.0
    assert TransformerConfig.preset(name) == cfg  # a fresh equal value each time


# ---------------------------------------------------------------- parse_overrides


def test_parse_overrides_types_values_by_field():
    changes = parse_overrides(
        [
            "d_model=32",
            "init_scale=0",
            "ln_eps = 1e-3",
            "causal=false",
            "final_ln=True",
            "ln_affine=yes",
            "unembed_bias=0",
            "attention=parameter-free",
        ]
    )
    assert changes == {
        "d_model": 32,
        "init_scale": 0.0,
        "ln_eps": 1e-3,
        "causal": False,
        "final_ln": True,
        "ln_affine": True,
        "unembed_bias": False,
        "attention": "parameter-free",
    }
    assert type(changes["d_model"]) is int
    assert type(changes["init_scale"]) is float
    assert type(changes["causal"]) is bool
    assert parse_overrides([]) == {}


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("d_model=abc", "d_model"),
        ("d_model=3.5", "d_model"),
        ("n_layers=", "n_layers"),
        ("causal=maybe", "causal"),
        ("init_scale=big", "init_scale"),
        ("colour=3", "colour"),
        ("d_model", "KEY=VALUE"),
        ("=3", "KEY=VALUE"),
    ],
)
def test_parse_overrides_rejects_bad_assignments(assignment, named):
    with pytest.raises(ValueError, match=named):
        parse_overrides([assignment])


@given(configs(init_scale=st.sampled_from([0.0, 0.5, 1.0, 2.5])))
def test_parse_overrides_round_trips_every_field(cfg):
    text = [f"{key}={value}" for key, value in cfg.to_dict().items()]
    assert small().replace(**parse_overrides(text)) == cfg


# ---------------------------------------------------------------- initialisation


@given(configs(), seeds)
def test_init_scale_zero_gives_an_all_zero_network(cfg, seed):
    model = Transformer(cfg.replace(init_scale=0.0), seed=seed)
    for name, value in model.params.items():
        assert np.all(value == 0), name
    tokens = np.arange(min(cfg.n_ctx, 4))[None] % cfg.vocab_size
    assert np.all(model(tokens) == 0)


@given(configs(), seeds, st.floats(0.1, 10.0))
def test_init_scale_multiplies_every_parameter(cfg, seed, scale):
    base = Transformer(cfg, seed=seed).params
    scaled = Transformer(cfg.replace(init_scale=scale), seed=seed).params
    assert set(scaled) == set(base)
    for name in base:
        np.testing.assert_allclose(scaled[name], scale * base[name], rtol=1e-12, err_msg=name)


@given(configs(), seeds, seeds)
def test_transformer_is_deterministic_in_seed(cfg, seed, other):
    first, again = Transformer(cfg, seed=seed), Transformer(cfg, seed=seed)
    assert set(first.params) == set(param_shapes(cfg))
    for name, shape in param_shapes(cfg).items():
        assert first.params[name].shape == shape
        assert first.params[name].dtype == np.float64
        np.testing.assert_array_equal(first.params[name], again.params[name])
    if other != seed:
        different = Transformer(cfg, seed=other)
        assert not np.array_equal(first.params["embed.W_E"], different.params["embed.W_E"])
        assert not np.array_equal(first.params["unembed.W_U"], different.params["unembed.W_U"])


def _assert_normal(values: np.ndarray, std: float, name: str) -> None:
    """Sample mean and std of N(0, std²) draws within 6 standard errors."""
    n = values.size
    assert abs(values.mean()) < 6 * std / np.sqrt(n), name
    assert abs(values.std() / std - 1) < 6 / np.sqrt(2 * n), name


@given(seeds)
def test_seed_init_draws_as_documented(seed):
    cfg = TransformerConfig.preset("seed-minigpt")
    params = Transformer(cfg, seed=seed).params
    for name in ("embed.W_E", "pos_embed.W_pos", "unembed.W_U"):
        _assert_normal(params[name], 0.1, name)
    for layer in range(cfg.n_layers):
        block = f"blocks.{layer}.mlp"
        _assert_normal(params[f"{block}.W_in"], np.sqrt(2 / cfg.d_model), "W_in")  # He: fan_in d
        _assert_normal(params[f"{block}.W_out"], np.sqrt(2 / cfg.d_mlp), "W_out")  # fan_in M
        assert np.all(params[f"{block}.b_in"] == 0)
        assert np.all(params[f"{block}.b_out"] == 0)


@given(seeds)
def test_pytorch_init_draws_as_documented(seed):
    cfg = TransformerConfig.preset("tiny-mha")
    params = Transformer(cfg, seed=seed).params
    for name in ("embed.W_E", "pos_embed.W_pos"):
        _assert_normal(params[name], 1.0, name)
    for name, value in params.items():
        short = name.rsplit(".", 1)[-1]
        if name.startswith(("embed", "pos_embed")):
            continue
        if short in ("w", "b"):  # LayerNorm
            assert np.all(value == (1.0 if short == "w" else 0.0)), name
            continue
        fan_in = cfg.d_mlp if short in ("W_out", "b_out") else cfg.d_model
        bound = 1 / np.sqrt(fan_in)
        assert np.all(np.abs(value) <= bound), name
        # Uniform on [-bound, bound]: std bound/sqrt(3), and the extremes reach near the bound.
        if value.size >= 64:
            assert abs(value.std() / (bound / np.sqrt(3)) - 1) < 6 * np.sqrt(0.2 / value.size), name
            assert np.abs(value).max() > 0.8 * bound, name


@given(seeds)
def test_gpt2_init_draws_as_documented(seed):
    cfg = TransformerConfig.preset("gpt2-style")
    params = Transformer(cfg, seed=seed).params
    for name, value in params.items():
        short = name.rsplit(".", 1)[-1]
        if short == "w":
            assert np.all(value == 1), name
        elif short == "b" or short.startswith("b_"):
            assert np.all(value == 0), name
        else:
            _assert_normal(value, 0.02, name)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0", None])
def test_bad_seeds_are_rejected(seed):
    with pytest.raises(ValueError, match="seed"):
        Transformer(small(), seed=seed)


def test_config_must_be_a_transformer_config():
    with pytest.raises(TypeError, match="TransformerConfig"):
        Transformer(SMALL)


# ---------------------------------------------------------------- tokens


@pytest.fixture
def model():
    return Transformer(small(), seed=0)


def _entry_points(model):
    return [model, model.run_with_cache, model.run_with_hooks]


@pytest.mark.parametrize(
    "tokens",
    [
        np.array([[0.0, 1.0]]),
        np.array([[0, 1]], dtype=np.float32),
        np.array([[True, False]]),
        np.array([["a", "b"]]),
        [[0.5, 1.0]],
    ],
    ids=["float64", "float32", "bool", "str", "list-of-floats"],
)
def test_non_integer_tokens_raise_type_error(model, tokens):
    for call in _entry_points(model):
        with pytest.raises(TypeError, match="integer"):
            call(tokens)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (np.array([0, 1, 2]), "2-D"),
        (np.zeros((1, 2, 3), dtype=np.int64), "2-D"),
        (np.array(3), "2-D"),
        (np.zeros((1, 0), dtype=np.int64), "empty"),
        (np.zeros((0, 3), dtype=np.int64), "empty"),
        (np.array([[0, -1, 2]]), "-1"),
        (np.array([[0, 1, 5]]), "vocab_size=5"),
        (np.array([[0, 1, 99]]), "99"),
        (np.zeros((1, 7), dtype=np.int64), "n_ctx=6"),
        (np.zeros((2, 8), dtype=np.int64), "8"),
    ],
    ids=["1-D", "3-D", "0-D", "no-positions", "no-batch", "negative", "vocab", "far", "long", "8"],
)
def test_bad_token_shapes_and_values_raise_value_error(model, tokens, message):
    for call in _entry_points(model):
        with pytest.raises(ValueError, match=message):
            call(tokens)


@given(configs(), seeds)
def test_valid_tokens_of_any_integer_type_and_list_form_are_accepted(cfg, seed):
    model = Transformer(cfg, seed=seed)
    tokens = (np.arange(cfg.n_ctx)[None] * 7 + 3) % cfg.vocab_size  # the full context
    logits = model(tokens)
    assert logits.shape == (1, cfg.n_ctx, cfg.vocab_size)
    for variant in (tokens.astype(np.int8), tokens.astype(np.uint16), tokens.tolist()):
        np.testing.assert_array_equal(model(variant), logits)


# ---------------------------------------------------------------- from_params


def _params():
    cfg = small()
    return cfg, generic_params(cfg, 0)


def test_from_params_rejects_missing_and_extra_names():
    cfg, params = _params()
    missing = dict(params)
    del missing["blocks.1.attn.W_K"]
    with pytest.raises(ValueError, match=r"blocks\.1\.attn\.W_K"):
        Transformer.from_params(cfg, missing)
    extra = dict(params, **{"blocks.0.attn.W_X": np.zeros((2, 8, 4))})
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.W_X"):
        Transformer.from_params(cfg, extra)
    without_bias = cfg.replace(unembed_bias=False)
    with pytest.raises(ValueError, match=r"unembed\.b_U"):
        Transformer.from_params(without_bias, params)


@pytest.mark.parametrize(
    "name", ["embed.W_E", "blocks.0.attn.W_O", "blocks.1.mlp.b_in", "unembed.W_U", "ln_final.w"]
)
def test_from_params_rejects_wrong_shapes_naming_the_parameter(name):
    cfg, params = _params()
    for bad in (params[name].T.copy(), params[name][..., :-1], params[name][None]):
        if bad.shape == params[name].shape:
            continue
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            Transformer.from_params(cfg, dict(params, **{name: bad}))


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ["pos_embed.W_pos", "blocks.0.ln1.b", "blocks.1.mlp.W_out"])
def test_from_params_rejects_non_finite_values_naming_the_parameter(name, bad_value):
    cfg, params = _params()
    value = params[name].copy()
    value.flat[value.size // 2] = bad_value
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        Transformer.from_params(cfg, dict(params, **{name: value}))


def test_from_params_keeps_the_given_values():
    cfg, params = _params()
    model = Transformer.from_params(cfg, params)
    assert set(model.params) == set(params)
    for name, value in params.items():
        np.testing.assert_array_equal(model.params[name], value)


def test_pytorch_init_draws_in_the_documented_order():
    """Weights are drawn in param_shapes' order, block by block: ln1, attention (W_Q, W_K, W_V,
    W_O, then b_Q, b_K, b_V, b_O), ln2, the MLP (W_in, b_in, W_out, b_out). A changed order
    would change every random init of tiny-mha (its biases are drawn) and every report with it."""
    cfg = TransformerConfig.preset("tiny-mha")
    attn = ["W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"]
    block = [
        *(f"ln1.{n}" for n in "wb"),
        *(f"attn.{n}" for n in attn),
        *(f"ln2.{n}" for n in "wb"),
        "mlp.W_in",
        "mlp.b_in",
        "mlp.W_out",
        "mlp.b_out",
    ]
    expected = ["embed.W_E", "pos_embed.W_pos",
                *(f"blocks.{layer}.{name}" for layer in range(2) for name in block),
                "unembed.W_U", "unembed.b_U"]  # fmt: skip
    assert list(param_shapes(cfg)) == expected
    rng, params = np.random.default_rng(5), Transformer(cfg, seed=5).params
    for name in expected:
        kind, shape = name.rsplit(".", 1)[-1], params[name].shape
        if kind in ("w", "b"):
            continue
        if kind in ("W_E", "W_pos"):
            drawn = rng.normal(0.0, 1.0, shape)
        else:
            fan_in = cfg.d_mlp if kind in ("W_out", "b_out") else cfg.d_model
            drawn = rng.uniform(-1 / np.sqrt(fan_in), 1 / np.sqrt(fan_in), shape)
        np.testing.assert_array_equal(params[name], drawn, err_msg=name)
