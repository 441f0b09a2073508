"""The rotated-basis null (`units.rotated_basis`): its defining property, and that the claims'
measurements read it.

With all directions it is a rotation of the unit basis drawn from the Haar measure: it keeps every
inner product between the rows (the Gram matrix of the representation), and a fixed vector's
image is uniform on the sphere (squared coordinates 1/d on average, signs symmetric, the first
coordinate's law known; determinant +1 and -1 equally often). A set wider than
ROTATED_DIRECTIONS is read along that many random orthonormal directions (a Haar frame): each
direction uniform on the sphere, squared norms kept in expectation up to the factor k / d.
A claim whose rotated null were the units themselves would read the same statistic on both:
on planted unit-aligned effects the rotated basis must read far less.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from mechclaims.fixtures.registry import claim_thresholds, load_registry
from mechclaims.interp import units
from mechclaims.interp.claims import feature_detectors, selectivity
from mechclaims.interp.sources import source_for
from mechclaims.interp.stats import wilson_interval
from mechclaims.model.config import TransformerConfig

REGISTRY = load_registry(Path(__file__).resolve().parents[2] / "claims" / "registry.toml")
DRAWS = 2000


def _directions(d: int, rng: np.random.Generator) -> np.ndarray:
    """The directions rotated_basis reads a d-wide set along, [d, k]: the image of the identity."""
    return units.rotated_basis(np.eye(d), rng)


def _assert_uniform_on_the_sphere(images: np.ndarray) -> None:
    """images [draws, d] of one unit vector: each coordinate's square averages 1/d (within 5
    standard errors), each sign is positive half the time, and (x_0 + 1) / 2 follows
    Beta((d - 1) / 2, (d - 1) / 2), as on the uniform sphere."""
    draws, d = images.shape
    sd_of_square = np.sqrt(3 / (d * (d + 2)) - 1 / d**2)  # E x^4 = 3 / (d (d + 2)) on the sphere
    np.testing.assert_allclose((images**2).mean(axis=0), 1 / d, atol=5 * sd_of_square / draws**0.5)
    low, high = wilson_interval(np.sum(images > 0, axis=0), draws, confidence=0.999)
    assert np.all((low <= 0.5) & (high >= 0.5))
    corner = scipy.stats.beta((d - 1) / 2, (d - 1) / 2)
    assert scipy.stats.kstest((images[:, 0] + 1) / 2, corner.cdf).pvalue > 1e-3


@pytest.mark.parametrize("u", [1, 7, 64])
def test_with_all_directions_every_inner_product_between_rows_is_kept(u):
    acts = np.random.default_rng(40).standard_normal((6, 4, u)) * np.arange(1, u + 1)  # [n,T,u]
    rotated = units.rotated_basis(acts, np.random.default_rng(41))
    assert rotated.shape == acts.shape
    rows, rotated_rows = acts.reshape(-1, u), rotated.reshape(-1, u)
    np.testing.assert_allclose(rotated_rows @ rotated_rows.T, rows @ rows.T, atol=1e-9)
    directions = _directions(u, np.random.default_rng(42))
    np.testing.assert_allclose(directions.T @ directions, np.eye(u), atol=1e-12)
    np.testing.assert_allclose(directions @ directions.T, np.eye(u), atol=1e-12)


def test_the_rotation_is_haar_distributed():
    """A fixed unit vector's image is uniform on the sphere, and the rotation's determinant is
    -1 as often as +1: neither a fixed rotation nor QR without its sign fix passes."""
    d, rng = 5, np.random.default_rng(43)
    rotations = np.array([_directions(d, rng) for _ in range(DRAWS)])  # [draws,d,d]
    vector = np.arange(1.0, d + 1) / np.linalg.norm(np.arange(1.0, d + 1))
    _assert_uniform_on_the_sphere(rotations[:, 0])  # the image of the first unit
    _assert_uniform_on_the_sphere(vector @ rotations)
    negative = int(np.sum(np.linalg.det(rotations) < 0))
    low, high = wilson_interval(negative, DRAWS, confidence=0.999)
    assert low <= 0.5 <= high


def test_a_frame_of_fewer_directions_is_orthonormal_and_keeps_norms_in_expectation(monkeypatch):
    """A set wider than ROTATED_DIRECTIONS (here set to 3, on 7 units) is read along 3
    orthonormal directions, each uniform on the sphere: a row's squared norm is kept in
    expectation up to k / d, and so is every inner product between rows."""
    monkeypatch.setattr(units, "ROTATED_DIRECTIONS", 3)
    d, k, rng = 7, 3, np.random.default_rng(44)
    frames = np.array([_directions(d, rng) for _ in range(DRAWS)])  # [draws,d,k]
    assert frames.shape == (DRAWS, d, k)
    np.testing.assert_allclose(np.einsum("rdi,rdj->rij", frames, frames),
                               np.broadcast_to(np.eye(k), (DRAWS, k, k)), atol=1e-12)  # fmt: skip
    for direction in range(k):
        _assert_uniform_on_the_sphere(frames[:, :, direction])
    x, y = np.random.default_rng(45).standard_normal((2, d))
    projected_x, projected_y = x @ frames, y @ frames  # [draws,k]
    squared_norms, inner_products = np.sum(projected_x**2, 1), np.sum(projected_x * projected_y, 1)
    for value, expected in ((squared_norms, k / d * x @ x), (inner_products, k / d * x @ y)):
        assert abs(value.mean() - expected) < 5 * value.std() / DRAWS**0.5


def test_a_wide_unit_set_is_read_along_rotated_directions_orthonormal_directions():
    wide = units.ROTATED_DIRECTIONS + 6
    frame = _directions(wide, np.random.default_rng(46))
    assert frame.shape == (wide, units.ROTATED_DIRECTIONS)
    np.testing.assert_allclose(frame.T @ frame, np.eye(units.ROTATED_DIRECTIONS), atol=1e-10)


@pytest.mark.parametrize(
    ("module", "claim", "statistic"),
    [
        (feature_detectors, "feature-detectors", "median_holdout_d"),
        (selectivity, "selectivity", "median_explained"),
    ],
    ids=["feature-detectors", "selectivity"],
)
def test_a_claims_rotated_null_reads_less_of_a_unit_aligned_planted_effect(
    module, claim, statistic
):
    """On its positive control (one effect per unit: a detector, a token or a position code),
    the measurement's rotated basis mixes the units' effects and reads less than half of what
    the units read; were it the units themselves, it would read the same."""
    thresholds = claim_thresholds(REGISTRY["claims"][claim], "tiny-mha")
    source = source_for(
        TransformerConfig.preset("tiny-mha"), planted=module.CLAIM.controls.positive
    )
    result = module.CLAIM.controls.measure(source, 0, thresholds)
    assert result[f"rotated_{statistic}"] < result[f"network_{statistic}"] / 2, result
