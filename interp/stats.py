"""Statistics for claims about random transformers: permutation p-values, FDR control,
intervals, effect sizes, correlations, null features and discovery/holdout splits.

Plain functions on NumPy arrays, vectorized over many units at once. Conventions:

- Samples lie on the leading axis, units on the trailing axes: `values [n, units]`. Draws
  from a null are stacked in front of what they mimic: `null [m, units]`.
- Every function that draws random numbers takes an explicit `np.random.Generator`, so the
  same generator state gives the same result.
- A constant unit (zero variance) shows no effect: its eta², F and correlations are 0 and
  its p-values 1. An effect with zero spread but a nonzero difference (perfectly separated
  groups) is ±inf. No function returns NaN for constant input.
- Bad input raises `TypeError` (wrong kind) or `ValueError` (wrong value) naming the argument.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike

# Null draws are handled in chunks of at most this many float64 elements (32 MiB).
_MAX_CHUNK_ELEMENTS = 2**22
# Null draws within this relative distance below the observed value count as ties (>=): the same
# statistic summed in another order differs by rounding, which must not make it "smaller".
_TIE_RTOL = 1e-10
# scipy >= 1.15 names the generator `rng`; 1.11 to 1.14 call it `random_state`.
_BOOTSTRAP_RNG_KEYWORD = (
    "rng" if "rng" in inspect.signature(scipy.stats.bootstrap).parameters else "random_state"
)


class Interval(NamedTuple):
    low: np.ndarray
    high: np.ndarray


class Estimate(NamedTuple):
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray


class AnovaResult(NamedTuple):
    statistic: np.ndarray
    p_value: np.ndarray


class PermutationTest(NamedTuple):
    observed: np.ndarray  # [units...]
    null: np.ndarray  # [m, units...]
    p_values: np.ndarray  # [units...]


class Split(NamedTuple):
    discovery: np.ndarray  # sorted sample indices
    holdout: np.ndarray  # sorted sample indices


class SeedSummary(NamedTuple):
    median: np.ndarray
    low: np.ndarray  # 2.5th percentile
    high: np.ndarray  # 97.5th percentile


# ---------------------------------------------------------------------------------------------
# Permutation p-values and false discovery rate


def permutation_p_value(observed: ArrayLike, null_samples: ArrayLike) -> np.ndarray:
    """One-sided permutation p-value `(b + 1) / (m + 1)`, b = number of null draws >= observed.

    observed [...] and null_samples [m, ...] (one null draw per row). Larger is more extreme;
    for a two-sided test pass absolute values of a statistic centred at 0 under the null.
    Counting the observation as one draw of the null keeps p in [1/(m+1), 1], never 0.
    Null draws within a relative 1e-10 below observed count as ties (see `_TIE_RTOL`).
    Returns p [...].
    """
    observed = _float_array("observed", observed)
    null = _float_array("null_samples", null_samples)
    if null.ndim < 1 or len(null) < 1:
        raise ValueError("null_samples must hold at least one null draw on axis 0")
    if null.shape[1:] != observed.shape:
        raise ValueError(
            f"null_samples [m, ...] has trailing shape {null.shape[1:]}, "
            f"observed has shape {observed.shape}; they must match"
        )
    threshold = observed - _TIE_RTOL * np.abs(observed)
    exceed = np.sum(null >= threshold, axis=0)  # [m, ...] -> [...]
    return (exceed + 1) / (len(null) + 1)


def bh_adjust(p_values: ArrayLike, n_tests: int | None = None) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values), same shape as p_values.

    All entries form one family whatever the shape, so FDR control across
    units x tokens x positions is one call on the whole array. With the m p-values in
    ascending order, q_(i) = min(1, min_{j >= i} m p_(j) / j). `n_tests` m larger than the
    entries given: the family also holds m - size tests of p-value 1, left out (they change no
    q-value but m).
    """
    p = _float_array("p_values", p_values)
    if p.size == 0:
        raise ValueError("p_values is empty")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p_values must lie in [0, 1]")
    flat = p.ravel()  # [...] -> [m]
    m = flat.size if n_tests is None else n_tests
    if m < flat.size:
        raise ValueError(f"n_tests={m} is fewer than the {flat.size} p-values given")
    order = np.argsort(flat, kind="stable")
    scaled = flat[order] * (m / np.arange(1, flat.size + 1))  # factor >= 1: q >= p
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1]  # running min from the largest p down
    q = np.empty_like(flat)
    q[order] = np.minimum(q_sorted, 1.0)
    return q.reshape(p.shape)  # [m] -> [...]


def benjamini_hochberg(p_values: ArrayLike, alpha: float) -> np.ndarray:
    """Discoveries at false discovery rate alpha: boolean, same shape as p_values.

    The Benjamini–Hochberg step-up procedure over all entries (see `bh_adjust`); it controls
    the FDR at alpha for independent or positively dependent p-values.
    """
    alpha = _check_open_unit("alpha", alpha)
    return bh_adjust(p_values) <= alpha


# ---------------------------------------------------------------------------------------------
# Intervals


def wilson_interval(successes: ArrayLike, trials: ArrayLike, confidence: float = 0.95) -> Interval:
    """Wilson score interval of a binomial proportion, elementwise.

    successes and trials are integer arrays broadcastable to one shape [...], with
    0 <= successes <= trials and trials >= 1. The same interval as
    `scipy.stats.binomtest(k, n).proportion_ci(confidence, method="wilson")` (which takes
    scalars only): low is 0 when successes = 0 and high is 1 when successes = trials.
    Returns Interval(low [...], high [...]).
    """
    confidence = _check_open_unit("confidence", confidence)
    k = _integer_array("successes", successes)
    n = _integer_array("trials", trials)
    try:
        k, n = np.broadcast_arrays(k, n)
    except ValueError:
        raise ValueError(
            f"successes {k.shape} and trials {n.shape} do not broadcast to one shape"
        ) from None
    if np.any(n < 1):
        raise ValueError("trials must be at least 1")
    if np.any((k < 0) | (k > n)):
        raise ValueError("successes must lie in [0, trials]")
    z = scipy.stats.norm.ppf(0.5 + 0.5 * confidence)
    p = k / n
    denominator = 2 * (n + z**2)
    center = (2 * n * p + z**2) / denominator
    half_width = z / denominator * np.sqrt(4 * n * p * (1 - p) + z**2)
    low = np.where(k == 0, 0.0, center - half_width)
    high = np.where(k == n, 1.0, center + half_width)
    return Interval(low, high)


def bootstrap_interval(
    samples: ArrayLike | tuple[ArrayLike, ...],
    statistic: Callable[..., np.ndarray] = np.mean,
    *,
    rng: np.random.Generator,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    method: str = "BCa",
) -> Estimate:
    """A statistic and its bootstrap confidence interval, per unit (`scipy.stats.bootstrap`).

    samples is one array [n, ...] or a tuple of arrays [n_i, ...] (independent groups such as
    `(treated, control)`), each resampled along axis 0 on its own. statistic(*samples, axis)
    must reduce along `axis` and return [...]: `np.mean`, `np.median`, `cohens_d`,
    `glass_delta`. Where every resample gives the same value (a constant unit) the interval
    is (value, value), for which BCa is otherwise undefined. A unit whose BCa interval is
    undefined for another reason is NaN with a RuntimeWarning; use method="percentile" there.
    Returns Estimate(value [...], low [...], high [...]).
    """
    _check_rng(rng)
    confidence = _check_open_unit("confidence", confidence)
    _check_count("n_resamples", n_resamples, minimum=2)
    groups = samples if isinstance(samples, tuple) else (samples,)
    groups = tuple(_float_array(f"samples[{i}]", g) for i, g in enumerate(groups))
    for i, group in enumerate(groups):
        if group.ndim < 1 or len(group) < 2:
            raise ValueError(f"samples[{i}] needs at least 2 samples on axis 0")
    value = np.asarray(statistic(*groups, axis=0))
    batch = max(1, _MAX_CHUNK_ELEMENTS // sum(g.size for g in groups))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        result = scipy.stats.bootstrap(
            groups,
            statistic,
            n_resamples=n_resamples,
            batch=batch,
            vectorized=True,
            axis=0,
            confidence_level=confidence,
            method=method,
            **{_BOOTSTRAP_RNG_KEYWORD: rng},
        )
    resampled = result.bootstrap_distribution  # [..., n_resamples]
    constant = np.all(resampled == resampled[..., :1], axis=-1)  # [...]
    low = np.where(constant, value, result.confidence_interval.low)
    high = np.where(constant, value, result.confidence_interval.high)
    undefined = np.isnan(low) | np.isnan(high)
    if np.any(undefined):
        warnings.warn(
            f"the {method} interval is undefined for {np.count_nonzero(undefined)} unit(s) "
            "(NaN); method='percentile' avoids this",
            RuntimeWarning,
            stacklevel=2,
        )
    return Estimate(value, low, high)


# ---------------------------------------------------------------------------------------------
# Effect sizes


def cohens_d(treated: ArrayLike, control: ArrayLike, axis: int = 0) -> np.ndarray:
    """Cohen's d = (mean(treated) - mean(control)) / pooled SD, per unit.

    treated [n_t, ...] and control [n_c, ...] hold samples on `axis` and share the unit shape.
    Pooled SD = sqrt(((n_t - 1) s_t² + (n_c - 1) s_c²) / (n_t + n_c - 2)) with sample
    variances s². When both groups are constant, d is 0 if they hold the same value and
    ±inf otherwise. Returns d [...].
    """
    treated, control = _two_groups(treated, control, axis)
    n_t, n_c = len(treated), len(control)
    pooled_variance = (
        (n_t - 1) * treated.var(axis=0, ddof=1) + (n_c - 1) * control.var(axis=0, ddof=1)
    ) / (n_t + n_c - 2)
    difference = treated.mean(axis=0) - control.mean(axis=0)  # [n, ...] -> [...]
    both_constant = _is_constant(treated) & _is_constant(control)
    return _standardized(
        difference, np.sqrt(pooled_variance), treated[0] - control[0], both_constant
    )


def glass_delta(treated: ArrayLike, control: ArrayLike, axis: int = 0, ddof: int = 0) -> np.ndarray:
    """Glass's delta = (mean(treated) - mean(control)) / std(control), per unit.

    The seed's `(mean_with - mean_without) / std_without`: the spread of the control group
    alone. ddof=0 is `np.std`'s default, as the seed used; ddof=1 gives the sample SD.
    Shapes as `cohens_d`. When the control group is constant, delta is 0 if the treated mean
    equals the control value and ±inf otherwise. Returns delta [...].
    """
    _check_count("ddof", ddof, minimum=0)
    treated, control = _two_groups(treated, control, axis)
    if len(control) <= ddof:
        raise ValueError(f"control needs more than ddof={ddof} samples, got {len(control)}")
    treated_mean = np.where(_is_constant(treated), treated[0], treated.mean(axis=0))
    difference = treated_mean - control.mean(axis=0)  # [n, ...] -> [...]
    return _standardized(
        difference, control.std(axis=0, ddof=ddof), treated_mean - control[0], _is_constant(control)
    )


def eta_squared(values: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """Share of each unit's variance explained by the groups: SS_between / SS_total.

    values [n, ...] (samples on axis 0, any unit shape), labels [n] naming each sample's group
    (at least 2 groups). Lies in [0, 1]; 0 for a constant unit. Returns eta² [...].
    """
    values, unit_shape = _samples_by_units("values", values, minimum=2)
    codes, counts = _group_codes(labels, len(values), min_groups=2)
    centered = center_columns(values)
    ss_between = _between_group_ss(centered, _one_hot(codes, len(counts)), counts)
    ss_total = np.sum(centered**2, axis=0)  # [n, units] -> [units]
    return _explained_share(ss_between, ss_total).reshape(unit_shape)


def one_way_anova(values: ArrayLike, labels: ArrayLike) -> AnovaResult:
    """One-way ANOVA F test of equal group means, per unit.

    values [n, ...], labels [n] with k >= 2 groups and n > k. F = (SS_between / (k - 1)) /
    (SS_within / (n - k)), p from the F(k - 1, n - k) distribution, as `scipy.stats.f_oneway`.
    A constant unit has F = 0 and p = 1; groups that are each constant but differ have
    F = inf and p = 0. Returns AnovaResult(statistic [...], p_value [...]).
    """
    values, unit_shape = _samples_by_units("values", values, minimum=3)
    codes, counts = _group_codes(labels, len(values), min_groups=2)
    n, k = len(values), len(counts)
    if n <= k:
        raise ValueError(f"one_way_anova needs more samples than groups, got n={n}, k={k}")
    centered = center_columns(values)
    group_sums = _one_hot(codes, k) @ centered  # [k, n] @ [n, units] -> [k, units]
    ss_between = np.sum(group_sums**2 / counts[:, None], axis=0)  # [k, units] -> [units]
    residuals = centered - (group_sums / counts[:, None])[codes]  # [n, units]
    ss_within = np.sum(residuals**2, axis=0)  # [n, units] -> [units]
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (ss_between / (k - 1)) / (ss_within / (n - k))
    f = np.where(ss_between == 0, 0.0, f)  # constant unit (0/0): no effect
    p = scipy.stats.f.sf(f, k - 1, n - k)
    return AnovaResult(f.reshape(unit_shape), p.reshape(unit_shape))


def permutation_test_eta_squared(
    values: ArrayLike,
    labels: ArrayLike,
    *,
    rng: np.random.Generator,
    n_permutations: int = 999,
    strata: ArrayLike | None = None,
) -> PermutationTest:
    """Eta² per unit held against its label-permutation null.

    values [n, ...], labels [n]. Each of the m = n_permutations permuted label vectors applies
    to all units at once, so the nulls of different units share their permutations. With
    strata [n], labels are permuted only within strata (see `permute_labels`): permuting
    tokens within positions keeps a position effect out of the token null. Group sums come
    from one-hot matrix products [m, k, n] @ [n, units], drawn and computed in chunks of m
    that bound memory; the result does not depend on the chunk size.
    A constant unit has observed 0, null 0 and p-value 1.
    Returns PermutationTest(observed [...], null [m, ...], p_values [...]).
    """
    _check_rng(rng)
    _check_count("n_permutations", n_permutations, minimum=1)
    values, unit_shape = _samples_by_units("values", values, minimum=2)
    codes, counts = _group_codes(labels, len(values), min_groups=2)
    n, units, k = *values.shape, len(counts)
    centered = center_columns(values)
    ss_total = np.sum(centered**2, axis=0)  # [n, units] -> [units]
    chunk = max(1, _MAX_CHUNK_ELEMENTS // (k * (n + units)))
    null_ss_between = []
    for start in range(0, n_permutations, chunk):
        size = min(chunk, n_permutations - start)
        permuted = permute_labels(codes, rng, size, strata)  # [size, n]
        null_ss_between.append(_between_group_ss(centered, _one_hot(permuted, k), counts))
    null = _explained_share(np.concatenate(null_ss_between), ss_total)  # [m, units]
    observed_ss_between = _between_group_ss(centered, _one_hot(codes, k), counts)
    observed = _explained_share(observed_ss_between, ss_total)  # [units]
    p_values = permutation_p_value(observed, null)
    return PermutationTest(
        observed.reshape(unit_shape),
        null.reshape(n_permutations, *unit_shape),
        p_values.reshape(unit_shape),
    )


# ---------------------------------------------------------------------------------------------
# Correlations


def cross_correlation(features_a: ArrayLike, features_b: ArrayLike) -> np.ndarray:
    """Pearson r between every unit of features_a [n, a] and every unit of features_b [n, b].

    A constant unit has r = 0 with every unit. Returns r [a, b] in [-1, 1].
    """
    a = _features("features_a", features_a)
    b = _features("features_b", features_b)
    if len(a) != len(b):
        raise ValueError(f"features_a has {len(a)} samples but features_b has {len(b)}")
    r = _unit_norm_columns(a).T @ _unit_norm_columns(b)  # [a, n] @ [n, b] -> [a, b]
    return np.clip(r, -1.0, 1.0)


def correlation_matrix(features: ArrayLike) -> np.ndarray:
    """Pearson r between all pairs of units of features [n, units], as `np.corrcoef`.

    The diagonal is 1 for a non-constant unit. A constant unit has r = 0 with every unit, itself
    included (where `np.corrcoef` gives NaN). Returns r [units, units], symmetric.
    """
    features = _features("features", features)
    r = cross_correlation(features, features)  # [units, units]
    lower = np.tril_indices(len(r), k=-1)
    r[lower] = r.T[lower]  # BLAS may round the two triangles differently: mirror the upper
    np.fill_diagonal(r, np.where(_is_constant(features), 0.0, 1.0))
    return r


def effective_sample_size(inputs: ArrayLike) -> int:
    """Number of distinct inputs: distinct rows of inputs [n, ...] (e.g. token sequences).

    A correlation over activations rests on this many independent observations, not on the
    row count: repeating an input adds no evidence. Pass it as n_effective to
    `correlation_p_value` and `fisher_z_interval`.
    """
    inputs = np.asarray(inputs)
    if inputs.dtype.kind not in "biuf":
        raise TypeError(f"inputs must be a numeric array, got dtype {inputs.dtype}")
    if inputs.ndim < 1 or len(inputs) < 1:
        raise ValueError("inputs needs at least one row on axis 0")
    _check_finite("inputs", inputs)
    rows = inputs.reshape(len(inputs), -1)  # [n, ...] -> [n, features]
    return len(np.unique(rows, axis=0))


def correlation_p_value(r: ArrayLike, n_effective: ArrayLike) -> np.ndarray:
    """Two-sided p-value of Pearson r against no correlation, elementwise.

    t = r sqrt((n - 2) / (1 - r²)) on n - 2 degrees of freedom (`scipy.stats.t`), the p-value
    of `scipy.stats.pearsonr`. n_effective (>= 3, broadcastable to r) must be the number of
    distinct inputs (`effective_sample_size`), not the row count. r = 0 gives 1, |r| = 1 gives 0.
    """
    r = _correlations(r)
    n = _integer_array("n_effective", n_effective)
    if np.any(n < 3):
        raise ValueError("n_effective must be at least 3 for a correlation p-value")
    df = n - 2
    with np.errstate(divide="ignore"):
        t = np.abs(r) * np.sqrt(df / (1 - r**2))  # inf at |r| = 1
    return np.minimum(2 * scipy.stats.t.sf(t, df), 1.0)


def fisher_z_interval(r: ArrayLike, n_effective: ArrayLike, confidence: float = 0.95) -> Interval:
    """Confidence interval of Pearson r by Fisher's z: tanh(arctanh(r) ± z_c / sqrt(n - 3)).

    r [...] in [-1, 1]; n_effective (>= 4, broadcastable to r) must be the number of distinct
    inputs (`effective_sample_size`), not the row count. The interval of |r| = 1 is (r, r).
    Returns Interval(low [...], high [...]).
    """
    confidence = _check_open_unit("confidence", confidence)
    r = _correlations(r)
    n = _integer_array("n_effective", n_effective)
    if np.any(n < 4):
        raise ValueError("n_effective must be at least 4 for a Fisher z interval")
    half_width = scipy.stats.norm.ppf(0.5 + 0.5 * confidence) / np.sqrt(n - 3)
    with np.errstate(divide="ignore"):
        z = np.arctanh(r)  # ±inf at |r| = 1
    return Interval(np.tanh(z - half_width), np.tanh(z + half_width))


# ---------------------------------------------------------------------------------------------
# Null features, label permutations and splits


def random_rotation(d: int, rng: np.random.Generator, directions: int | None = None) -> np.ndarray:
    """A Haar-random orthogonal matrix [d, d] (determinant +1 or -1, each half the time); with
    `directions` k < d, its first k columns: k random orthonormal directions [d, k] (a Haar
    frame), for nulls whose statistics are medians and rates over directions, at O(d k²)
    instead of O(d³).

    QR of a standard Gaussian matrix with the columns' signs fixed so that R has a positive
    diagonal (Mezzadri 2007); without that fix, Q is not uniformly distributed.
    """
    _check_count("d", d, minimum=1)
    _check_rng(rng)
    k = d if directions is None else min(d, directions)
    q, r = np.linalg.qr(rng.standard_normal((d, k)))  # [d,k], [k,k]
    return q * np.sign(np.diag(r))


def rotate_units(features: ArrayLike, rotation: ArrayLike) -> np.ndarray:
    """Features expressed in a rotated unit basis: features [..., d] @ rotation [d, k].

    The random-rotation null: it keeps every geometric property of the representation and
    destroys any privileged alignment with the neuron basis. rotation's columns must be
    orthonormal (a rotation, or a frame of k < d random directions).
    """
    features = _float_array("features", features)
    rotation = _float_array("rotation", rotation)
    if rotation.ndim != 2 or rotation.shape[0] < rotation.shape[1]:
        raise ValueError(f"rotation must be a matrix [d, k] with k <= d, got {rotation.shape}")
    d, k = rotation.shape
    if features.ndim < 1 or features.shape[-1] != d:
        raise ValueError(f"features [..., d] has shape {features.shape}, rotation has d={d}")
    if not np.allclose(rotation.T @ rotation, np.eye(k), atol=1e-8):
        raise ValueError("rotation must have orthonormal columns (rotation.T @ rotation == I)")
    rotated = features.reshape(-1, d) @ rotation  # one 2-D GEMM [n, d] @ [d, k] -> [n, k]
    return rotated.reshape(*features.shape[:-1], k)


def gaussian_features(n: int, units: int, rng: np.random.Generator) -> np.ndarray:
    """I.i.d. standard normal features [n, units]: the null of features with no structure."""
    _check_count("n", n, minimum=1)
    _check_count("units", units, minimum=1)
    _check_rng(rng)
    return rng.standard_normal((n, units))


def permute_labels(
    labels: ArrayLike, rng: np.random.Generator, m: int, strata: ArrayLike | None = None
) -> np.ndarray:
    """m independent uniformly random permutations of labels [n]: returns [m, n].

    With strata [n], labels move only among samples of the same stratum (a restricted
    permutation): tokens permuted within each position keep every position's token counts.
    Successive calls on one generator draw the same permutations as one call for all rows.
    """
    _check_rng(rng)
    _check_count("m", m, minimum=1)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D [n], got shape {labels.shape}")
    n = len(labels)
    if strata is None:  # one Fisher-Yates pass per row: ~9x faster than the lexsort below
        return rng.permuted(np.broadcast_to(labels, (m, n)), axis=1)
    strata_codes, counts = _group_codes(strata, n, min_groups=1, name="strata")
    grouped = np.argsort(strata_codes, kind="stable")  # [n] sample indices, stratum by stratum
    # shuffled [m, n]: each row's indices stratum by stratum too, in random order within one
    if np.all(counts == counts[0]):  # equal strata: shuffle the rows of a [strata, size] grid
        blocks = np.broadcast_to(grouped.reshape(len(counts), -1), (m, len(counts), counts[0]))
        shuffled = rng.permuted(blocks, axis=-1).reshape(m, n)
    else:  # the integer part of code + key orders by stratum, the key at random within it
        shuffled = np.argsort(strata_codes + rng.random((m, n)), axis=-1)
    permuted = np.empty((m, n), dtype=labels.dtype)
    permuted[:, grouped] = labels[shuffled]  # a sample receives a label from its own stratum
    return permuted


def stratified_split(labels: ArrayLike, fraction: float, rng: np.random.Generator) -> Split:
    """Random split of samples into discovery and holdout with every label in both halves.

    labels [n]; each label needs at least 2 samples. Per label, round(fraction * count) of its
    samples go to discovery, clipped so that each half keeps at least one. The halves are
    disjoint, cover 0..n-1, and depend only on labels, fraction and the generator's state.
    Returns Split(discovery, holdout), sorted index arrays.
    """
    fraction = _check_open_unit("fraction", fraction)
    _check_rng(rng)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D [n], got shape {labels.shape}")
    codes, counts = _group_codes(labels, len(labels), min_groups=1)
    if np.any(counts < 2):
        raise ValueError(
            "every label needs at least 2 samples to appear in both halves; "
            f"{np.count_nonzero(counts < 2)} label(s) have 1"
        )
    order = np.lexsort((rng.random(len(codes)), codes))  # grouped by label, random within
    group_starts = np.cumsum(counts) - counts  # [k]
    rank_in_group = np.arange(len(codes)) - np.repeat(group_starts, counts)  # [n], along order
    quota = np.clip(np.rint(fraction * counts), 1, counts - 1)  # [k]
    to_discovery = rank_in_group < quota[codes[order]]  # [n], along order
    return Split(np.sort(order[to_discovery]), np.sort(order[~to_discovery]))


def discovery_split(n: int, fraction: float, rng: np.random.Generator) -> Split:
    """Random split of n samples into discovery (round(fraction * n), at least 1) and holdout
    (the rest, at least 1): disjoint, covering 0..n-1, deterministic in the generator.

    Pick hypotheses on discovery, confirm them on holdout. Returns Split of sorted indices.
    """
    _check_count("n", n, minimum=2)
    return stratified_split(np.zeros(n, dtype=int), fraction, rng)


def summarize_across_seeds(values: ArrayLike) -> SeedSummary:
    """Median and central 95% range (2.5th, 97.5th percentiles) over seeds on axis 0.

    values [seeds, ...]; returns SeedSummary(median [...], low [...], high [...]).
    """
    values = _float_array("values", values)
    if values.ndim < 1 or len(values) < 1:
        raise ValueError("values needs at least one seed on axis 0")
    median, low, high = np.percentile(values, [50.0, 2.5, 97.5], axis=0)  # [3, ...]
    return SeedSummary(median, low, high)


# ---------------------------------------------------------------------------------------------
# Helpers


def center_columns(values: np.ndarray) -> np.ndarray:
    """Columns of values [n, units] minus their means, exactly zero in constant columns."""
    shifted = values - values[:1]  # [n, units]; a constant column becomes exact zeros
    return shifted - shifted.mean(axis=0)


def _one_hot(codes: np.ndarray, k: int) -> np.ndarray:
    """Group indicator matrices: codes [..., n] in 0..k-1 -> [..., k, n] float."""
    return (codes[..., None, :] == np.arange(k)[:, None]).astype(np.float64)


def _between_group_ss(centered: np.ndarray, one_hot: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Between-group sum of squares sum_g S_g² / n_g of centered [n, units] -> [..., units]."""
    n, units = centered.shape
    # One 2-D GEMM [(...*k), n] @ [n, units]: a broadcast 3-D matmul is twice as slow.
    group_sums = (one_hot.reshape(-1, n) @ centered).reshape(*one_hot.shape[:-1], units)
    return np.sum(group_sums**2 / counts[:, None], axis=-2)  # [..., k, units] -> [..., units]


def _explained_share(ss_between: np.ndarray, ss_total: np.ndarray) -> np.ndarray:
    """ss_between / ss_total clipped to [0, 1]; 0 where ss_total is 0 (constant unit)."""
    safe_total = np.where(ss_total > 0, ss_total, 1.0)
    return np.where(ss_total > 0, np.clip(ss_between / safe_total, 0.0, 1.0), 0.0)


def _standardized(
    difference: np.ndarray, scale: np.ndarray, exact_difference: np.ndarray, degenerate: np.ndarray
) -> np.ndarray:
    """difference / scale; where degenerate (zero spread), 0 or ±inf by exact_difference."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = difference / scale
    degenerate_value = np.where(exact_difference == 0, 0.0, np.copysign(np.inf, exact_difference))
    return np.where(degenerate, degenerate_value, ratio)


def _is_constant(samples: np.ndarray) -> np.ndarray:
    """Whether all samples [n, ...] are exactly equal, per unit: [n, ...] -> [...]."""
    return np.all(samples == samples[:1], axis=0)


def _unit_norm_columns(features: np.ndarray) -> np.ndarray:
    """Centered columns scaled to unit norm; constant columns stay zero. [n, units]."""
    centered = center_columns(features)
    norms = np.sqrt(np.sum(centered**2, axis=0))  # [n, units] -> [units]
    return centered / np.where(norms > 0, norms, 1.0)


def _two_groups(treated: ArrayLike, control: ArrayLike, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Both groups as float arrays with samples moved to axis 0 and matching unit shapes."""
    groups = []
    for name, group in (("treated", treated), ("control", control)):
        group = _float_array(name, group)
        if group.ndim < 1:
            raise ValueError(f"{name} must have a sample axis, got a scalar")
        group = np.moveaxis(group, axis, 0)  # [..., n, ...] -> [n, ...]
        if len(group) < 2:
            raise ValueError(f"{name} needs at least 2 samples, got {len(group)}")
        groups.append(group)
    treated, control = groups
    if treated.shape[1:] != control.shape[1:]:
        raise ValueError(
            f"treated and control must share the unit shape, got {treated.shape[1:]} "
            f"and {control.shape[1:]}"
        )
    return treated, control


def _samples_by_units(
    name: str, values: ArrayLike, minimum: int
) -> tuple[np.ndarray, tuple[int, ...]]:
    """values [n, ...] as float [n, units] and the unit shape [...] to restore."""
    values = _float_array(name, values)
    if values.ndim < 1 or len(values) < minimum:
        raise ValueError(f"{name} needs at least {minimum} samples on axis 0")
    return values.reshape(len(values), -1), values.shape[1:]  # [n, ...] -> [n, units]


def _features(name: str, features: ArrayLike) -> np.ndarray:
    features = _float_array(name, features)
    if features.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, units], got shape {features.shape}")
    if len(features) < 2:
        raise ValueError(f"{name} needs at least 2 samples, got {len(features)}")
    return features


def _group_codes(
    labels: ArrayLike, n: int, min_groups: int, name: str = "labels"
) -> tuple[np.ndarray, np.ndarray]:
    """labels [n] as group codes [n] in 0..k-1 (sorted label order) and group sizes [k]."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D [n], got shape {labels.shape}")
    if len(labels) != n:
        raise ValueError(f"{name} has {len(labels)} entries, expected one per sample ({n})")
    if labels.dtype.kind == "f":
        _check_finite(name, labels)
    groups, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(groups) < min_groups:
        raise ValueError(f"{name} must name at least {min_groups} groups, got {len(groups)}")
    return codes.reshape(-1), counts


def _correlations(r: ArrayLike) -> np.ndarray:
    r = _float_array("r", r)
    if np.any(np.abs(r) > 1):
        raise ValueError("r must lie in [-1, 1]")
    return r


def _float_array(name: str, x: ArrayLike) -> np.ndarray:
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    array = array.astype(np.float64)
    _check_finite(name, array)
    return array


def _integer_array(name: str, x: ArrayLike) -> np.ndarray:
    array = np.asarray(x)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be an integer array, got dtype {array.dtype}")
    _check_finite(name, array)
    if array.dtype.kind == "f" and np.any(array != np.round(array)):
        raise ValueError(f"{name} must hold whole numbers")
    return array.astype(np.int64)


def _check_finite(name: str, array: np.ndarray) -> None:
    bad = np.count_nonzero(~np.isfinite(array))
    if bad:
        raise ValueError(f"{name} must be finite; it has {bad} NaN or infinite entries")


def _check_open_unit(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0 < value < 1:  # also rejects NaN
        raise ValueError(f"{name} must lie in the open interval (0, 1), got {value}")
    return float(value)


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _check_rng(rng: np.random.Generator) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
