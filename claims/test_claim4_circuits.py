"""Claim 4: a random transformer holds circuits: strongly correlated and opposing unit pairs.

The seed's README: "strong circuit structure with correlation coefficients > 0.8" and "opposing
pairs (< -0.8) that partition the input space". Its code took 500 random sequences of length 4,
the residual stream after block 0 at position 0, the Pearson r between its dimensions 0-31, and
printed for dimensions 0-4 the partner with the largest |r| if |r| > 0.5. Seed protocol: the
printout as a reader of it would conclude the README's sentence, a printed partner beyond +0.8
and one beyond -0.8. With a causal model position 0 sees only x_0: the 500 rows hold 10 distinct
inputs, so every r rests on 10 points, where |r| > 0.8 is common by chance; recorded beside the
printout is what i.i.d. Gaussian units on the same inputs print, and our broader rule (any of
all pairs beyond +0.8 and -0.8), which does not decide.

Controlled: correlations on distinct inputs, tested with their number n (t-test p-values,
Benjamini-Hochberg across all pairs), at position 0 (n = 10, the seed's setting) and at the last
position (1000 distinct sequences), for residual dims and MLP neurons after every block. Every
source rests on its own distinct rows: the network's 1000 (10 for block 0's MLP neurons when
attention and MLP run in parallel: they read the last token alone), the embedding alone's 10 at
the last position (it sees the last token alone: tested with n = 10, not as if it had 1000
rows). The strong-pair rate of the network is held against the embedding alone, a random
rotation of each unit set and i.i.d. Gaussian features with the network's n: it must exceed each
by more than the registry's margin across seeds (the margin rule). Opposing pairs chosen on a
discovery half of the inputs are tested on the other half: do they split the inputs (exactly one
active) beyond what a bivariate Gaussian with the same r gives, and near perfectly (the Wilson
rule across seeds)? Planted circuits reach "supported" through this code, the rotated basis does not
(tests/controls).
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
    CLAIM,
    POSITIONS,
    SOURCES,
    controlled,
    controlled_evidence,
)
from mechclaims.interp.sources import PANEL_SIZE
from mechclaims.interp.units import SEED_UNITS


@pytest.mark.claim(f"{CLAIM.id}/seed-protocol", statement=CLAIM.statement)
def test_seed_protocol(read_seed, thresholds):
    seed_result = read_seed()
    assert 1 <= seed_result["distinct_inputs"] <= PANEL_SIZE
    assert seed_result["pairs_above"] + seed_result["pairs_below"] <= seed_result["pairs"]
    shown = np.flatnonzero(seed_result["printed_partners"] >= 0)  # dims with a printed line
    row = np.abs(seed_result["correlation_matrix"][shown])  # [k,U]
    row[np.arange(shown.size), shown] = 0.0
    np.testing.assert_array_equal(np.abs(seed_result["printed_r"][shown]), row.max(axis=1))
    assert np.all(np.abs(seed_result["printed_r"][shown]) > thresholds["seed_print_r"])
    assert 0.0 <= seed_result["chance_printed_holds"] <= 1.0


@pytest.mark.claim(f"{CLAIM.id}/controlled", statement=CLAIM.statement)
def test_controlled(read_seed, thresholds, model_config):
    result = read_seed()
    rates = [value for key, value in result.items() if key.endswith("_rate")]
    assert all(0.0 <= rate <= 1.0 for rate in rates)
    for source in SOURCES:  # each source's distinct rows: position 0 sees x_0 alone
        assert result[f"pos0_{source}_n"] == PANEL_SIZE
    # n is a source's fewest distinct rows over its unit sets: in parallel blocks block 0's MLP
    # reads the block's input, which at the last position is a function of x_3 alone
    last_n = PANEL_SIZE if model_config.parallel_attn_mlp else thresholds["n_sequences"]
    for source in ("network", "rotated", "gaussian"):
        assert result[f"pos3_{source}_n"] == last_n
    assert result["pos3_embedding_n"] == PANEL_SIZE  # the embedding sees x_3 alone


@pytest.mark.claim(f"{CLAIM.id}/seed-protocol", statement=CLAIM.statement, decides=True)
def test_seed_protocol_across_seeds(evidence, judge, read_seeds, seeds, thresholds):
    results = read_seeds()
    holds = CLAIM.readings["seed-protocol"].seeds_hold(results, thresholds)
    evidence.figure("the seed's printout: strongest partners of dims 0-4 (ours beside)",
                    _printout_figure, results, holds, seeds, thresholds)  # fmt: skip
    judge(CLAIM.id, "seed-protocol", holds)


@pytest.mark.claim(f"{CLAIM.id}/controlled", statement=CLAIM.statement, decides=True)
def test_controlled_across_seeds(evidence, judge, memo, model_source, seeds, thresholds):
    measured = [memo(controlled, model_source, seed, thresholds) for seed in seeds]
    results = [entry["result"] for entry in measured]
    figure_data = [entry["figure_data"] for entry in measured]
    evidence.figure("|r| distribution", _abs_r_figure, figure_data, results[0], thresholds)
    evidence.figure("strong-pair rates against nulls", _rates_figure, results)
    evidence.figure("partition of held-out inputs", _partition_figure, figure_data, results, seeds,
                    thresholds)  # fmt: skip
    deciding = controlled_evidence(results)
    units = dict.fromkeys(deciding["differences"], "strong-pair rate, share of pairs")
    evidence.figure("beyond the nulls (margin rule)", beyond_nulls_figure, deciding, thresholds,
                    units)  # fmt: skip
    judge(CLAIM.id, "controlled", **deciding)


def _printout_figure(results: list, holds, seeds, thresholds: dict):
    """What the seed printed: the first seed's matrix with its printed partners circled, and the
    printed r of dims 0-4 on every seed against the cut-offs, with chance's holding rate; beside
    them, ours and not deciding, every pair beyond +-0.8."""
    figure, (ax_matrix, ax_printed, ax_counts) = new_figure(3)
    first = results[0]
    image = ax_matrix.imshow(first["correlation_matrix"], cmap="RdBu_r", vmin=-1, vmax=1)
    figure.colorbar(image, ax=ax_matrix, label="Pearson r")
    printed = first["printed_partners"] >= 0
    ax_matrix.scatter(first["printed_partners"][printed], np.flatnonzero(printed), s=60,
                      facecolors="none", edgecolors="black", label="printed partner")  # fmt: skip
    ax_matrix.set_title(
        f"{SEED_UNITS.hook}, position 0, seed {seeds[0]}\n{first['rows']} rows, "
        f"{first['distinct_inputs']} distinct inputs",
        fontsize=9,
    )
    ax_matrix.set_xlabel("dimension")
    ax_matrix.set_ylabel("dimension")
    ax_matrix.legend(fontsize=7, loc="lower left")
    for seed, result in zip(seeds, results, strict=True):
        shown = result["printed_partners"] >= 0
        label = "printed r (dims 0-4)" if seed == seeds[0] else None
        ax_printed.scatter(np.full(shown.sum(), seed), result["printed_r"][shown], s=16,
                           **{**source_style("network"), "label": label})  # fmt: skip
    for sign in (1, -1):
        threshold_line(ax_printed, sign * thresholds["strong_r"],
                       "strong" if sign > 0 else "opposing")  # fmt: skip
        ax_printed.axhline(sign * thresholds["seed_print_r"], color="black", linestyle=":",
                           linewidth=0.8,
                           label=f"printed if |r| > {thresholds['seed_print_r']}" if sign > 0
                           else None)  # fmt: skip
    held = int(holds.sum())
    chance = np.mean([result["chance_printed_holds"] for result in results])
    ax_printed.set_title(f"printout beyond both signs on {held}/{len(results)} seeds;\ni.i.d. "
                         f"Gaussian units on the same inputs: {chance:.2f}",
                         fontsize=9)  # fmt: skip
    ax_printed.set_ylim(-1.05, 1.05)
    seed_axis(ax_printed, "printed r of a partner of dims 0-4")
    ax_printed.legend(fontsize=7, loc="center")
    _all_pairs(ax_counts, results, seeds, thresholds)
    return figure


def _all_pairs(ax_counts, results: list, seeds, thresholds: dict) -> None:
    """Ours, not deciding: every pair of position 0's dims beyond +-0.8, per seed, against the
    count i.i.d. Gaussian units on as many inputs give."""
    network = SOURCES_STYLE["network"]
    signs = (("pairs_above", network.marker, f"r > {thresholds['strong_r']}"),
             ("pairs_below", "x", f"r < -{thresholds['strong_r']}"))  # fmt: skip
    for key, marker, label in signs:
        ax_counts.scatter(seeds, [result[key] for result in results], s=18, color=network.colour,
                          marker=marker, label=label)  # fmt: skip
    first = results[0]
    chance_label = f"chance, each sign ({first['distinct_inputs']} Gaussian inputs)"
    ax_counts.axhline(first["chance_pairs_each_sign"], color=SOURCES_STYLE["gaussian"].colour,
                      linestyle=":", label=chance_label)  # fmt: skip
    seed_axis(ax_counts, f"pairs of {first['pairs']} (position 0)")
    ax_counts.set_title("ours, not deciding: every pair beyond +-0.8", fontsize=9)
    ax_counts.legend(fontsize=7, loc="center left")


def _abs_r_figure(figure_data: list, first: dict, thresholds: dict):
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
        ax.set_title(f"position {POSITIONS[name]}: n = {first[f'{name}_network_n']} distinct "
                     f"inputs (embedding alone: {first[f'{name}_embedding_n']})",
                     fontsize=9)  # fmt: skip
        ax.set_xlabel("|r| of a unit pair (all unit sets, all seeds)")
        ax.set_ylabel("density of pairs (log)")
        ax.set_yscale("log")
        ax.minorticks_off()  # log minor ticks double the drawing time and add nothing here
        ax.legend(fontsize=7, loc="lower left")
    return figure


def _rates_figure(results: list):
    """Strong-pair rate (|r| > cut-off and BH) of the network and its nulls, per seed."""
    figure, axes = new_figure(2)
    for ax, name in zip(axes, POSITIONS, strict=True):
        sources_across_seeds(
            ax,
            {source: [result[f"{name}_{source}_rate"] for result in results] for source in SOURCES},
            f"strong-pair rate, position {POSITIONS[name]} (share of pairs)",
        )
    return figure


def _partition_figure(figure_data: list, results: list, seeds, thresholds: dict):
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
    return figure
