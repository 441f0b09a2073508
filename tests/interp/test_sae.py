"""The sparse autoencoders of interp/sae.py: gradients against finite differences, the TopK and
unit-norm invariants, the metrics on cases with known answers, the splice hook, determinism,
and recovery of planted sparse directions."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, reject
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from mechclaims.interp import sae
from mechclaims.interp.stats import eta_squared
from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer
from tests.model.gradcheck import KinkCrossed, assert_gradients_match, check_gradients

seeds = st.integers(min_value=0, max_value=2**32 - 1)
rows = st.integers(min_value=1, max_value=6)
widths = st.integers(min_value=2, max_value=6)
latent_counts = st.integers(min_value=2, max_value=8)


def random_params(rng: np.random.Generator, d: int, m: int) -> sae.Params:
    """Float64 parameters in general position, decoder rows of unit norm."""
    return {
        "W_enc": rng.standard_normal((d, m)),
        "b_enc": rng.standard_normal(m),
        "W_dec": sae.normalize_rows(rng.standard_normal((m, d))),
        "b_dec": rng.standard_normal(d),
    }


def checked_gradients(loss, params, grads, rng) -> None:
    """check_gradients, rejecting the example when a finite-difference step crosses a kink."""
    try:
        assert_gradients_match(check_gradients(loss, params, grads, rng))
    except KinkCrossed:
        reject()


# ---------------------------------------------------------------- gradients


@given(seed=seeds, n=rows, d=widths, m=latent_counts, l1=st.floats(0.0, 2.0))
def test_relu_sae_gradients_match_finite_differences(seed, n, d, m, l1):
    rng = np.random.default_rng(seed)
    x, params = rng.standard_normal((n, d)), random_params(rng, d, m)
    params["W_dec"] *= rng.uniform(0.5, 2.0, (m, 1))  # the ReLU SAE's rows are free

    def loss(arrays):
        value, _, latents = sae.loss_and_grads(x, arrays, None, l1)
        return value, latents > 0

    _, grads, _ = sae.loss_and_grads(x, params, None, l1)
    checked_gradients(loss, params, grads, rng)


@given(seed=seeds, n=rows, d=widths, m=latent_counts, data=st.data())
def test_topk_sae_gradients_are_those_of_the_row_normalized_decoder(seed, n, d, m, data):
    """At a unit-norm decoder, the projected gradient is the gradient of the loss of
    W_dec / ||W_dec rows||: finite differences of that loss check the projection too."""
    k = data.draw(st.integers(1, m), label="k")
    rng = np.random.default_rng(seed)
    x, params = rng.standard_normal((n, d)), random_params(rng, d, m)

    def loss(arrays):
        normalized = arrays | {"W_dec": sae.normalize_rows(arrays["W_dec"].copy())}
        value, _, latents = sae.loss_and_grads(x, normalized, k, 0.0)
        return value, latents > 0

    _, grads, _ = sae.loss_and_grads(x, params, k, 0.0)
    checked_gradients(loss, params, grads, rng)


def test_projection_removes_exactly_the_component_along_each_row():
    rng = np.random.default_rng(0)
    W_dec = sae.normalize_rows(rng.standard_normal((5, 4)))
    grad = rng.standard_normal((5, 4))
    projected = sae.project_out_rows(grad.copy(), W_dec)
    np.testing.assert_allclose(np.einsum("md,md->m", projected, W_dec), 0, atol=1e-12)
    for row in range(5):
        rejection = grad[row] - (grad[row] @ W_dec[row]) * W_dec[row]
        np.testing.assert_allclose(projected[row], rejection, atol=1e-12)


# ---------------------------------------------------------------- TopK and unit norms


@given(seed=seeds, n=rows, d=widths, m=latent_counts, data=st.data())
def test_topk_keeps_the_k_largest_positive_preactivations(seed, n, d, m, data):
    k = data.draw(st.integers(1, m), label="k")
    rng = np.random.default_rng(seed)
    x, params = rng.standard_normal((n, d)), random_params(rng, d, m)
    latents, _ = sae.encode_forward(x, params, k)
    pre = (x - params["b_dec"]) @ params["W_enc"] + params["b_enc"]  # [n,m]
    kth_largest = np.sort(pre, axis=1)[:, -k][:, None]  # [n,1]
    np.testing.assert_array_equal(latents, np.where((pre >= kth_largest) & (pre > 0), pre, 0))
    params["b_enc"] += np.abs(pre).max() + 1  # every pre-activation positive: exactly k kept
    latents, _ = sae.encode_forward(x, params, k)
    assert (np.count_nonzero(latents, axis=1) == k).all()
    assert sae.l0(latents) == k


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_decoder_rows_have_unit_norm_after_every_step(steps):
    rng = np.random.default_rng(steps)
    data = rng.standard_normal((16 * steps, 6)) * rng.uniform(0.1, 10, 6)
    trained = sae.train_sae(data, 12, k=3, lr=0.1, batch_size=16, seed=steps)
    assert len(trained.losses) == steps
    np.testing.assert_allclose(np.linalg.norm(trained.params["W_dec"], axis=1), 1, rtol=1e-6)


def test_training_is_deterministic_in_the_seed():
    data = np.random.default_rng(0).standard_normal((512, 8))
    runs = [sae.train_sae(data, 16, k=2, batch_size=64, epochs=2, seed=seed) for seed in (3, 3, 4)]
    same, other = runs[0].params, runs[1].params
    assert all(same[name].tobytes() == other[name].tobytes() for name in same)
    assert runs[0].params["W_dec"].tobytes() != runs[2].params["W_dec"].tobytes()
    assert all(value.dtype == np.float32 for value in same.values())


def test_bad_settings_are_refused():
    data = np.zeros((8, 2))
    with pytest.raises(ValueError, match="kind"):
        sae.train_sae(data, 4, "jumprelu")
    with pytest.raises(ValueError, match="k="):
        sae.train_sae(data, 4, k=5)
    with pytest.raises(ValueError, match="batch_size"):
        sae.train_sae(data, 4, k=1, batch_size=9)


# ---------------------------------------------------------------- metrics


@given(seed=seeds, n=st.integers(2, 20), d=widths)
def test_fvu_is_zero_for_a_perfect_reconstruction_and_one_for_the_mean(seed, n, d):
    x = np.random.default_rng(seed).standard_normal((n, d))
    assert sae.fvu(x, x) == 0
    assert sae.fvu(x, np.broadcast_to(x.mean(axis=0), x.shape)) == pytest.approx(1)
    assert sae.fvu(x, np.zeros_like(x)) >= 1


def test_firing_fractions_on_hand_made_latents():
    latents = np.zeros((10, 4))
    latents[:, 0] = 1.0  # always on: dense
    latents[:2, 1] = 0.5  # on 20% of the rows: dense at 10%, not at 25%
    latents[0, 2] = 3.0  # on 10%: not more than 10%
    assert sae.l0(latents) == pytest.approx(1.3)
    assert sae.dead_fraction(latents) == 0.25
    assert sae.dense_fraction(latents) == 0.5
    assert sae.dense_fraction(latents, threshold=0.25) == 0.25


def identity_sae(d: int, kind: str) -> sae.SparseAutoencoder:
    """x -> [ReLU(x), ReLU(-x)] -> x exactly: 2d latents, d of them active (TopK k = d)."""
    eye = np.eye(d)
    params = {
        "W_enc": np.hstack([eye, -eye]),
        "b_enc": np.zeros(2 * d),
        "W_dec": np.vstack([eye, -eye]),
        "b_dec": np.zeros(d),
    }
    return sae.SparseAutoencoder(params, kind, d if kind == "topk" else None)


@pytest.fixture(scope="module")
def small_model():
    cfg = TransformerConfig.preset("gpt2-style").replace(d_model=16, n_heads=2, d_mlp=32)
    tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, (6, cfg.n_ctx))
    return Transformer(cfg, seed=0), tokens


@pytest.mark.parametrize("kind", sae.KINDS)
def test_splice_replaces_the_activation(small_model, kind):
    model, tokens = small_model
    hook = "blocks.0.hook_resid_post"
    identity = sae.spliced_losses(model, tokens, hook, identity_sae(16, kind))
    assert identity["sae"] == pytest.approx(identity["clean"], abs=1e-12)
    assert identity["recovered"] == pytest.approx(1)
    zero = identity_sae(16, kind)
    zero = sae.SparseAutoencoder({n: v * 0 for n, v in zero.params.items()}, kind, zero.k)
    zeroed = sae.spliced_losses(model, tokens, hook, zero)
    assert zeroed["sae"] == zeroed["zero"] != zeroed["clean"]
    assert zeroed["recovered"] == 0
    assert identity["zero"] == zeroed["zero"]


def test_clean_loss_is_the_models_own_next_token_loss(small_model):
    model, tokens = small_model
    clean = sae.next_token_loss(model(tokens), tokens)
    loss, _ = model.loss_and_grads(tokens[:, :-1], tokens[:, 1:])
    assert clean == pytest.approx(loss, rel=1e-12)


# ---------------------------------------------------------------- interpretability


def test_latent_eta2_is_the_projects_eta2_by_token_and_position():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 5, (30, 4))
    latents = np.maximum(rng.standard_normal((30, 4, 3)), 0)
    latents[..., 0] = tokens == 2  # a token latent
    latents[..., 1] = np.arange(4) == 1  # a position latent
    eta2 = sae.latent_eta2(latents, tokens)
    flat = latents.reshape(-1, 3)
    positions = np.broadcast_to(np.arange(4), tokens.shape).ravel()
    np.testing.assert_allclose(eta2[0], eta_squared(flat, tokens.ravel()), atol=1e-12)
    np.testing.assert_allclose(eta2[1], eta_squared(flat, positions), atol=1e-12)
    assert eta2[0, 0] == pytest.approx(1)
    assert eta2[1, 1] == pytest.approx(1)


def brute_single_token_share(latents, tokens, top_n):
    """The same share, one latent at a time, by sorting and counting."""
    flat, flat_tokens = latents.reshape(-1, latents.shape[-1]), tokens.ravel()
    shares = []
    for column in flat.T:
        top = np.argsort(-column, kind="stable")[:top_n]
        top = top[column[top] > 0]
        counts = Counter(flat_tokens[top].tolist())
        shares.append(max(counts.values()) / len(top) if len(top) else np.nan)
    return np.array(shares)


@given(seed=seeds, top_n=st.integers(1, 12))
def test_single_token_share_agrees_with_counting(seed, top_n):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 4, (5, 3))
    latents = np.maximum(rng.standard_normal((5, 3, 6)), 0) * rng.random(6)  # [5,3,6]
    latents[..., 0] = 0  # a dead latent
    latents[..., 1] = 2.0 * (tokens == 1) + rng.random((5, 3)) * 0.1 * (tokens == 1)
    expected = brute_single_token_share(latents, tokens, top_n)
    np.testing.assert_allclose(sae.single_token_share(latents, tokens, top_n), expected)
    assert np.isnan(expected[0])
    assert top_n > (tokens == 1).sum() or expected[1] == 1


def test_interpretability_summary_counts_planted_latents():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 10, (40, 5))
    latents = np.zeros((40, 5, 5))
    for token in range(3):  # three single-token latents
        latents[..., token] = (tokens == token) * (1 + rng.random((40, 5)))
    latents[..., 3] = np.arange(5) == 4  # a position latent
    summary = sae.interpretability_summary(latents, tokens, top_n=10)  # latent 4 is dead
    assert summary["live_latents"] == 4
    assert summary["single_token_fraction"] == 0.75
    assert summary["token_selective_fraction"] == 0.75
    assert summary["position_selective_fraction"] == 0.25


# ---------------------------------------------------------------- recovery


def planted_sparse_data(rng, n: int, d: int, n_features: int, k: int, noise: float):
    """Rows that are k-sparse positive combinations of `n_features` random unit vectors, plus
    Gaussian noise: (data [n,d], directions [n_features,d])."""
    directions = sae.normalize_rows(rng.standard_normal((n_features, d)))
    chosen = np.argsort(rng.random((n, n_features)), axis=1)[:, :k]  # [n,k]
    coefficients = np.zeros((n, n_features))
    np.put_along_axis(coefficients, chosen, rng.uniform(0.5, 1.5, (n, k)), axis=1)
    return coefficients @ directions + noise * rng.standard_normal((n, d)), directions


@pytest.mark.parametrize(
    ("kind", "n_latents", "settings"),
    [("topk", 24, {"k": 3}), ("relu", 32, {"l1_coefficient": 0.3})],
)
def test_sae_recovers_planted_directions(kind, n_latents, settings):
    rng = np.random.default_rng(0)
    data, directions = planted_sparse_data(rng, 20_000, 16, 24, 3, noise=0.01)
    trained = sae.train_sae(data, n_latents, kind, lr=3e-3, batch_size=256, epochs=5, **settings)
    decoder = sae.normalize_rows(trained.params["W_dec"].astype(np.float64))
    cosines = directions @ decoder.T  # [24, m]
    planted, learned = linear_sum_assignment(-cosines)
    assert cosines[planted, learned].min() > 0.9
    assert sae.fvu(data, trained.reconstruct(data)) < 0.15
