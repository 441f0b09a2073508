"""The yardstick computes our function: the PyTorch twin against our model, in float64.

On small random configs of every variant (tests/model/strategies.py), with generic weights
(every bias and gain away from 0 and 1) or the config's own init, the twin's logits and every
hook_resid_post agree with ours to 1e-10, so a speed ratio compares like with like.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer
from tests.model.strategies import configs, generic_params, seeds, tokens_for

torch = pytest.importorskip("torch", reason="the benchmarks compare with PyTorch (extra `bench`)")
from bench import torch_twin  # noqa: E402  (imports torch)

TOLERANCE = 1e-10
# Variants a uniform draw seldom reaches, pinned: grouped-query attention with several key
# heads (where repeat_interleave and repeat differ), partial rotary with parallel blocks.
PINNED = {
    "any": {},
    "grouped-query": dict(attention="standard", n_heads=4, n_key_value_heads=2,
                          d_model=st.sampled_from([4, 8, 12, 16])),
    "partial rotary, parallel": dict(attention="standard", pos_embed="rotary", n_heads=2,
                                     d_model=st.sampled_from([8, 12, 16]), rotary_dim=2,
                                     norm="pre", parallel_attn_mlp=True),
}  # fmt: skip


@st.composite
def models_and_tokens(draw, **pinned):
    """(model, tokens): a config of any variant, generic weights three times in four."""
    cfg = draw(configs(**pinned))
    seed = draw(seeds)
    if draw(st.sampled_from([True, True, True, False])):
        model = Transformer.from_params(cfg, generic_params(cfg, seed))
    else:
        model = Transformer(cfg, seed=seed)
    return model, draw(tokens_for(cfg))


@pytest.mark.parametrize("variant", PINNED)
@given(data=st.data())
def test_twin_computes_our_function(variant, data):
    model, tokens = data.draw(models_and_tokens(**PINNED[variant]))
    cfg = model.cfg
    resid_posts = [f"blocks.{layer}.hook_resid_post" for layer in range(cfg.n_layers)]
    logits, cache = model.run_with_cache(tokens, names_filter=resid_posts)
    twin_resid_posts = []
    with torch.no_grad():
        twin_logits = torch_twin.forward(
            cfg, torch_twin.torch_params(model.params), torch.tensor(tokens), twin_resid_posts
        )
    kept = [cache[name] for name in resid_posts]
    for mine, twin in [(logits, twin_logits), *zip(kept, twin_resid_posts, strict=True)]:
        assert twin.dtype == torch.float64
        np.testing.assert_allclose(twin.numpy(), mine, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("preset", ["pythia-70m", "llama2c-stories15m"])
def test_twin_computes_the_presets(preset):
    """The benchmarked presets themselves, shrunk to 2 blocks and a small vocabulary, float64."""
    cfg = TransformerConfig.preset(preset).replace(n_layers=2, vocab_size=97, dtype="float64")
    model = Transformer.from_params(cfg, generic_params(cfg, 0))
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 40))
    with torch.no_grad():
        twin = torch_twin.forward(cfg, torch_twin.torch_params(model.params), torch.tensor(tokens))
    np.testing.assert_allclose(twin.numpy(), model(tokens), rtol=TOLERANCE, atol=TOLERANCE)
