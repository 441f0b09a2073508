"""Planted models, the controls' synthetic sources: each kind replaces every unit set the claims
read with what it says, keeps the init's embedding, and is a causal function of its input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from mechclaims.interp import planted
from mechclaims.interp.sources import ModelSource, source_for
from mechclaims.interp.units import activations, embedding_only, unit_sets
from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer

CFG = TransformerConfig.preset("gpt2-style").replace(d_model=16, n_heads=2, d_mlp=32)
TOKENS = np.random.default_rng(0).integers(0, 10, (400, 4))


def unit_activations(kind: str, seed: int = 3, tokens=TOKENS) -> dict:
    model = source_for(CFG, planted=kind).model(seed)
    return activations(model, tokens, unit_sets(model))


def test_prefix_noise_is_standard_normal_and_a_function_of_the_prefix_alone():
    indices = np.array([[1, 2, 3, 4], [1, 2, 7, 4], [5, 2, 3, 4]])
    draws = np.random.SeedSequence(1)
    noise = planted.prefix_noise(indices, 6, draws)  # [3,4,6]
    np.testing.assert_array_equal(noise[0, :2], noise[1, :2])  # prefix [1, 2] shared
    assert np.all(noise[0, 2:] != noise[1, 2:])  # then they part
    assert np.all(noise[0] != noise[2])  # the same tokens after another first one
    np.testing.assert_array_equal(
        noise, planted.prefix_noise(indices, 6, np.random.SeedSequence(1))
    )
    distinct = np.unique(TOKENS, axis=0)  # whole sequences: the last position's prefixes
    many = planted.prefix_noise(distinct, 50, draws)[:, -1].ravel()
    assert scipy.stats.kstest(many, "norm").pvalue > 1e-3


@pytest.mark.parametrize("kind", planted.HOOK_KINDS)
def test_every_unit_set_is_replaced_and_the_embedding_is_the_inits(kind):
    init = Transformer(CFG, seed=3)
    real = activations(init, TOKENS, unit_sets(init))
    plants = unit_activations(kind)
    for label, acts in plants.items():
        assert acts.shape == real[label].shape
        assert not np.allclose(acts, real[label]), label
    model = source_for(CFG, planted=kind).model(3)
    np.testing.assert_array_equal(embedding_only(model, TOKENS), embedding_only(init, TOKENS))


def test_a_rotated_unit_set_keeps_the_geometry_of_the_real_one():
    """L0 mlp is the first unit set a forward pass reaches: its planted value is the init's
    own, rotated."""
    init = Transformer(CFG, seed=3)
    real = activations(init, TOKENS, unit_sets(init))["L0 mlp"].reshape(-1, CFG.d_mlp)
    turned = unit_activations("rotated")["L0 mlp"].reshape(-1, CFG.d_mlp)
    np.testing.assert_allclose(turned @ turned.T, real @ real.T, atol=1e-10)


def test_embedding_units_are_the_embeddings_dimensions_in_turn():
    model = source_for(CFG, planted="embedding").model(3)
    embedding = embedding_only(model, TOKENS)
    mlp = unit_activations("embedding")["L1 mlp"]  # 32 units of a 16-dim embedding
    np.testing.assert_array_equal(mlp, embedding[..., np.arange(32) % 16])


def test_detector_units_move_by_the_effect_where_their_feature_is():
    """Each unit's largest difference of means between sequences with and without a feature is
    about DETECTOR_EFFECT (the noise has SD 1) at the last position, where every feature counts."""
    last = unit_activations("detectors")["L0 mlp"][:, -1]  # [n,u]
    features = np.stack([TOKENS[:, p] == t for p in range(4) for t in range(10)], axis=1)  # [n,F]
    shifts = np.stack([last[f].mean(0) - last[~f].mean(0) for f in features.T])  # [F,u]
    np.testing.assert_allclose(shifts.max(axis=0), planted.DETECTOR_EFFECT, atol=0.6)


def test_selective_units_are_explained_by_token_or_position_and_the_others_are_not():
    from mechclaims.interp.persistence import eta2_by_factor

    acts = unit_activations("selective-units")["L0 mlp"]  # [n,T,u]
    explained = eta2_by_factor(acts, TOKENS).sum(axis=0)  # [u]
    selective = np.count_nonzero(explained > 0.9)
    assert selective == int(planted.SELECTIVE_SHARE * acts.shape[-1])
    # a context unit's position-0 value depends on x_0 alone (its prefix): a little token eta²
    assert np.count_nonzero(explained < 0.2) == acts.shape[-1] - selective


def test_a_circuit_is_a_quarter_of_the_units_strongly_correlated_both_ways():
    last = unit_activations("circuits")["L0 mlp"][:, -1]  # [n,32]
    r = np.corrcoef(last.T)
    strong = np.abs(r - np.eye(len(r))) > 0.99
    members = strong.any(axis=1)
    assert members.sum() == int(np.ceil(planted.CIRCUIT_SHARE * 32))
    assert (r[strong] > 0).any()  # correlated pairs
    assert (r[strong] < 0).any()  # and opposing ones


@pytest.mark.parametrize(("kind", "same"), [("layout", True), ("relations", False)])
def test_layout_units_see_only_which_positions_hold_equal_tokens(monkeypatch, kind, same):
    """Without their noise, layout units answer alike for ascending and another all-distinct
    relation (the same layout), relation units do not."""
    monkeypatch.setattr(planted, "RELATION_NOISE", 0.0)
    pair = np.array([[1, 2, 3, 4], [1, 4, 9, 2]])
    acts = unit_activations(kind, tokens=pair)["L0 mlp"][:, -1]
    assert np.allclose(acts[0], acts[1]) == same


def test_relation_units_see_runs_of_steps_not_a_single_step(monkeypatch):
    """Relation units answer alike for two all-distinct relations with no two steps of +1 (or
    -1) in a row, though one of them holds a single +1 step (as about half of all relations do:
    ascending is a run of them)."""
    monkeypatch.setattr(planted, "RELATION_NOISE", 0.0)
    pair = np.array([[1, 2, 7, 4], [1, 4, 9, 2]])
    acts = unit_activations("relations", tokens=pair)["L0 mlp"][:, -1]
    np.testing.assert_allclose(acts[0], acts[1])


def test_a_kept_model_moves_each_weight_by_a_tenth_of_its_spread():
    init = Transformer(CFG, seed=3)
    kept = source_for(CFG, planted="kept").model(3)
    for name, value in init.params.items():
        moved = kept.params[name] - value
        assert np.std(moved) == pytest.approx(planted.KEPT_NOISE * np.std(value), rel=0.3, abs=0)
    unrelated = source_for(CFG, planted="unrelated").model(3)
    np.testing.assert_array_equal(
        unrelated.params["embed.W_E"],
        Transformer(CFG, seed=3 + planted.UNRELATED_OFFSET).params["embed.W_E"],
    )
    assert source_for(CFG, planted="kept").initialization(3) == 3


def test_bad_planted_sources_are_clear_errors():
    with pytest.raises(ValueError, match="unknown planted kind 'magic'"):
        source_for(CFG, planted="magic")
    with pytest.raises(ValueError, match="not from a checkpoint"):
        ModelSource(CFG, tuple(range(10)), checkpoint="a.npz", planted="rotated")
    model = source_for(CFG.replace(vocab_size=20), planted="rotated").model(0)
    with pytest.raises(ValueError, match="tokens of its panel"):
        model(np.array([[1, 2, 3, 4]]))  # the spread panel of 20 tokens has no token 1
