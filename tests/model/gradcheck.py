"""Finite-difference checks of analytic gradients, shared by the backward tests.

A backward pass is checked as a vector-Jacobian product: for a scalar `f(arrays)` (for a layer,
`sum(out * dout)` with a random upstream gradient `dout`; for the model, the loss) the analytic
gradient of each array is compared with central differences in float64,

    df/dx[i]             ~ (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)     (small arrays), or
    d/dt f(x + t u)|t=0  ~ (f(x + eps u) - f(x - eps u)) / (2 eps)         (any array, u random).

The directional check covers the whole tensor at the cost of two evaluations: it catches a
transpose, a dropped term or a wrong operand anywhere in it (a wrong gradient `g'` passes only
if `<g' - g, u> ~ 0`, which a random `u` makes improbable).

The error reported is `||a - n|| / (||a|| + ||n||)` (analytic `a`, numeric `n`); it passes when
`||a - n|| <= rtol (||a|| + ||n||) + atol` with `atol` the rounding noise of the difference
quotient, so that a gradient that is exactly zero (b_K, say) does not fail on noise alone.

For a piecewise-smooth function (ReLU) `f` may return `(value, region)`, the region naming the
smooth piece it was evaluated on (the sign pattern of every ReLU input): if a perturbation leaves
the region, the difference quotient straddles a kink and means nothing, so `KinkCrossed` is
raised and the test rejects that example.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

EPS = 1e-6
RTOL = 1e-6
TINY = 1e-300
# Rounding noise of a central difference is ~ machine eps * |f| / eps; allow a generous multiple.
NOISE_FACTOR = 100.0

Arrays = dict[str, np.ndarray]
# f(arrays) -> value, or (value, region) for a piecewise-smooth function.
Scalar = Callable[[Arrays], "float | tuple[float, np.ndarray]"]


class KinkCrossed(Exception):
    """A finite-difference step crossed a kink (e.g. a ReLU input changed sign)."""


@dataclass(frozen=True)
class Check:
    """One comparison of an analytic gradient with its finite-difference estimate."""

    name: str
    mode: str  # "elements" or "direction"
    analytic: np.ndarray
    numeric: np.ndarray
    atol: float

    @property
    def error(self) -> float:
        return relative_error(self.analytic, self.numeric)

    @property
    def passed(self) -> bool:
        diff = np.linalg.norm(self.analytic - self.numeric)
        scale = np.linalg.norm(self.analytic) + np.linalg.norm(self.numeric)
        return bool(diff <= RTOL * scale + self.atol)

    def describe(self) -> str:
        return (
            f"{self.name} [{self.mode}]: relative error {self.error:.3g} "
            f"(|analytic| {np.linalg.norm(self.analytic):.3g}, "
            f"|numeric| {np.linalg.norm(self.numeric):.3g}, atol {self.atol:.2g})"
        )


def relative_error(analytic, numeric) -> float:
    """||a - n|| / (||a|| + ||n||) over the whole array; 0 when both are zero."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    scale = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return float(np.linalg.norm(analytic - numeric) / max(scale, TINY))


def with_change(arrays: Arrays, name: str, delta: np.ndarray) -> Arrays:
    """A shallow copy of `arrays` with `arrays[name] + delta` in place of `arrays[name]`."""
    changed = dict(arrays)
    changed[name] = arrays[name] + delta
    return changed


def _noise(values: Iterable[float], eps: float) -> float:
    size = max([1.0] + [abs(v) for v in values])
    return NOISE_FACTOR * np.finfo(np.float64).eps * size / eps


def _evaluate(f: Scalar, arrays: Arrays) -> tuple[float, np.ndarray | None]:
    result = f(arrays)
    if isinstance(result, tuple):
        value, region = result
        return float(value), np.asarray(region)
    return float(result), None


def _difference(f: Scalar, arrays: Arrays, name: str, step: np.ndarray, region, eps: float):
    """(f(x + step) - f(x - step)) / (2 eps) and the rounding noise of that quotient."""
    values = []
    for point in (with_change(arrays, name, step), with_change(arrays, name, -step)):
        value, point_region = _evaluate(f, point)
        if region is not None and not np.array_equal(point_region, region):
            raise KinkCrossed(name)
        values.append(value)
    return (values[0] - values[1]) / (2 * eps), _noise(values, eps)


def directional_derivative(
    f: Scalar, arrays: Arrays, name: str, direction: np.ndarray, eps: float = EPS, region=None
) -> tuple[float, float]:
    """Central difference of t -> f(arrays with name + t * direction) at 0, and its noise.

    `region` is f's region at `arrays` (None: f is smooth); leaving it raises KinkCrossed.
    """
    return _difference(f, arrays, name, eps * direction, region, eps)


def numeric_gradient(
    f: Scalar, arrays: Arrays, name: str, eps: float = EPS, region=None
) -> tuple[np.ndarray, float]:
    """Central-difference gradient of f with respect to every element of `arrays[name]`."""
    x = arrays[name]
    grad = np.zeros(x.shape, dtype=np.float64)
    noise = 0.0
    for index in np.ndindex(*x.shape):
        step = np.zeros(x.shape, dtype=x.dtype)
        step[index] = eps
        grad[index], element_noise = _difference(f, arrays, name, step, region, eps)
        noise = max(noise, element_noise)
    return grad, noise * np.sqrt(max(x.size, 1))


def check_gradients(
    f: Scalar,
    arrays: Arrays,
    grads: Arrays,
    rng: np.random.Generator,
    *,
    names: Iterable[str] | None = None,
    max_elements: int = 48,
    n_directions: int = 2,
    eps: float = EPS,
) -> list[Check]:
    """Compare `grads[name]` with finite differences of `f` for each name (default: all of grads).

    Arrays of at most `max_elements` entries are checked element by element; every array is
    also checked along `n_directions` random unit directions.
    """
    region = _evaluate(f, arrays)[1]
    checks = []
    for name in grads if names is None else names:
        analytic = np.asarray(grads[name], dtype=np.float64)
        if analytic.shape != arrays[name].shape:
            raise AssertionError(
                f"gradient of {name} has shape {analytic.shape}, expected {arrays[name].shape}"
            )
        if analytic.size <= max_elements:
            numeric, atol = numeric_gradient(f, arrays, name, eps, region)
            checks.append(Check(name, "elements", analytic, numeric, atol))
        for _ in range(n_directions):
            direction = rng.standard_normal(analytic.shape)
            direction /= max(np.linalg.norm(direction), TINY)
            numeric, atol = directional_derivative(f, arrays, name, direction, eps, region)
            along = float(np.sum(analytic * direction))
            checks.append(Check(name, "direction", np.array(along), np.array(numeric), atol))
    return checks


def assert_gradients_match(checks: list[Check]) -> None:
    """Fail listing every check whose analytic and numeric gradients disagree."""
    failed = [check.describe() for check in checks if not check.passed]
    assert not failed, "analytic and numeric gradients disagree:\n  " + "\n  ".join(failed)


def vjp_scalar(forward: Callable[[Arrays], np.ndarray], dout: np.ndarray) -> Scalar:
    """f(arrays) = sum(forward(arrays) * dout): its gradient is the VJP of forward with dout.

    `forward` may return `(out, region)` for a piecewise-smooth layer; f then returns
    `(value, region)`.
    """

    def f(arrays: Arrays):
        result = forward(arrays)
        out, region = result if isinstance(result, tuple) else (result, None)
        value = float(np.sum(np.asarray(out, dtype=np.float64) * dout))
        return value if region is None else (value, region)

    return f
