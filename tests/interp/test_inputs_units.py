"""Input designs and unit sets: exhaustive, balanced and family designs; embedding-only null."""

from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mechclaims.interp.inputs import (
    all_sequences,
    balanced_sequences,
    distinct_prefix_rows,
    family_sequences,
    random_sequences,
)
from mechclaims.interp.units import activations, embedding_only, unit_sets
from mechclaims.model import layers
from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer


@given(vocab=st.integers(2, 5), length=st.integers(1, 4))
def test_all_sequences_is_every_sequence_once_in_lexicographic_order(vocab, length):
    sequences = all_sequences(vocab, length)
    assert sequences.shape == (vocab**length, length)
    as_numbers = sequences @ vocab ** np.arange(length - 1, -1, -1)
    np.testing.assert_array_equal(as_numbers, np.arange(vocab**length))


@given(vocab=st.integers(2, 5), length=st.integers(1, 4), data=st.data())
def test_distinct_prefix_rows_hold_each_prefix_once(vocab, length, data):
    position = data.draw(st.integers(0, length - 1))
    rows = all_sequences(vocab, length)[distinct_prefix_rows(vocab, length, position)]
    prefixes = rows[:, : position + 1]
    assert len(np.unique(prefixes, axis=0)) == len(rows) == vocab ** (position + 1)
    assert np.all(rows[:, position + 1 :] == 0)


def test_distinct_prefix_rows_rejects_a_position_outside_the_sequence():
    with pytest.raises(ValueError, match="position"):
        distinct_prefix_rows(10, 4, 4)


@given(vocab=st.integers(2, 6), per_token=st.integers(1, 5), length=st.integers(1, 5),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_balanced_sequences_have_every_token_equally_often_at_every_position(
    vocab, per_token, length, seed
):
    tokens = balanced_sequences(np.random.default_rng(seed), vocab * per_token, vocab, length)
    counts = np.stack([np.bincount(column, minlength=vocab) for column in tokens.T])
    assert np.all(counts == per_token)


def test_balanced_sequences_shuffle_positions_independently():
    tokens = balanced_sequences(np.random.default_rng(0), 1000, 10, 4)
    assert not np.array_equal(tokens[:, 0], tokens[:, 1])
    with pytest.raises(ValueError, match="multiple of vocab"):
        balanced_sequences(np.random.default_rng(0), 15, 10, 4)


def test_family_sequences_follow_their_rules():
    families = family_sequences(10, 4)
    np.testing.assert_array_equal(families["ascending"][3], [3, 4, 5, 6])
    np.testing.assert_array_equal(families["ascending"][8], [8, 9, 0, 1])
    np.testing.assert_array_equal(families["descending"][1], [1, 0, 9, 8])
    assert np.all(families["repeating"] == families["repeating"][:, :1])
    alternating = families["alternating"]
    assert alternating.shape == (90, 4)
    assert np.all(alternating[:, 0] != alternating[:, 1])
    np.testing.assert_array_equal(alternating[:, :2], alternating[:, 2:])
    assert len(np.unique(alternating, axis=0)) == 90


def test_random_sequences_are_reproducible_and_in_range():
    first = random_sequences(np.random.default_rng(5), 50, 7, 3)
    np.testing.assert_array_equal(first, random_sequences(np.random.default_rng(5), 50, 7, 3))
    assert first.min() >= 0
    assert first.max() < 7


@pytest.mark.parametrize("preset", ["seed-minigpt", "tiny-mha", "gpt2-style"])
def test_unit_sets_read_every_block_and_match_the_cache(preset):
    model = Transformer(TransformerConfig.preset(preset), seed=1)
    sets = unit_sets(model)
    assert [s.label for s in sets] == [
        f"L{layer} {kind}" for layer in range(model.cfg.n_layers) for kind in ("resid", "mlp")
    ]
    tokens = random_sequences(np.random.default_rng(0), 6, model.cfg.vocab_size, 4)
    acts = activations(model, tokens, sets)
    _, cache = model.run_with_cache(tokens)
    for unit_set in sets:
        np.testing.assert_array_equal(acts[unit_set.label], cache[unit_set.hook])


class LaterBlockRan(Exception):
    """Raised by a hook on a block the unit sets do not read."""


def _fail(activation, hook_name):
    raise LaterBlockRan(hook_name)


@pytest.mark.parametrize("preset", ["seed-minigpt", "tiny-mha", "gpt2-style"])
def test_activations_of_the_first_block_run_no_later_block_and_no_unembedding(preset):
    model = Transformer(TransformerConfig.preset(preset), seed=0)
    tokens = random_sequences(np.random.default_rng(5), 20, model.cfg.vocab_size, 4)
    first = unit_sets(model)[:2]  # L0 resid, L0 mlp
    _, cache = model.run_with_cache(tokens)
    unembed = mock.patch.object(layers, "unembed_forward", side_effect=AssertionError("unembed"))
    with unembed, model.hooks([("blocks.1.hook_resid_pre", _fail)]):
        acts = activations(model, tokens, first)
        with pytest.raises(LaterBlockRan):  # not vacuous: the hook fires when block 1 runs
            activations(model, tokens, unit_sets(model)[2:3])
    for unit_set in first:
        np.testing.assert_array_equal(acts[unit_set.label], cache[unit_set.hook])


@pytest.mark.parametrize("pos_embed", ["learned", "sinusoidal"])
def test_embedding_only_is_the_normalized_stream_before_any_block(pos_embed):
    cfg = TransformerConfig.preset("gpt2-style").replace(pos_embed=pos_embed)
    model = Transformer(cfg, seed=2)
    tokens = random_sequences(np.random.default_rng(1), 5, cfg.vocab_size, 6)
    _, cache = model.run_with_cache(tokens, ["hook_embed", "hook_pos_embed"])
    stream = cache["hook_embed"] + cache["hook_pos_embed"]
    expected = (stream - stream.mean(-1, keepdims=True)) / np.sqrt(
        stream.var(-1, keepdims=True) + cfg.ln_eps
    )
    np.testing.assert_allclose(embedding_only(model, tokens), expected, rtol=1e-12, atol=1e-12)


def test_embedding_only_depends_on_the_current_token_and_position_alone():
    model = Transformer(TransformerConfig.preset("seed-minigpt"), seed=0)
    first = embedding_only(model, np.array([[1, 2, 3, 4]]))
    second = embedding_only(model, np.array([[9, 9, 3, 0]]))
    np.testing.assert_array_equal(first[0, 2], second[0, 2])
    assert not np.allclose(first[0, 3], second[0, 3])
