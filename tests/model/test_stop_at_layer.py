"""run_with_cache's `stop_at_layer` and `return_type` (TransformerLens's semantics), and
`stop_layer_for`, which picks the smallest stop for the hook points a caller reads.

What is returned is checked against the full run and the naive reference; what is not computed
is checked by hooks that must not fire and an unembedding that must not be called.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mechclaims.model import layers, transformer
from mechclaims.model.config import TransformerConfig
from mechclaims.model.hooks import stop_layer_for
from mechclaims.model.transformer import Transformer
from tests.model.reference import assert_close, reference_forward
from tests.model.strategies import models_and_tokens


class LaterBlockRan(Exception):
    """Raised by a hook that a stopped forward pass must not reach."""


def _fail(activation, hook_name):
    raise LaterBlockRan(hook_name)


def _no_unembedding():
    return mock.patch.object(layers, "unembed_forward", side_effect=AssertionError("unembed ran"))


def _blocks_needed(name: str, n_layers: int) -> int:
    """How many blocks a pass runs before it reaches the hook point (final LN: more than all)."""
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return n_layers + 1 if name.startswith("ln_final") else 0


@given(models_and_tokens(), st.data())
def test_stop_at_layer_returns_the_residual_stream_after_the_last_block_run(model_and_tokens, data):
    model, tokens = model_and_tokens
    L = model.cfg.n_layers
    stop = data.draw(st.integers(-L, L), label="stop_at_layer")
    n = stop if stop >= 0 else L + stop  # blocks run
    _, full = model.run_with_cache(tokens)
    _, reference = reference_forward(model.cfg, model.params, tokens)
    resid, cache = model.run_with_cache(tokens, stop_at_layer=stop)
    if n == 0:
        expected = reference["hook_embed"] + reference.get("hook_pos_embed", 0.0)
    else:
        expected = reference[f"blocks.{n - 1}.hook_resid_post"]
    assert resid.shape == (*tokens.shape, model.cfg.d_model)
    assert_close(resid, expected, err_msg=f"stop_at_layer={stop}")
    reached = [name for name in model.hook_names() if _blocks_needed(name, L) <= n]
    assert list(cache) == reached  # in forward order, nothing of later blocks or the final LN
    for name in reached:
        assert_close(cache[name], full[name], rtol=0, err_msg=name)


@given(models_and_tokens(), st.data())
def test_a_stopped_pass_runs_no_later_block_no_final_ln_and_no_unembedding(model_and_tokens, data):
    model, tokens = model_and_tokens
    L = model.cfg.n_layers
    n = data.draw(st.integers(0, L), label="stop_at_layer")
    later = [name for name in model.hook_names() if _blocks_needed(name, L) > n]
    with _no_unembedding(), model.hooks([(name, _fail) for name in later]):
        resid, _ = model.run_with_cache(tokens, names_filter=(), stop_at_layer=n)
    assert resid.shape == (*tokens.shape, model.cfg.d_model)
    if later:  # not vacuous: the same hooks fire in a full pass
        with pytest.raises(LaterBlockRan), model.hooks([(later[0], _fail)]):
            model(tokens)


@given(models_and_tokens(), st.booleans())
def test_return_type_none_computes_no_logits_and_the_same_cache(model_and_tokens, chunked):
    model, tokens = model_and_tokens
    logits, full = model.run_with_cache(tokens)
    with _no_unembedding(), mock.patch.object(transformer, "CHUNK_TOKENS", 1 if chunked else 2048):
        output, cache = model.run_with_cache(tokens, return_type=None)
        output_few, few = model.run_with_cache(tokens, "blocks.0.hook_resid_post", return_type=None)
    assert output is None
    assert output_few is None
    assert set(cache) == set(full)  # the final LN still runs (its hook fires), as in TL
    for name in full:
        assert_close(cache[name], full[name], rtol=0, err_msg=name)
    rtol = 1e-10 if chunked else 0  # a chunk of one sequence may round unlike the whole batch
    assert_close(few["blocks.0.hook_resid_post"], full["blocks.0.hook_resid_post"], rtol=rtol)
    assert_close(model.run_with_cache(tokens, return_type="logits")[0], logits, rtol=0)


@given(models_and_tokens(min_batch=2), st.integers(1, 12))
def test_stopped_passes_give_the_same_numbers_in_chunks(model_and_tokens, chunk_tokens):
    model, tokens = model_and_tokens
    stop = model.cfg.n_layers - 1
    whole, whole_cache = model.run_with_cache(tokens, "hook_embed", stop_at_layer=stop)
    with mock.patch.object(transformer, "CHUNK_TOKENS", chunk_tokens):
        resid, cache = model.run_with_cache(tokens, "hook_embed", stop_at_layer=stop)
    assert_close(resid, whole, rtol=1e-10)
    assert_close(cache["hook_embed"], whole_cache["hook_embed"], rtol=0)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"stop_at_layer": 3}, ValueError, r"stop_at_layer must lie in \[-2, 2\].*got 3"),
        ({"stop_at_layer": -3}, ValueError, r"stop_at_layer must lie in \[-2, 2\].*got -3"),
        ({"stop_at_layer": 1.0}, TypeError, "stop_at_layer must be an int or None, got 1.0"),
        ({"stop_at_layer": True}, TypeError, "stop_at_layer must be an int or None, got True"),
        ({"stop_at_layer": "1"}, TypeError, "stop_at_layer must be an int or None"),
        ({"return_type": "loss"}, ValueError, "return_type must be one of 'logits', None; got 'l"),
        ({"return_type": "Logits"}, ValueError, "return_type must be one of"),
        ({"return_type": "loss", "stop_at_layer": 1}, ValueError, "return_type must be one of"),
    ],
)
def test_bad_options_raise_naming_the_option(options, error, message):
    model = Transformer(TransformerConfig.preset("gpt2-style"))
    with pytest.raises(error, match=message):
        model.run_with_cache(np.array([[1, 2, 3]]), **options)


@pytest.mark.parametrize(
    ("names", "stop"),
    [
        (["hook_embed"], 0),
        (["hook_pos_embed", "hook_embed"], 0),
        (["blocks.0.hook_resid_pre"], 1),
        (["blocks.1.mlp.hook_post", "blocks.0.hook_resid_post"], 2),
        (["blocks.0.attn.hook_pattern", "ln_final.hook_normalized"], None),
        ([], 0),
    ],
)
def test_stop_layer_for_named_hook_points(names, stop):
    assert stop_layer_for(names, TransformerConfig.preset("gpt2-style")) == stop


def test_stop_layer_for_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"unknown hook name 'blocks\.2\.hook_resid_post'"):
        stop_layer_for(["blocks.2.hook_resid_post"], TransformerConfig.preset("gpt2-style"))


@given(models_and_tokens(), st.data())
def test_stop_layer_for_is_the_smallest_stop_that_reaches_every_name(model_and_tokens, data):
    model, tokens = model_and_tokens
    names = data.draw(st.lists(st.sampled_from(model.hook_names()), min_size=1, unique=True))
    stop = stop_layer_for(names, model.cfg)
    _, cache = model.run_with_cache(tokens, names, stop_at_layer=stop, return_type=None)
    assert set(cache) == set(names)
    if stop:  # one block fewer misses a name
        _, fewer = model.run_with_cache(tokens, names, stop_at_layer=stop - 1)
        assert set(fewer) < set(names)
