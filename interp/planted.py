"""Planted models: synthetic sources for the controls, so that every controlled reading is shown
able to go either way.

A positive control plants in a random init of a preset's config an effect of exactly the kind a
claim asserts; a negative control puts the claim's null in the network's place. Both run through
the claim's own measurement and verdict code (tests/controls/): the positive must come out
supported, the negative must not. A planted model is a `Transformer` whose unit sets (the hook
points the claims read, `blocks.{l}.hook_resid_post` and `blocks.{l}.mlp.hook_post`) are
replaced at every forward pass by activations computed from its input, through the model's own
replacement hooks; what the embedding-alone null reads (the stream before any block) is the
init's own.

What a planted activation carries besides its effect comes from `prefix_noise`: standard normal
values that are a fixed function of the tokens up to a position, the unit and the model (a hash),
so a planted model is a causal function of its input, as the presets are: a prefix gives the same
activation wherever it occurs, and a design's distinct inputs are distinct for it too.

Hook kinds (the unit sets replaced; tokens are read as panel indices 0..9, as designs write them):

    detectors        claim 1, positive: each unit fires for one feature, token t at position p
                     (p one of the seed's 4), at p and after, by DETECTOR_EFFECT noise SDs
    embedding        claim 1, negative: each unit is a dimension of the embedding alone,
                     LN(W_E[x] + W_pos), in turn
    selective-units  claim 3, positive: most units encode the current token or the position
                     alone (SELECTIVE_SHARE), the others vary with the whole prefix, CONTEXT_SCALE
                     times more: selectivity that belongs to the units, not to every direction
    rotated          claims 3 and 4, negative: the network's own units along a random rotation
    circuits         claim 4, positive: a quarter of each unit set follows one signal of the
                     prefix, each unit with a random sign: strongly correlated and opposing pairs
                     that split the inputs between them
    relations        claim 5, positive: units count runs of two steps of +1 and of -1 between
                     neighbouring tokens (what makes ascending and descending what they are; a
                     single such step is in about half of all relations), beside which
                     positions hold equal tokens
    layout           claim 5, negative: units encode only which positions hold equal tokens,
                     every pair of positions alike (so layouts of one shape, ABAB, AABB and
                     ABBA, are coded alike but for the units' random weights)

Weight kinds (a model standing in for a trained one, compared with the init of its seed):

    kept             claim 6, positive: the init's weights, each moved by KEPT_NOISE of its
                     tensor's SD: a training that kept which neurons are selective
    unrelated        claim 6, negative: another random init in the trained model's place
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mechclaims.interp.stats import random_rotation
from mechclaims.interp.units import UNIT_KINDS
from mechclaims.model.layers import norm_forward
from mechclaims.model.transformer import Transformer

DETECTOR_POSITIONS = 4  # the seed's sequences: a detector's feature sits at one of 4 positions
DETECTOR_EFFECT = 3.0  # a detector moves its unit by 3 SDs of its other variation
SELECTIVE_SHARE = 0.75  # units of a set that are token- or position-selective (half each)
SELECTIVE_NOISE = 0.1  # their variation beyond their code, in SDs of the code
CONTEXT_SCALE = 3.0  # the SD of the other units, which vary with the whole prefix
CIRCUIT_SHARE = 0.25  # units of a set that follow the shared signal
CIRCUIT_NOISE = 0.02  # their own variation: |r| = 1 / (1 + 0.02²) within the circuit
RELATION_NOISE = 2.0  # a relation unit's noise SD, beside counts of 0-3: decoders off the ceiling
KEPT_NOISE = 0.1  # a kept model's weights move by a tenth of their tensor's SD
UNRELATED_OFFSET = 1_000_003  # the unrelated model's seed is its init's plus this
HOOK_KINDS = ("detectors", "embedding", "selective-units", "rotated", "circuits", "relations",
              "layout")  # fmt: skip
WEIGHT_KINDS = ("kept", "unrelated")
KINDS = HOOK_KINDS + WEIGHT_KINDS


@dataclass(frozen=True)
class Controls:
    """A controlled reading's controls: the measurement they run (the reading's own, on a model
    source) and the planted kinds of its positive and its negative control."""

    measure: Callable[..., dict]
    positive: str
    negative: str

    def __post_init__(self) -> None:
        for kind in (self.positive, self.negative):
            if kind not in KINDS:
                raise ValueError(f"unknown planted kind {kind!r}; allowed: {', '.join(KINDS)}")


def planted_model(kind: str, cfg, panel, seed: int) -> Transformer:
    """The planted model of `kind` (module docstring) on the init `seed` of `cfg`."""
    if kind == "kept":
        return kept_model(Transformer(cfg, seed=seed), np.random.default_rng([seed, _code(kind)]))
    if kind == "unrelated":
        return Transformer(cfg, seed=seed + UNRELATED_OFFSET)
    if kind not in HOOK_KINDS:
        raise ValueError(f"unknown planted kind {kind!r}; allowed: {', '.join(KINDS)}")
    return PlantedModel(cfg, seed, kind, panel)


def kept_model(model: Transformer, rng: np.random.Generator) -> Transformer:
    """`model` with every weight moved by KEPT_NOISE times its tensor's SD (a tensor that does
    not vary, a LayerNorm's gain or bias, stays)."""
    params = {
        name: value + KEPT_NOISE * value.std() * rng.standard_normal(value.shape)
        for name, value in model.params.items()
    }
    kept = Transformer.from_params(model.cfg, params)
    kept.seed = model.seed
    return kept


class PlantedModel(Transformer):
    """A random init whose unit sets are replaced by activations of a planted `kind`."""

    def __init__(self, cfg, seed: int, kind: str, panel) -> None:
        super().__init__(cfg, seed=seed)
        self.kind = kind
        self.panel_size = len(panel)
        self.panel_index = np.full(cfg.vocab_size, -1)  # [V] token id -> panel index
        self.panel_index[np.asarray(panel)] = np.arange(len(panel))

    def run_with_cache(self, tokens, names_filter=None, stop_at_layer=None, return_type="logits"):
        """As the init's, with every unit set replaced by the planted activations."""
        tokens = self.check_tokens(tokens)
        indices = self.panel_index[tokens]  # [n,T]
        if np.any(indices < 0):
            raise ValueError("a planted model reads only the tokens of its panel, got others")

        def plant(value: np.ndarray, hook: str) -> np.ndarray:
            key = (self.seed, _code(self.kind), _code(hook))
            return PLANTERS[self.kind](self, value, indices, tokens, key)

        hooks = [(template.format(layer=layer), plant) for layer in range(self.cfg.n_layers)
                 for template in UNIT_KINDS.values()]  # fmt: skip
        with self.hooks(hooks):
            return super().run_with_cache(tokens, names_filter, stop_at_layer, return_type)


def _draws(key: tuple, part: int) -> np.random.SeedSequence:
    """One stream of a unit set's planted draws: its key (model seed, kind, hook) and a part
    (0: parameters, 1: the units' noise, 2: a shared signal)."""
    return np.random.SeedSequence([*key, part])


def _code(text: str) -> int:
    return zlib.crc32(text.encode())


# ---------------------------------------------------------------------------------------------
# Noise that is a function of the prefix


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
_PREFIX_BASE = np.uint64(1_000_003)


def prefix_codes(indices: np.ndarray) -> np.ndarray:
    """A 64-bit code of each prefix x[:q+1] of indices [n, T]: [n, T] uint64 (sequences as
    numbers in base 1,000,003, digits index + 1, wrapping at 2**64)."""
    codes = np.empty(indices.shape, dtype=np.uint64)
    code = np.zeros(len(indices), dtype=np.uint64)
    for position in range(indices.shape[1]):
        code = code * _PREFIX_BASE + (indices[:, position] + 1).astype(np.uint64)
        codes[:, position] = code
    return codes


def prefix_noise(indices: np.ndarray, units: int, draws: np.random.SeedSequence) -> np.ndarray:
    """Standard normal values [n, T, units], each a fixed function of the prefix x[:q+1], the
    unit and `draws` (splitmix64 of their combination, then Box-Muller)."""
    salt = np.uint64(draws.generate_state(1, np.uint64)[0])
    unit_ids = (np.arange(units, dtype=np.uint64) + np.uint64(1)) * _MIX[0]  # [u]
    bits = _splitmix(prefix_codes(indices)[..., None] * _MIX[1] ^ unit_ids ^ salt)  # [n,T,u]
    high = ((bits >> np.uint64(32)).astype(np.float64) + 0.5) / 2.0**32  # in (0, 1)
    low = (bits & np.uint64(0xFFFFFFFF)).astype(np.float64) / 2.0**32  # in [0, 1)
    return np.sqrt(-2.0 * np.log(high)) * np.cos(2.0 * np.pi * low)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: a bijection of 64-bit words that mixes every bit."""
    x = x + _MIX[0]
    x = (x ^ (x >> np.uint64(30))) * _MIX[1]
    x = (x ^ (x >> np.uint64(27))) * _MIX[2]
    return x ^ (x >> np.uint64(31))


# ---------------------------------------------------------------------------------------------
# The hook kinds: (model, the real value [n,T,u], panel indices [n,T], token ids, the unit set's
# key) -> the planted value [n,T,u]


def _detectors(model, value, indices, tokens, key):
    T, units = value.shape[1:]
    rng = np.random.default_rng(_draws(key, 0))
    position = rng.integers(0, DETECTOR_POSITIONS, units)  # [u]
    token = rng.integers(0, model.panel_size, units)  # [u]
    held = indices[:, np.minimum(position, T - 1)] == token  # [n,u]: x_p = t
    since = np.arange(T)[:, None] >= position  # [T,u]: at p and after
    fires = held[:, None, :] & since & (position < T)  # [n,T,u]
    return DETECTOR_EFFECT * fires + prefix_noise(indices, units, _draws(key, 1))


def _embedding(model, value, indices, tokens, key):
    stream, _ = Transformer.run_with_cache(model, tokens, names_filter=(), stop_at_layer=0)
    normalized, _ = norm_forward(stream, {}, model.cfg.normalization, model.cfg.ln_eps)  # [n,T,d]
    return normalized[..., np.arange(value.shape[-1]) % normalized.shape[-1]]


def _selective_units(model, value, indices, tokens, key):
    T, units = value.shape[1:]
    rng = np.random.default_rng(_draws(key, 0))
    role = rng.permutation(units) / units  # [u] in [0, 1): token, position or context unit
    by_token = rng.standard_normal((model.panel_size, units))[indices]  # [n,T,u]
    by_position = rng.standard_normal((model.cfg.n_ctx, units))[:T]  # [T,u]
    noise = prefix_noise(indices, units, _draws(key, 1))  # [n,T,u]
    coded = np.where(role < SELECTIVE_SHARE / 2, by_token, by_position)  # [n,T,u]
    return np.where(role < SELECTIVE_SHARE, coded + SELECTIVE_NOISE * noise, CONTEXT_SCALE * noise)


def _rotated(model, value, indices, tokens, key):
    rotation = random_rotation(value.shape[-1], np.random.default_rng(_draws(key, 0)))  # [u,u]
    return (value.reshape(-1, value.shape[-1]) @ rotation).reshape(value.shape)


def _circuits(model, value, indices, tokens, key):
    units = value.shape[-1]
    rng = np.random.default_rng(_draws(key, 0))
    members = rng.permutation(units) < int(np.ceil(CIRCUIT_SHARE * units))  # [u]
    signs = rng.choice([-1.0, 1.0], units)  # [u]
    signal = prefix_noise(indices, 1, _draws(key, 2))  # [n,T,1]
    noise = prefix_noise(indices, units, _draws(key, 1))  # [n,T,u]
    return np.where(members, signs * signal + CIRCUIT_NOISE * noise, noise)


def _relations(model, value, indices, tokens, key):
    return _counted(value, indices, key, _runs(indices) + _equalities(indices))


def _layout(model, value, indices, tokens, key):
    return _counted(value, indices, key, _equalities(indices))


def _counted(value, indices, key, features: list) -> np.ndarray:
    """Units as random mixtures of features counted up to each position, with noise."""
    units = value.shape[-1]
    counts = np.stack([np.cumsum(feature, axis=1) for feature in features], axis=-1)  # [n,T,f]
    weights = np.random.default_rng(_draws(key, 0)).standard_normal((len(features), units))
    mixed = (counts.reshape(-1, len(features)) @ weights).reshape(*indices.shape, units)
    return mixed + RELATION_NOISE * prefix_noise(indices, units, _draws(key, 1))


def _runs(indices) -> list:
    """[n,T] indicators: the last two steps between neighbouring tokens are both +1, and both -1
    (mod 10)."""
    step = np.zeros(indices.shape, dtype=int)  # [n,T]: the step from the previous token
    step[:, 1:] = np.diff(indices, axis=1) % 10
    runs = []
    for value in (1, 9):
        run = np.zeros(indices.shape)
        run[:, 2:] = (step[:, 2:] == value) & (step[:, 1:-1] == value)
        runs.append(run)
    return runs


def _equalities(indices) -> list:
    """[n,T] indicators, one per pair of positions i < j: the token at j equals the one at i
    (set at j). Every pair alike, so layouts of the same shape (ABAB, AABB, ABBA) are coded
    alike up to the units' random weights."""
    T = indices.shape[1]
    features = []
    for j in range(1, T):
        for i in range(j):
            same = np.zeros(indices.shape)
            same[:, j] = indices[:, j] == indices[:, i]
            features.append(same)
    return features


PLANTERS = {
    "detectors": _detectors,
    "embedding": _embedding,
    "selective-units": _selective_units,
    "rotated": _rotated,
    "circuits": _circuits,
    "relations": _relations,
    "layout": _layout,
}
