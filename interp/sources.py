"""What a measurement runs on: the model, and the token panel its input designs draw from.

The seed's experiments use a vocabulary of ten tokens ("token 7 at position 3", patterns mod 10).
Designs therefore work in panel indices 0..9, and the model sees `panel[index]`: the whole
vocabulary when it has 10 tokens, else 10 token ids chosen by a rule (`token_panel`), so that
every claim runs for any vocabulary from 10 to 50257.

A `ModelSource` is a pure, picklable value (a measurement's first argument): a config and the
panel, and where the weights come from:

    ModelSource(cfg, panel)                      a random init drawn by the measurement's seed
    ModelSource(cfg, panel, model_seed=7)        the random init of seed 7, whatever the seed
    ModelSource(cfg, panel, checkpoint="a.npz")  the weights of a checkpoint (cfg is its config)

With a fixed model (the last two), the measurement's seed draws only the inputs and nulls: a
checkpoint and its random baselines are measured on the same inputs. `init_seed` names the seed
a checkpoint's weights were first drawn with, when known (mechclaims' trainer records it): claim
6 compares a model with its own initialization.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mechclaims.interp.planted import KINDS, planted_model
from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer

PANEL_SIZE = 10  # the seed's vocabulary
PANEL_RULES = ("spread", "first")
DEFAULT_PANEL_RULE = "spread"


def token_panel(vocab_size: int, rule: str = DEFAULT_PANEL_RULE) -> tuple[int, ...]:
    """The 10 token ids the designs draw from, by `rule`:

    spread     ids evenly spaced over the vocabulary, 0 and vocab_size - 1 included
    first      ids 0..9
    I,J,...    these 10 distinct ids

    With a vocabulary of 10 every rule but an explicit list gives 0..9.
    """
    if vocab_size < PANEL_SIZE:
        raise ValueError(
            f"the designs need {PANEL_SIZE} tokens; the model's vocabulary has {vocab_size}"
        )
    if rule == "first":
        return tuple(range(PANEL_SIZE))
    if rule == "spread":
        spaced = np.floor(np.linspace(0, vocab_size - 1, PANEL_SIZE) + 0.5).astype(int)
        return tuple(int(token) for token in spaced)
    return _listed_panel(rule, vocab_size)


def _listed_panel(rule: str, vocab_size: int) -> tuple[int, ...]:
    try:
        ids = tuple(int(part) for part in str(rule).split(","))
    except ValueError:
        raise ValueError(
            f"token panel must be {' or '.join(PANEL_RULES)} or {PANEL_SIZE} comma-separated "
            f"token ids, got {rule!r}"
        ) from None
    if len(ids) != PANEL_SIZE or len(set(ids)) != PANEL_SIZE:
        raise ValueError(f"token panel needs {PANEL_SIZE} distinct token ids, got {rule!r}")
    if min(ids) < 0 or max(ids) >= vocab_size:
        raise ValueError(f"token panel ids must lie in [0, {vocab_size}), got {rule!r}")
    return ids


@dataclass(frozen=True)
class ModelSource:
    """A model and the panel of its designs (see the module docstring)."""

    cfg: TransformerConfig
    panel: tuple[int, ...]
    model_seed: int | None = None
    checkpoint: str | None = None
    init_seed: int | None = None
    planted: str | None = None  # a planted kind (mechclaims.interp.planted.KINDS)

    def __post_init__(self) -> None:
        if self.planted is not None and self.planted not in KINDS:
            raise ValueError(f"unknown planted kind {self.planted!r}; allowed: {', '.join(KINDS)}")
        if self.planted is not None and self.checkpoint is not None:
            raise ValueError("a planted model is drawn from a config, not from a checkpoint")

    def model(self, seed: int) -> Transformer:
        """The model the measurement of `seed` runs on."""
        if self.checkpoint is not None:
            return _checkpoint(self.checkpoint)
        drawn = seed if self.model_seed is None else self.model_seed
        if self.planted is not None:
            return planted_model(self.planted, self.cfg, self.panel, drawn)
        return Transformer(self.cfg, seed=drawn)

    def initialization(self, seed: int) -> int | None:
        """The seed of the random init the model of `seed` started from: a checkpoint's recorded
        one (None if unknown), else the seed its weights are drawn with (a random init is its own
        initialization; a planted stand-in for a trained model started from it too)."""
        if self.checkpoint is not None or self.init_seed is not None:
            return self.init_seed
        return seed if self.model_seed is None else self.model_seed

    def tokens(self, indices) -> np.ndarray:
        """Panel indices (a design's tokens, 0..9) as the model's token ids."""
        return np.asarray(self.panel)[np.asarray(indices)]

    def serves(self, context: int) -> str | None:
        """Why designs of sequences of `context` tokens cannot run on this model, or None."""
        if len(self.panel) != PANEL_SIZE:
            return f"the token panel has {len(self.panel)} tokens, the designs need {PANEL_SIZE}"
        if self.cfg.n_ctx < context:
            return f"its designs need {context} positions and the model has n_ctx={self.cfg.n_ctx}"
        return None


@functools.lru_cache(maxsize=2)
def _checkpoint(path: str) -> Transformer:
    """A checkpoint's model, read once per process (measurements do not change it)."""
    return Transformer.from_pretrained(path)


def source_for(cfg: TransformerConfig, rule: str = DEFAULT_PANEL_RULE, **where) -> ModelSource:
    """A ModelSource of `cfg` with the panel `rule` gives for its vocabulary."""
    return ModelSource(cfg, token_panel(cfg.vocab_size, rule), **where)


def checkpoint_source(path: str, rule: str = DEFAULT_PANEL_RULE) -> ModelSource:
    """The ModelSource of a checkpoint file or folder (its config, its recorded seed)."""
    model = _checkpoint(str(path))
    return source_for(model.cfg, rule, checkpoint=str(path), init_seed=model.seed)


def baseline_source(source: ModelSource, seed: int) -> ModelSource:
    """The random initialization `seed` of a source's config, on the same panel: a baseline,
    treated as the checkpoint is (its own initialization is itself, as a checkpoint's is the
    init it records)."""
    return ModelSource(source.cfg, source.panel, model_seed=seed)
