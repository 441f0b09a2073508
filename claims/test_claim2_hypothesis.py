"""Claim 2: dimension 0 after block 0 detects token 7 at position 3.

The seed's sentence: "neurons that fire for 'token 7 at position 3'". Its code picked dimension 0
of the residual stream after block 0, token 7 and position 3 by hand, drew 100 random sequences
with token 7 forced at position 3 and 100 without, and reported the effect
(mean_with - mean_without) / std_without of the activation at position 3. Seed protocol: exactly
that; it holds on a seed when the effect is large (>= the registry's min_effect).

Controlled: the same hypothesis on all 10^4 sequences of length 4 (1,000 with token 7 at position
3, 9,000 without), its effect with an interval and a permutation p-value. Because it was picked
by hand from dims x tokens x positions candidates, every candidate of that unit set is tested the
same way and the hand-picked one must survive Benjamini-Hochberg across the family, with a large
effect. Beside it: the embedding alone's effect for the same candidate (is it just W_E[7]?) and a
random rotation of the unit basis (is dimension 0 special?). A statement about one unit of an
unseeded model is not a statement about random transformers: across seeds it is a coin flip.
"""

from __future__ import annotations

import numpy as np
import pytest

from claim_plots import SOURCE_COLOURS, across_seeds, new_figure, source_style, threshold_line
from mechclaims.interp.claims.specific_hypothesis import (
    CLAIM,
    FAMILY_ARRAYS,
)
from mechclaims.interp.sources import PANEL_SIZE
from mechclaims.interp.stats import (
    cross_correlation,
)
from mechclaims.interp.units import SEED_SEQ_LEN


@pytest.mark.claim(f"{CLAIM.id}/seed-protocol", statement=CLAIM.statement)
def test_seed_protocol(read_seed):
    seed_result = read_seed()
    assert not np.isnan(seed_result["effect"])
    assert seed_result["std_without"] >= 0


@pytest.mark.claim(f"{CLAIM.id}/controlled", statement=CLAIM.statement)
def test_controlled(read_seed, model_source):
    result = read_seed()
    assert result["effect_low"] <= result["effect"] <= result["effect_high"]
    assert 0.0 < result["p_value"] <= 1.0
    assert result["family_size"] == SEED_SEQ_LEN * PANEL_SIZE * model_source.cfg.d_model


@pytest.mark.claim(f"{CLAIM.id}/seed-protocol", statement=CLAIM.statement, decides=True)
def test_seed_protocol_across_seeds(evidence, judge, read_seeds, seeds, thresholds):
    results = read_seeds()
    effects = np.array([result["effect"] for result in results])
    holds = CLAIM.readings["seed-protocol"].seeds_hold(results, thresholds)
    evidence.figure("the seed's effect of token 7 at position 3 per seed", _seed_protocol_figure,
                    effects, seeds, thresholds, holds)  # fmt: skip
    judge(CLAIM.id, "seed-protocol", holds)


def _seed_protocol_figure(effects, seeds, thresholds: dict, holds):
    """The seed's effect per seed against its threshold."""
    figure, (ax,) = new_figure(1, width=6.0)
    across_seeds(ax, effects, seeds, thresholds["min_effect"], "Glass's delta (the seed's effect)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_title(f"dim 0, token 7 at position 3, 100 vs 100 sequences; holds on "
                 f"{holds.sum()}/{len(seeds)} seeds", fontsize=9)  # fmt: skip
    return figure


@pytest.mark.claim(f"{CLAIM.id}/controlled", statement=CLAIM.statement, decides=True)
def test_controlled_across_seeds(evidence, judge, read_seeds, seeds, thresholds):
    results = read_seeds()
    by_key = {key: np.array([r[key] for r in results]) for key in results[0] if
              key not in FAMILY_ARRAYS}  # fmt: skip
    by_key["holds"] = CLAIM.readings["controlled"].seeds_hold(results, thresholds)
    correlation = (
        float(
            cross_correlation(by_key["effect"][:, None], by_key["embedding_effect"][:, None])[0, 0]
        )
        if len(seeds) >= 3
        else None
    )
    evidence.record(
        network_embedding_correlation=correlation,
        rotated_rate_large=float(np.mean(by_key["rotated_effect"] >= thresholds["min_effect"])),
        network_rate_large=float(np.mean(by_key["effect"] >= thresholds["min_effect"])),
    )
    evidence.figure("hand-picked hypothesis against its family and nulls", _controlled_figure,
                    by_key, correlation, results[0], seeds, thresholds)  # fmt: skip
    judge(CLAIM.id, "controlled", by_key["holds"])


def _controlled_figure(by_key: dict, correlation, first: dict, seeds, thresholds: dict):
    """The effect per seed, against the embedding alone's, and in the family it was picked
    from."""
    figure, axes = new_figure(3)
    _plot_effects(axes[0], by_key, seeds, thresholds["min_effect"])
    _plot_against_embedding(axes[1], by_key, correlation)
    _plot_family(axes[2], first, seeds[0], thresholds["min_effect"])
    return figure


def _plot_effects(ax, by_key: dict, seeds, threshold: float) -> None:
    """The effect per seed with its interval; filled where it survives BH in its family."""
    across_seeds(
        ax,
        by_key["effect"],
        seeds,
        threshold,
        "effect of token 7 at position 3 on dim 0 (Glass's delta)",
    )
    effect = by_key["effect"]
    error = [effect - by_key["effect_low"], by_key["effect_high"] - effect]
    colour = SOURCE_COLOURS["network"]
    ax.errorbar(seeds, effect, yerr=error, fmt="none", ecolor=colour, elinewidth=1)
    missed = ~by_key["discovered"]
    ax.scatter(np.asarray(seeds)[missed], effect[missed], s=30, facecolor="white",
               edgecolor=colour, zorder=4, label="not discovered (BH)")  # fmt: skip
    ax.axhline(0, color="black", linewidth=0.6)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"all 10^4 sequences; holds on {by_key['holds'].sum()}/{len(seeds)} seeds",
                 fontsize=9)  # fmt: skip


def _plot_against_embedding(ax, by_key: dict, correlation) -> None:
    """Network's effect against the embedding alone's, one dot per seed."""
    ax.scatter(by_key["embedding_effect"], by_key["effect"], s=18, zorder=3,
               **source_style("network"))  # fmt: skip
    limits = np.array([ax.get_xlim(), ax.get_ylim()])
    span = [limits.min(), limits.max()]
    ax.plot(span, span, color="grey", linestyle=":", linewidth=1, label="network = embedding")
    ax.set_xlabel("effect in the embedding alone LN(W_E[x] + W_pos) (Glass's delta)")
    ax.set_ylabel("effect in the network, dim 0 after block 0 (Glass's delta)")
    where = "" if correlation is None else f"r = {correlation:.2f} across seeds"
    ax.set_title(f"is it just the embedding? {where}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)


def _plot_family(ax, result: dict, seed: int, threshold: float) -> None:
    """The effects of every (dim, token, position) candidate, the hand-picked one marked."""
    bins = np.linspace(
        min(np.min(result[key]) for key in FAMILY_ARRAYS[::2]),
        max(np.max(result[key]) for key in FAMILY_ARRAYS[::2]),
        50,
    )
    ax.hist(result["family_effects"], bins=bins, color=SOURCE_COLOURS["network"], alpha=0.6,
            label="network candidates")  # fmt: skip
    ax.hist(result["rotated_family_effects"], bins=bins, histtype="step",
            color=SOURCE_COLOURS["rotated"], label="rotated basis")  # fmt: skip
    ax.axvline(result["effect"], color="black", linewidth=1.5, label="dim 0, token 7, position 3")
    threshold_line(ax, threshold, vertical=True)
    ax.set_xlabel(f"effect, Glass's delta (seed {seed}, {result['family_size']} candidates)")
    ax.set_ylabel("candidates")
    ax.set_title(f"the family the hypothesis was picked from; q = {result['q_value']:.3f}",
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=7, loc="best")
