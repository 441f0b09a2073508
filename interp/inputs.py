"""Input designs for the claims: exhaustive sequences, the seed's random draws, pattern families.

With a causal model, the activation at position p depends only on the prefix x[:p+1]: at
position 0 there are only `vocab` distinct inputs, however many sequences are drawn. The helpers
here make that count explicit (`distinct_prefix_rows`), so statistics rest on distinct inputs.
"""

from __future__ import annotations

import numpy as np

# The seed's hand-made inputs (claim 5): what "meaningful patterns" meant there.
SEED_STRUCTURED = {
    "sequential": (1, 2, 3, 4),
    "reversed": (4, 3, 2, 1),
    "repeated": (7, 7, 7, 7),
    "alternating": (0, 9, 0, 9),
}
FAMILIES = ("ascending", "descending", "repeating", "alternating")


def all_sequences(vocab: int, length: int) -> np.ndarray:
    """Every sequence of `length` tokens, in lexicographic order: [vocab**length, length]."""
    _check_design(vocab, length)
    grids = np.indices((vocab,) * length)  # [L, V, ..., V]
    return grids.reshape(length, -1).T.astype(np.int64)


def distinct_prefix_rows(vocab: int, length: int, position: int) -> np.ndarray:
    """Rows of `all_sequences(vocab, length)` holding each prefix x[:position+1] exactly once.

    They are the rows whose tokens after `position` are all 0: vocab**(position+1) of them.
    """
    if not 0 <= position < length:
        raise ValueError(f"position must lie in [0, {length}), got {position}")
    stride = vocab ** (length - 1 - position)
    return np.arange(0, vocab**length, stride)


def random_sequences(rng: np.random.Generator, n: int, vocab: int, length: int) -> np.ndarray:
    """The seed's inputs: `n` sequences of i.i.d. uniform tokens, [n, length]."""
    _check_design(vocab, length)
    return rng.integers(0, vocab, (n, length))


def balanced_sequences(rng: np.random.Generator, n: int, vocab: int, length: int) -> np.ndarray:
    """`n` sequences in which every token appears exactly n / vocab times at every position.

    Each position is an independent random permutation of the same balanced column, so token
    and position effects are orthogonal, as in a factorial design. [n, length]
    """
    _check_design(vocab, length)
    if n % vocab:
        raise ValueError(f"n must be a multiple of vocab={vocab} for a balanced design, got {n}")
    column = np.repeat(np.arange(vocab), n // vocab)  # [n]
    return rng.permuted(np.tile(column, (length, 1)), axis=1).T  # [L,n] -> [n,L]


def family_sequences(vocab: int, length: int) -> dict[str, np.ndarray]:
    """Every member of each pattern family, as [members, length] arrays.

    ascending (s, s+1, ... mod V), descending (s, s-1, ...), repeating (a, a, ...): V members
    each; alternating (a, b, a, b, ... with a != b): V (V - 1) members.
    """
    _check_design(vocab, length)
    starts = np.arange(vocab)[:, None]  # [V,1]
    steps = np.arange(length)  # [L]
    first, second = np.nonzero(~np.eye(vocab, dtype=bool))  # all ordered pairs a != b
    return {
        "ascending": (starts + steps) % vocab,
        "descending": (starts - steps) % vocab,
        "repeating": np.repeat(starts, length, axis=1),
        "alternating": np.where(steps % 2 == 0, first[:, None], second[:, None]),
    }


def token_layouts(tokens: np.ndarray) -> np.ndarray:
    """Which positions of each sequence hold the same token: each position replaced by the first
    position that holds its token. [3,7,3,1] -> [0,1,0,3]; ascending [0,1,2,3]; alternating
    [0,1,0,1]. tokens [n, L] -> [n, L]."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be 2-D [n, length], got shape {tokens.shape}")
    same = tokens[:, :, None] == tokens[:, None, :]  # [n, L, L]: x_j == x_i
    return np.argmax(same, axis=2)  # [n, L]: the first i with x_i == x_j (i = j at the latest)


def _check_design(vocab: int, length: int) -> None:
    if vocab < 2:
        raise ValueError(f"vocab must be >= 2, got {vocab}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
