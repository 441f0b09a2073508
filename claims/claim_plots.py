"""Figures shared by the claims: a statistic across seeds, and the model against its nulls.

Every source of features has one colour and one marker, the same in every figure, and a label a
legend shows (`SOURCES`); a name like "network L1_mlp" or "shuffled_token" is drawn as its first
word's source.
A decision threshold is drawn the same way everywhere (`threshold_line`). The figure's title
(claim, reading, preset) is set by the evidence plugin when the figure is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from mechclaims.interp.verdicts import reading_verdict


@dataclass(frozen=True)
class Source:
    label: str  # how a legend names it
    colour: str
    marker: str


SOURCES = {
    "network": Source("network", "#1f77b4", "o"),
    "embedding": Source("embedding alone", "#ff7f0e", "s"),
    "rotated": Source("rotated basis", "#2ca02c", "^"),
    "gaussian": Source("Gaussian", "#7f7f7f", "D"),
    "shuffled": Source("shuffled", "#9467bd", "v"),
    "layout": Source("layout-matched families", "#637939", "P"),  # claim 5: same token layouts
}
OTHER_SOURCE = Source("other", "#444444", "x")
SOURCE_COLOURS = {name: source.colour for name, source in SOURCES.items()}
THRESHOLD_COLOUR = "crimson"
# Categories that are not sources (pattern families, training stages, factors) take colours no
# source uses, so that a colour always means the same thing.
FAMILY_COLOURS = ("#8c564b", "#e377c2", "#bcbd22", "#17becf")
STAGE_COLOURS = {"init": "#a8a8a8", "trained": "#843c39"}  # a model before and after training
FACTOR_COLOURS = {"token": "#393b79", "position": "#8c6d31"}
# A checkpoint's verdict against its random inits, as a trajectory through training marks it.
CHECKPOINT_VERDICTS = {
    "unlike-random (higher)": Source("unlike-random, higher", "#b2182b", "^"),
    "unlike-random (lower)": Source("unlike-random, lower", "#2166ac", "v"),
    "like-random": Source("like-random", "#bababa", "o"),
    "inconclusive": Source("inconclusive", "#e6ab02", "s"),
    "not-applicable": Source("not applicable", "#000000", "x"),
}


def new_figure(n_axes: int = 1, width: float = 5.0, height: float = 3.4):
    figure, axes = plt.subplots(
        1, n_axes, figsize=(width * n_axes, height), squeeze=False, layout="constrained"
    )
    return figure, list(axes[0])


def source_of(name: str) -> Source:
    """The source a series name stands for: its first word ("network L1_mlp" -> network,
    "shuffled_token" -> shuffled)."""
    return SOURCES.get(name.replace("_", " ").split()[0], OTHER_SOURCE)


def source_style(name: str) -> dict:
    """Keyword arguments of scatter or plot that draw `name` as its source: colour, marker,
    label."""
    source = source_of(name)
    return {"color": source.colour, "marker": source.marker, "label": source.label}


def threshold_line(ax, value: float, label: str = "threshold", vertical: bool = False) -> None:
    """The decision threshold as a dashed line, labelled for the legend."""
    draw = ax.axvline if vertical else ax.axhline
    draw(value, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1, label=f"{label} {value:g}")


def source_legend(ax, names) -> None:
    """A legend of the sources among `names` (each once), and of any labelled line."""
    sources = list(dict.fromkeys(source_of(name) for name in names))
    handles = [
        Line2D([], [], linestyle="", marker=source.marker, color=source.colour,
               label=source.label)
        for source in sources
    ]  # fmt: skip
    lines, _ = ax.get_legend_handles_labels()
    ax.legend(handles=[*handles, *lines], fontsize=7, loc="best")


def across_seeds(
    ax, values: np.ndarray, seeds, threshold: float | None, label: str, source: str = "network"
) -> None:
    """One dot per seed in the source's style, with the decision threshold as a dashed line."""
    ax.scatter(seeds, values, s=18, zorder=3, **source_style(source))
    if threshold is not None:
        threshold_line(ax, threshold)
    ax.legend(fontsize=7, loc="best")
    seed_axis(ax, label)


def seed_axis(ax, label: str) -> None:
    """Label an axes whose x axis is the model seed (integer ticks) and whose y axis is `label`."""
    ax.set_xlabel("seed")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)


def sources_across_seeds(
    ax, by_source: dict[str, np.ndarray], label: str, threshold: float | None = None
) -> None:
    """A box per feature source (network and its nulls), each seed a dot on it in the source's
    colour and marker; the threshold, if any, dashed; a legend of the sources."""
    names = list(by_source)
    positions = np.arange(len(names))
    ax.boxplot([by_source[name] for name in names], positions=positions, widths=0.5,
               showfliers=False, medianprops={"color": "black"})  # fmt: skip
    for position, name in zip(positions, names, strict=True):
        values = np.asarray(by_source[name])
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        style = {**source_style(name), "label": None}
        ax.scatter(position + jitter, values, s=12, zorder=3, alpha=0.8, **style)
    if threshold is not None:
        threshold_line(ax, threshold)
    labels = [SOURCES[name].label if name in SOURCES else name for name in names]
    ax.set_xticks(positions, labels, rotation=20, fontsize=8)
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)
    source_legend(ax, names)


def beyond_nulls_figure(evidence: dict, thresholds: dict, units: dict):
    """The margin rule's evidence, one panel per null: the paired differences network - null
    (one dot per seed), their mean with its interval across seeds, the margin (dashed), and each
    part's verdict as the reading decides it (`evidence`: what `reading_verdict` takes).
    `units` names each difference's unit, e.g. {"embedding": "Cohen's d"}."""
    differences = evidence["differences"]
    parts = reading_verdict(thresholds, **evidence).beyond
    figure, axes = new_figure(len(differences), width=4.0)
    for ax, decided, values in zip(axes, parts, differences.values(), strict=True):
        name = decided.name
        jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(jitter, values, s=14, alpha=0.8, zorder=3,
                   **{**source_style("network"), "label": "a seed"})  # fmt: skip
        ax.errorbar([0.45], [decided.mean], yerr=[[decided.mean - decided.low],
                    [decided.high - decided.mean]], fmt="o", color="black", capsize=4,
                    label=f"mean, {thresholds['confidence']:.0%} interval")  # fmt: skip
        ax.axhline(0.0, color="black", linewidth=0.6)
        threshold_line(ax, decided.margin, "margin")
        ax.set_xlim(-0.5, 0.8)
        ax.set_xticks([])
        ax.set_ylabel(f"paired difference ({units[name]})")
        ax.set_title(f"network - {source_of(name).label}: {decided.verdict}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return figure
