"""Claim 4: a random transformer holds circuits: strongly correlated and opposing unit pairs.

The seed's README: "strong circuit structure with correlation coefficients > 0.8" and "opposing
pairs (< -0.8) that partition the input space". Its code took 500 random sequences of length 4,
the residual stream after block 0 at position 0, the Pearson r between its dimensions, and printed
for dimensions 0-4 the partner with the largest |r| if |r| > 0.5. With a causal model position 0
sees only x_0: the 500 rows hold 10 distinct inputs, so every r rests on 10 points, where
|r| > 0.8 is common by chance (and a post-LN stream sums to zero across dimensions, which alone
pulls correlations negative).

Controlled: correlations on distinct inputs, tested with their number n (t-test p-values,
Benjamini-Hochberg across all pairs), at position 0 (n = 10, the seed's setting) and at the last
position (n = 1000 distinct sequences), for residual dims and MLP neurons after every block. The
strong-pair rate of the network is held against the embedding alone (which has the LN constraint
too), a random rotation of each unit set and i.i.d. Gaussian features with the same n: it must
exceed each by more than the registry's margin across seeds (the margin rule). Opposing
pairs chosen on a discovery half of the inputs are tested on the other half: do they split the
inputs (exactly one active) beyond what a bivariate Gaussian with the same r gives, and near
perfectly?
"""

from __future__ import annotations

import numpy as np
import pytest

from claim_plots import (
    SOURCE_COLOURS,
    across_seeds,
    beyond_nulls_figure,
    new_figure,
    seed_axis,
    source_of,
    source_style,
    sources_across_seeds,
    threshold_line,
)
from claim_plots import SOURCES as SOURCES_STYLE
from mechclaims.interp.circuits import (
    gaussian_exactly_one_share,
)
from mechclaims.interp.claims.circuits import (
    ABS_R_BINS,
    BEYOND,
    POSITIONS,
    SOURCES,
    controlled,
    seed_protocol,
)
from mechclaims.interp.sources import PANEL_SIZE
from mechclaims.interp.units import SEED_UNITS
from mechclaims.interp.verdicts import paired_differences

CLAIM = "circuits"
STATEMENT = "A random transformer holds strongly correlated and opposing unit pairs (circuits)."
MEASURES = {
    "seed-protocol": seed_protocol,
    "controlled": controlled,
}  # what each reading asks memo for


@pytest.mark.claim(f"{CLAIM}/seed-protocol", statement=STATEMENT)
def test_seed_protocol(evidence, memo, model_source, seed, thresholds):
    seed_result = memo(seed_protocol, model_source, seed, thresholds)
    holds = seed_result["pairs_above"] > 0 and seed_result["pairs_below"] > 0
    evidence.record(
        statistic=min(seed_result["pairs_above"], seed_result["pairs_below"]),
        threshold=1,
        verdict="supported" if holds else "refuted",
        **{key: value for key, value in seed_result.items() if key != "correlation_matrix"},
    )
    assert 1 <= seed_result["distinct_inputs"] <= PANEL_SIZE
    assert seed_result["pairs_above"] + seed_result["pairs_below"] <= seed_result["pairs"]
    assert np.all(np.abs(seed_result["printed_r"]) <= 1.0)


@pytest.mark.claim(f"{CLAIM}/controlled", statement=STATEMENT)
def test_controlled(evidence, memo, model_source, seed, thresholds):
    result = memo(controlled, model_source, seed, thresholds)["result"]
    evidence.record(
        statistic=result["pos3_network_rate"],
        null_value=max(result[f"pos3_{null}_rate"] for null in SOURCES[1:]),
        verdict="supported" if result["holds"] else "refuted",
        **{key: value for key, value in result.items() if key != "holds"},
    )
    rates = [value for key, value in result.items() if key.endswith("_rate")]
    assert all(0.0 <= rate <= 1.0 for rate in rates)
    assert result["pos0_n_effective"] == PANEL_SIZE
    assert result["pos3_n_effective"] == thresholds["n_sequences"]


@pytest.mark.claim(f"{CLAIM}/seed-protocol", statement=STATEMENT, decides=True)
def test_seed_protocol_across_seeds(evidence, judge, memo, model_source, seeds, thresholds):
    results = [memo(seed_protocol, model_source, seed, thresholds) for seed in seeds]
    above = np.array([result["pairs_above"] for result in results])
    below = np.array([result["pairs_below"] for result in results])
    figure, (ax_matrix, ax_counts) = new_figure(2)
    first = results[0]
    image = ax_matrix.imshow(first["correlation_matrix"], cmap="RdBu_r", vmin=-1, vmax=1)
    figure.colorbar(image, ax=ax_matrix, label="Pearson r")
    ax_matrix.set_title(
        f"{SEED_UNITS.hook}, position 0, seed {seeds[0]}\n{first['rows']} rows, "
        f"{first['distinct_inputs']} distinct inputs",
        fontsize=9,
    )
    ax_matrix.set_xlabel("dimension")
    ax_matrix.set_ylabel("dimension")
    network = SOURCES_STYLE["network"]
    ax_counts.scatter(seeds, above, s=18, color=network.colour, marker=network.marker,
                      label=f"r > {thresholds['strong_r']}")  # fmt: skip
    ax_counts.scatter(seeds, below, s=18, color=network.colour, marker="x",
                      label=f"r < -{thresholds['strong_r']}")  # fmt: skip
    chance_label = f"chance, each sign ({first['distinct_inputs']} Gaussian inputs)"
    ax_counts.axhline(first["chance_pairs_each_sign"], color=SOURCES_STYLE["gaussian"].colour,
                      linestyle=":", label=chance_label)  # fmt: skip
    seed_axis(ax_counts, f"pairs of {first['pairs']} (position 0)")
    ax_counts.legend(fontsize=7, loc="upper right")
    evidence.figure("pairs beyond +-0.8 at position 0, as the seed measured them", figure)
    judge(CLAIM, "seed-protocol", (above > 0) & (below > 0))


@pytest.mark.claim(f"{CLAIM}/controlled", statement=STATEMENT, decides=True)
def test_controlled_across_seeds(evidence, judge, memo, model_source, seeds, thresholds):
    measured = [memo(controlled, model_source, seed, thresholds) for seed in seeds]
    results = [entry["result"] for entry in measured]
    figure_data = [entry["figure_data"] for entry in measured]
    _abs_r_figure(evidence, figure_data, results[0], thresholds)
    _rates_figure(evidence, results)
    _partition_figure(evidence, figure_data, results, seeds, thresholds)
    differences = paired_differences(results, BEYOND)
    units = dict.fromkeys(differences, "strong-pair rate, share of pairs")
    evidence.figure("beyond the nulls (margin rule)",
                    beyond_nulls_figure(differences, thresholds, units))  # fmt: skip
    judge(CLAIM, "controlled", holds=[result["holds_partition"] for result in results],
          differences=differences)  # fmt: skip


def _abs_r_figure(evidence, figure_data: list, first: dict, thresholds: dict) -> None:
    """Distribution of |r| over all pairs and seeds: position 0 and 3, network against nulls."""
    figure, axes = new_figure(2)
    centres = (ABS_R_BINS[:-1] + ABS_R_BINS[1:]) / 2
    for ax, name in zip(axes, POSITIONS, strict=True):
        for source in SOURCES:
            counts = np.sum([data[f"{name}_{source}_abs_r"] for data in figure_data], axis=0)
            density = counts / max(counts.sum(), 1) / np.diff(ABS_R_BINS)
            density = np.where(density > 0, density, np.nan)  # empty bins: no point on a log axis
            on_top = source == "network"  # it often coincides with the rotated basis
            ax.step(centres, density, where="mid", color=SOURCE_COLOURS[source],
                    label=source_of(source).label, linewidth=2.2 if on_top else 1.2,
                    zorder=3 if on_top else 2)  # fmt: skip
        threshold_line(ax, thresholds["strong_r"], vertical=True)
        ax.set_title(f"position {POSITIONS[name]}: n = {first[f'{name}_n_effective']} "
                     "distinct inputs", fontsize=9)  # fmt: skip
        ax.set_xlabel("|r| of a unit pair (all unit sets, all seeds)")
        ax.set_ylabel("density of pairs (log)")
        ax.set_yscale("log")
        ax.minorticks_off()  # log minor ticks double the drawing time and add nothing here
        ax.legend(fontsize=7, loc="lower left")
    evidence.figure("|r| distribution", figure)


def _rates_figure(evidence, results: list) -> None:
    """Strong-pair rate (|r| > cut-off and BH) of the network and its nulls, per seed."""
    figure, axes = new_figure(2)
    for ax, name in zip(axes, POSITIONS, strict=True):
        sources_across_seeds(
            ax,
            {source: [result[f"{name}_{source}_rate"] for result in results] for source in SOURCES},
            f"strong-pair rate, position {POSITIONS[name]} (share of pairs)",
        )
    evidence.figure("strong-pair rates against nulls", figure)


def _partition_figure(evidence, figure_data: list, results: list, seeds, thresholds) -> None:
    """Held-out exactly-one share of opposing pairs against the Gaussian reference and 0.95."""
    figure, (ax_pairs, ax_seeds) = new_figure(2)
    r = np.concatenate([data["partition_r"] for data in figure_data])
    share = np.concatenate([data["partition_share"] for data in figure_data])
    ax_pairs.scatter(r, share, s=6, alpha=0.4, **{**source_style("network"), "label": "pairs"})
    reference = np.linspace(-1.0, -thresholds["strong_r"] + 0.2, 100)
    ax_pairs.plot(reference, gaussian_exactly_one_share(reference),
                  color=SOURCE_COLOURS["gaussian"], label="bivariate Gaussian, same r")  # fmt: skip
    threshold_line(ax_pairs, thresholds["partition_share"], "near-perfect partition")
    ax_pairs.set_xlabel("held-out r of an opposing pair")
    ax_pairs.set_ylabel("held-out share of inputs: exactly one active")
    ax_pairs.set_title(f"{r.size} opposing pairs over {len(seeds)} seeds", fontsize=9)
    ax_pairs.legend(fontsize=7, loc="lower left")
    medians = np.array(
        [np.nan if res["partition_median_share"] is None else res["partition_median_share"]
         for res in results]
    )  # fmt: skip
    across_seeds(ax_seeds, medians, seeds, thresholds["partition_share"],
                 "median held-out share of inputs (no dot: no pair)")  # fmt: skip
    evidence.figure("partition of held-out inputs", figure)
