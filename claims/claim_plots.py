"""Figures shared by the claims: a statistic across seeds, and the model against its nulls."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

# One colour per feature source, the same in every figure.
SOURCE_COLOURS = {
    "network": "#1f77b4",
    "embedding": "#ff7f0e",
    "rotated": "#2ca02c",
    "gaussian": "#7f7f7f",
}


def new_figure(n_axes: int = 1, width: float = 5.0, height: float = 3.4):
    figure, axes = plt.subplots(
        1, n_axes, figsize=(width * n_axes, height), squeeze=False, layout="constrained"
    )
    return figure, list(axes[0])


def across_seeds(ax, values: np.ndarray, seeds, threshold: float | None, label: str) -> None:
    """One dot per seed, with the decision threshold as a dashed line."""
    ax.scatter(seeds, values, s=18, color=SOURCE_COLOURS["network"], zorder=3)
    if threshold is not None:
        ax.axhline(threshold, color="crimson", linestyle="--", linewidth=1, label="threshold")
        ax.legend(fontsize=7, loc="best")
    seed_axis(ax, label)


def seed_axis(ax, label: str) -> None:
    """Label an axes whose x axis is the model seed (integer ticks) and whose y axis is `label`."""
    ax.set_xlabel("seed")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)


def sources_across_seeds(ax, by_source: dict[str, np.ndarray], label: str) -> None:
    """A box per feature source (network and its nulls), each seed a dot on it."""
    names = list(by_source)
    positions = np.arange(len(names))
    ax.boxplot([by_source[name] for name in names], positions=positions, widths=0.5,
               showfliers=False)  # fmt: skip
    for position, name in zip(positions, names, strict=True):
        values = np.asarray(by_source[name])
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        colour = SOURCE_COLOURS.get(name.split()[0], "#444444")
        ax.scatter(position + jitter, values, s=12, color=colour, zorder=3, alpha=0.8)
    ax.set_xticks(positions, names, rotation=20, fontsize=8)
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)
