"""Toy tasks: generators of (tokens, targets, loss_mask) with a held-out split.

Each example is a sequence S; the model reads `tokens = S[:-1]` and predicts `targets = S[1:]`,
scored where `loss_mask` is True (the answer part). Which problems are held out is a fixed
property of the problem (a hash of its input part), so no training batch ever contains a test
problem, whatever the seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "test")
HELD_OUT_EVERY = 5  # one problem in five is held out
_HASH_PRIME = 1_000_003
_HASH_WEIGHTS_SEED = 20250818


@dataclass(frozen=True)
class Task:
    name: str
    vocab_size: int  # the vocabulary the task needs
    seq_len: int  # length of S; the model sees seq_len - 1 tokens
    input_len: int  # how many leading tokens of S define the problem (and its split)
    scored_from: int  # targets S[scored_from:] are scored
    make: Callable[[np.random.Generator, int], np.ndarray]  # (rng, n) -> S [n, seq_len]

    @property
    def n_ctx(self) -> int:
        return self.seq_len - 1

    def batch(self, rng: np.random.Generator, batch_size: int, split: str = "train"):
        """`batch_size` problems of `split`: tokens [n, T], targets [n, T], loss_mask [n, T]."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        sequences = self._draw_split(rng, batch_size, split)  # [n, seq_len]
        loss_mask = np.zeros((batch_size, self.n_ctx), dtype=bool)
        loss_mask[:, self.scored_from - 1 :] = True
        return sequences[:, :-1], sequences[:, 1:], loss_mask

    def on_tokens(self, ids) -> Task:
        """The same task with token i written as token ids[i]: e.g. a model's token panel, the
        task's 10 tokens as 10 ids of a larger vocabulary. Identity ids give the same task."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or len(ids) < self.vocab_size or len(set(ids.tolist())) != len(ids):
            raise ValueError(f"need {self.vocab_size} distinct token ids, got {ids.tolist()}")
        make = self.make
        return dataclasses.replace(
            self, vocab_size=int(ids.max()) + 1, make=lambda rng, n: ids[make(rng, n)]
        )

    def is_held_out(self, sequences: np.ndarray) -> np.ndarray:
        """[n] bool: whether each problem (its first `input_len` tokens) is a test problem."""
        problem = sequences[:, : self.input_len].astype(np.int64)
        weights = np.random.default_rng(_HASH_WEIGHTS_SEED).integers(1, _HASH_PRIME, self.input_len)
        keys = (problem * weights).sum(axis=1) % _HASH_PRIME  # [n]
        return (keys * 2_654_435_761 % 2**32) % HELD_OUT_EVERY == 0

    def _draw_split(self, rng: np.random.Generator, n: int, split: str) -> np.ndarray:
        kept = np.empty((0, self.seq_len), dtype=np.int64)
        while len(kept) < n:
            candidates = self.make(rng, 2 * n * HELD_OUT_EVERY)
            in_split = self.is_held_out(candidates) == (split == "test")
            kept = np.concatenate([kept, candidates[in_split]])
        return kept[:n]


def _digits(rng: np.random.Generator, n: int, length: int, n_digits: int) -> np.ndarray:
    return rng.integers(0, n_digits, (n, length))


def copy_task(length: int = 6, n_digits: int = 10) -> Task:
    def make(rng, n):
        x = _digits(rng, n, length, n_digits)
        return np.concatenate([x, x], axis=1)

    return Task("copy", n_digits, 2 * length, length, length, make)


def reverse_task(length: int = 6, n_digits: int = 10) -> Task:
    def make(rng, n):
        x = _digits(rng, n, length, n_digits)
        return np.concatenate([x, x[:, ::-1]], axis=1)

    return Task("reverse", n_digits, 2 * length, length, length, make)


def sort_task(length: int = 6, n_digits: int = 3) -> Task:
    """minGPT's sort demo: six digits from {0, 1, 2}, then the same digits in ascending order."""

    def make(rng, n):
        x = _digits(rng, n, length, n_digits)
        return np.concatenate([x, np.sort(x, axis=1)], axis=1)

    return Task("sort", n_digits, 2 * length, length, length, make)


def modular_add_task(modulus: int = 10) -> Task:
    """[a, b, (a + b) mod p]: only the sum is scored."""

    def make(rng, n):
        a, b = rng.integers(0, modulus, (2, n))
        return np.stack([a, b, (a + b) % modulus], axis=1)

    return Task("modular-add", modulus, 3, 2, 2, make)


PATTERN_FAMILIES = ("ascending", "repeating", "alternating", "random")


def pattern_sequences(rng: np.random.Generator, n: int, length: int, vocab: int) -> np.ndarray:
    """The seed notebook's families, equally often: ascending (s, s+1, ... mod V), repeating
    (a, a, a, ...), alternating (a, b, a, b, ... with a != b) and uniformly random tokens."""
    family = rng.integers(0, len(PATTERN_FAMILIES), n)  # [n]
    start = rng.integers(0, vocab, n)[:, None]  # [n,1]
    other = (start + rng.integers(1, vocab, n)[:, None]) % vocab  # != start
    steps = np.arange(length)  # [L]
    candidates = np.stack(
        [
            (start + steps) % vocab,
            np.broadcast_to(start, (n, length)),
            np.where(steps % 2 == 0, start, other),
            rng.integers(0, vocab, (n, length)),
        ]
    )  # [family,n,L]
    return candidates[family, np.arange(n)]


NOTEBOOK_PERIODS = (2, 3, 4)  # the notebook's repeating family: a pattern of 2-4 tokens


def notebook_sequences(
    rng: np.random.Generator,
    n: int,
    length: int = 8,
    vocab: int = 10,
    families: tuple[str, ...] = PATTERN_FAMILIES,
) -> np.ndarray:
    """The seed notebook's training data (its `create_training_data`), each sequence of a family
    drawn uniformly from `families`: ascending (s, s+1, ... mod V), repeating (a pattern of 2, 3
    or 4 uniform tokens, repeated; `pattern_sequences`' is one token, a, a, ...), alternating
    (a, b, a, b, ... with a != b) and random (uniform tokens). [n, length]"""
    unknown = set(families) - set(PATTERN_FAMILIES)
    if not families or unknown:
        raise ValueError(f"families must be some of {', '.join(PATTERN_FAMILIES)}, got {families}")
    family = rng.integers(0, len(families), n)  # [n]
    steps = np.arange(length)  # [L]
    start = rng.integers(0, vocab, n)[:, None]  # [n,1]
    other = (start + rng.integers(1, vocab, n)[:, None]) % vocab  # != start
    period = rng.choice(NOTEBOOK_PERIODS, n)[:, None]  # [n,1]
    pattern = rng.integers(0, vocab, (n, max(NOTEBOOK_PERIODS)))  # [n,4]
    drawn = {
        "ascending": (start + steps) % vocab,
        "repeating": np.take_along_axis(pattern, steps % period, axis=1),  # [n,L]
        "alternating": np.where(steps % 2 == 0, start, other),
        "random": rng.integers(0, vocab, (n, length)),
    }
    return np.stack([drawn[name] for name in families])[family, np.arange(n)]  # [F,n,L] -> [n,L]


def patterns_task(length: int = 9, vocab: int = 10) -> Task:
    """Next-token prediction on every position of the seed notebook's pattern families."""

    def make(rng, n):
        return pattern_sequences(rng, n, length, vocab)

    return Task("patterns", vocab, length, length, 1, make)


TASKS: dict[str, Callable[[], Task]] = {
    "copy": copy_task,
    "reverse": reverse_task,
    "sort": sort_task,
    "modular-add": modular_add_task,
    "patterns": patterns_task,
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    return TASKS[name]()
