"""Model sources and token panels: any vocabulary from 10 up, designs in panel indices, models
from a config and seed, a fixed seed, or a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from mechclaims.interp.claims import persistence
from mechclaims.interp.claims.catalog import CLAIMS
from mechclaims.interp.sources import PANEL_SIZE, ModelSource, source_for, token_panel
from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer

SMALL = TransformerConfig.preset("gpt2-style").replace(d_model=16, n_heads=2, d_mlp=32)


@pytest.mark.parametrize("rule", ["spread", "first"])
def test_a_ten_token_vocabulary_is_its_own_panel(rule):
    assert token_panel(10, rule) == tuple(range(10))


@pytest.mark.parametrize("vocab", [11, 12, 19, 50257, 1000])
def test_the_spread_panel_is_ten_distinct_ids_from_first_to_last(vocab):
    panel = token_panel(vocab, "spread")
    assert len(set(panel)) == PANEL_SIZE
    assert (panel[0], panel[-1]) == (0, vocab - 1)
    assert list(panel) == sorted(panel)


def test_a_listed_panel_is_taken_as_given():
    ids = "5,3,9,100,2,7,8,11,50,60"
    assert token_panel(101, ids) == (5, 3, 9, 100, 2, 7, 8, 11, 50, 60)


@pytest.mark.parametrize(
    ("vocab", "rule", "message"),
    [
        (9, "spread", "need 10 tokens"),
        (100, "middle", "spread or first or 10 comma-separated"),
        (100, "1,2,3", "10 distinct token ids"),
        (100, "1,1,2,3,4,5,6,7,8,9", "10 distinct token ids"),
        (100, "1,2,3,4,5,6,7,8,9,100", r"lie in \[0, 100\)"),
    ],
)
def test_a_bad_panel_is_a_clear_error(vocab, rule, message):
    with pytest.raises(ValueError, match=message):
        token_panel(vocab, rule)


def test_a_source_draws_its_model_from_the_seed_a_fixed_seed_or_a_checkpoint(tmp_path):
    source = source_for(SMALL)
    np.testing.assert_array_equal(source.model(3).params["embed.W_E"],
                                  Transformer(SMALL, seed=3).params["embed.W_E"])  # fmt: skip
    fixed = ModelSource(SMALL, source.panel, model_seed=5)
    np.testing.assert_array_equal(fixed.model(0).params["embed.W_E"],
                                  fixed.model(9).params["embed.W_E"])  # fmt: skip
    Transformer(SMALL, seed=7).save(tmp_path / "ckpt.npz")
    stored = ModelSource(SMALL, source.panel, checkpoint=str(tmp_path / "ckpt.npz"))
    np.testing.assert_array_equal(stored.model(0).params["embed.W_E"],
                                  Transformer(SMALL, seed=7).params["embed.W_E"])  # fmt: skip


def test_designs_reach_the_model_as_panel_ids():
    source = source_for(SMALL.replace(vocab_size=1000))
    np.testing.assert_array_equal(source.tokens([[0, 9], [7, 3]]),
                                  [[source.panel[0], source.panel[9]],
                                   [source.panel[7], source.panel[3]]])  # fmt: skip


def test_a_source_says_why_its_model_cannot_serve_a_design():
    assert source_for(SMALL).serves(4) is None
    assert "n_ctx=3" in source_for(SMALL.replace(n_ctx=3)).serves(4)


THRESHOLDS = {  # small but complete: what each measurement reads
    "seed_samples": 40, "seed_top": 5, "seed_min_shared": 3, "n_sequences": 400,
    "discovery_fraction": 0.5, "n_permutations": 9, "fdr": 0.05, "min_effect": 0.5,
    "margin_gaussian": 0.1, "margin_embedding": 0.2, "margin_rotated": 0.005, "confidence": 0.95,
    "min_eta2": 0.06, "seed_std": 0.5, "strong_r": 0.8, "seed_print_r": 0.5,
    "partition_share": 0.95, "seed_reference_sequences": 50, "seed_z": 2.0,
    "n_random_patterns": 24, "min_unit_set_share": 0.5, "margin_layout": 0.05,
}  # fmt: skip
# Every reading's measurement of the catalog but claim 6's, which trains (its own test below).
MEASUREMENTS = [
    reading.measure
    for claim in CLAIMS.values()
    if claim is not persistence.CLAIM
    for reading in claim.readings.values()
]


@pytest.fixture
def tokens_seen(monkeypatch) -> set[int]:
    """Every token id a model reads from now on (a spy on the model's token check)."""
    seen: set[int] = set()
    original = Transformer.check_tokens

    def recording(model, tokens):
        checked = original(model, tokens)
        seen.update(np.unique(checked).tolist())
        return checked

    monkeypatch.setattr(Transformer, "check_tokens", recording)
    return seen


@pytest.mark.parametrize("measure", MEASUREMENTS, ids=lambda m: f"{m.__module__[27:]}.{m.__name__}")
def test_every_measurement_runs_on_a_large_vocabulary_and_sees_only_panel_tokens(
    measure, tokens_seen
):
    """vocab 1000 (the first version stopped in claim 1); every token the model reads is a
    panel id."""
    source = source_for(SMALL.replace(vocab_size=1000))
    result = measure(source, 0, THRESHOLDS)
    assert tokens_seen <= set(source.panel)
    assert isinstance(result, dict)


def test_claim_6_trains_on_the_panel(tokens_seen):
    """...and reads only panel tokens in training and in the families' accuracy."""
    thresholds = {"train_samples": 8, "train_epochs": 1, "train_batch_size": 4,
                  "train_lr": 0.01, "family_samples": 4}  # fmt: skip
    source = source_for(SMALL.replace(vocab_size=1000))
    pair = persistence.training(source, 0, thresholds)
    assert pair.trained.cfg.vocab_size == 1000
    assert set(pair.trained_accuracy) == {"ascending", "repeating", "alternating", "random"}
    assert tokens_seen == set(source.panel)
