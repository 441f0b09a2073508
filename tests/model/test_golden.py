"""The `seed-minigpt` preset reproduces the seed project's MiniGPT to floating-point rounding.

`fixtures/golden/seed_minigpt.npz` holds the seed's weights, inputs and outputs (see the README
beside it). Loaded with `Transformer.from_params`, our model must agree on logits, attention
weights and block outputs to 1e-12 relative, and on the seed's loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mechclaims.model import layers
from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden" / "seed_minigpt.npz"
GROUPS = ("len4", "len8")
RTOL = 1e-12
SEED_LOSS_EPS = 1e-10  # the seed's compute_loss adds this inside the log


def assert_golden(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """rtol 1e-12, with an absolute floor of 1e-12 times the array's largest magnitude: the
    smallest entries (attention weights near 1e-20, logits near 1e-4) carry rounding error of
    the scale they were computed at, not of their own size."""
    atol = RTOL * np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=atol, err_msg=what)


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def seed_model(golden):
    params = {
        "embed.W_E": golden["embed"],
        "pos_embed.W_pos": golden["pos"],
        "unembed.W_U": golden["unembed"],
    }
    for i in range(2):
        for seed_name, our_name in (
            ("W1", "W_in"),
            ("b1", "b_in"),
            ("W2", "W_out"),
            ("b2", "b_out"),
        ):
            params[f"blocks.{i}.mlp.{our_name}"] = golden[f"block{i}.{seed_name}"]
    return Transformer.from_params(TransformerConfig.preset("seed-minigpt"), params)


def test_golden_weights_fill_the_preset_exactly(seed_model):
    """The seed's MiniGPT has no other weights than these: from_params found nothing missing."""
    assert len(seed_model.params) == 3 + 2 * 4


@pytest.mark.parametrize("group", GROUPS)
def test_logits_attention_and_block_outputs_match_the_seed(seed_model, golden, group):
    tokens = golden[f"{group}.tokens"]
    logits, cache = seed_model.run_with_cache(tokens)
    assert_golden(logits, golden[f"{group}.logits"], "logits")
    assert_golden(seed_model(tokens), golden[f"{group}.logits"], "model(tokens)")
    for i in range(2):
        pattern = cache[f"blocks.{i}.attn.hook_pattern"]
        assert pattern.shape[1] == 1  # one head
        assert_golden(pattern[:, 0], golden[f"{group}.block{i}.attention"], f"block{i} attention")
        assert_golden(
            cache[f"blocks.{i}.hook_resid_post"],
            golden[f"{group}.block{i}.output"],
            f"block{i} output",
        )


@pytest.mark.parametrize("group", GROUPS)
def test_seed_loss_matches(seed_model, golden, group):
    tokens, targets = golden[f"{group}.tokens"], golden[f"{group}.targets"]
    np.testing.assert_array_equal(targets, np.roll(tokens, -1, axis=1))  # as the README says
    logits = seed_model(tokens)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    target_probs = np.take_along_axis(probs, targets[..., None], axis=-1)[..., 0]
    seed_loss = (-np.log(target_probs + SEED_LOSS_EPS)).mean(axis=-1)  # [n]
    np.testing.assert_allclose(seed_loss, golden[f"{group}.loss"], rtol=RTOL)
    # Our cross-entropy has no +1e-10: it differs by about 1e-10 / p, p >= 0.03 here.
    n_pos = tokens.shape[1]
    for row in range(tokens.shape[0]):
        ours, _ = layers.cross_entropy_forward(
            logits[row : row + 1], targets[row : row + 1], np.full((1, n_pos), 1.0 / n_pos)
        )
        np.testing.assert_allclose(ours, golden[f"{group}.loss"][row], rtol=0, atol=1e-8)
    loss, _ = seed_model.loss_and_grads(tokens, targets)
    np.testing.assert_allclose(loss, golden[f"{group}.loss"].mean(), rtol=0, atol=1e-8)
