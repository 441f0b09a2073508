"""Claim 6: selectivity present at initialization persists through training.

A later notebook of the seed project, on a PyTorch model like our `tiny-mha`: "all MLP neurons
are significantly token- and position-selective (one-way ANOVA, Bonferroni, eta squared
0.1-0.8)", and this selectivity persists through training (5 seeds).

Each (preset, seed) model, with the claim's own config of its preset (registry `config_for`:
float32 as the notebook computed, tiny-mha without its causal mask as the notebook's model), is
trained once as the notebook trained it (Adam at a constant rate, 10 epochs in order over a fixed
set of 500 sequences of its families, batches of 32); the untrained twin is kept. Both readings
ask their question of that one trained model.

Seed protocol: the notebook's one-way ANOVA of every MLP neuron by token and by position, with
Bonferroni over a layer's neurons, on random sequences of length 8. A seed holds if (a) at least
`seed_min_share` of the neurons are both token- and position-selective at init, AND (b) of the
notebook's tracked neurons (per layer and factor the `track_top` most selective at init), at
least `seed_min_persistence` on average keep their selectivity after training (still
significant, eta² above `maintained_eta2` and above `maintained_ratio` of its initial value).

Controlled: eta² of every MLP neuron by token and by position, the initial model on a balanced
design (discovery), the trained one on a held-out design sharing no sequence with it, over the
positions training shapes. Per factor, the Spearman rank correlation across neurons of eta² at
init and after training minus the same with the neurons shuffled, paired by seed, is held
against the registry's margin by the margin rule across seeds (`controlled_evidence`); the
reading is supported if both factors are. Reported beside, deciding nothing: the overlap of the
selective sets against random matching with its phi (no power when nearly every neuron is
selective at init, as on every preset), the retest correlation (the untrained model on both
designs) and the embedding alone's correlation.

Both readings share a precondition, asserted across seeds: training taught the model the
structured families (mean next-token accuracy over them at least twice chance on most seeds).
Persistence through a training that taught nothing would say nothing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from claim_plots import (
    FACTOR_COLOURS,
    STAGE_COLOURS,
    beyond_nulls_figure,
    new_figure,
    seed_axis,
    source_style,
    threshold_line,
)
from mechclaims.interp.claims.persistence import (
    CHANCE,
    CLAIM,
    CURVE_SEEDS,
    FACTORS,
    controlled_evidence,
    measure,
)
from mechclaims.interp.verdicts import cross_seed_verdict
from mechclaims.model.tasks import PATTERN_FAMILIES


def assert_trained(evidence, memo, model_source, seeds, thresholds: dict) -> None:
    """Persistence through training means nothing if training taught nothing: the trained model
    must beat chance on the structured families (mean accuracy over them) on most seeds. Fails
    when the seeds show it did not (refuted); too few seeds to show it (inconclusive) is
    recorded, not failed, as the judge treats weaker evidence. Records beside it the accuracy
    on random sequences (chance for a model that cannot read the token it predicts)."""
    measured = [memo(measure, model_source, seed, thresholds) for seed in seeds]
    accuracy = np.array([result["structured_accuracy"] for result in measured])
    learned = cross_seed_verdict(accuracy >= thresholds["min_structured_accuracy"],
                                 thresholds["required_rate"])  # fmt: skip
    evidence.record(trained_on=learned.holds, trained_verdict=learned.verdict,
                    structured_accuracy_median=float(np.median(accuracy)),
                    random_accuracy_median=float(np.median([result["random_accuracy"]
                                                            for result in measured])))  # fmt: skip
    required = thresholds["required_rate"]
    assert learned.verdict != "refuted", (
        f"training did not teach the structured families: {learned.describe(required)}"
    )


def training_steps(thresholds: dict) -> int:
    """The notebook's steps: per epoch, its batches of the data set, the last one partial."""
    batches = math.ceil(thresholds["train_samples"] / thresholds["train_batch_size"])
    return thresholds["train_epochs"] * batches


@pytest.mark.claim(f"{CLAIM.id}/seed-protocol", statement=CLAIM.statement)
def test_seed_protocol(read_seed, thresholds):
    seed_result = read_seed()
    shares = [value for key, value in seed_result.items() if key.endswith("_share")]
    assert all(0.0 <= value <= 1.0 for value in shares)
    assert np.all(np.isfinite(seed_result["losses"]))
    assert seed_result["losses"].shape == (training_steps(thresholds),)


@pytest.mark.claim(f"{CLAIM.id}/controlled", statement=CLAIM.statement)
def test_controlled(read_seed):
    controlled_result = read_seed()
    for factor in FACTORS:
        assert 0.0 <= controlled_result[f"{factor}_persistence"] <= 1.0
        assert 0.0 < controlled_result[f"{factor}_overlap_p"] <= 1.0
        assert -1.0 <= controlled_result[f"{factor}_rank_correlation"] <= 1.0
        phi = controlled_result[f"{factor}_overlap_phi"]
        assert phi is None or -1.0 <= phi <= 1.0


@pytest.mark.claim(f"{CLAIM.id}/seed-protocol", statement=CLAIM.statement, decides=True)
def test_seed_protocol_across_seeds(
    evidence, judge, read_seeds, memo, model_source, seeds, thresholds
):
    results = read_seeds()
    evidence.figure("selective neurons by the notebook's rule", seed_style_figure, results, seeds,
                    thresholds)  # fmt: skip
    evidence.figure("training", training_figure, results, seeds, thresholds)
    judge(
        CLAIM.id, "seed-protocol", CLAIM.readings["seed-protocol"].seeds_hold(results, thresholds)
    )
    assert_trained(evidence, memo, model_source, seeds, thresholds)


@pytest.mark.claim(f"{CLAIM.id}/controlled", statement=CLAIM.statement, decides=True)
def test_controlled_across_seeds(
    evidence, judge, read_seeds, memo, model_source, seeds, thresholds
):
    results = read_seeds()
    evidence.figure(f"eta² at init and trained (seed {seeds[0]})", eta2_scatter, results[0])
    evidence.figure("persistence against random matching", persistence_figure, results, seeds)
    deciding = controlled_evidence(results)
    units = {name: f"{name.split('_')[1]} eta², Spearman r" for name in CLAIM.beyond}
    evidence.figure("beyond shuffled neurons (margin rule)", beyond_nulls_figure, deciding,
                    thresholds, units)  # fmt: skip
    evidence.record(**{
        f"{factor}_overlap_phi_median": median_defined([r[f"{factor}_overlap_phi"]
                                                        for r in results])
        for factor in FACTORS
    })  # fmt: skip
    judge(CLAIM.id, "controlled", **deciding)
    assert_trained(evidence, memo, model_source, seeds, thresholds)


def median_defined(values: list) -> float | None:
    """The median of the values that are defined (not None); None if none is."""
    defined = [value for value in values if value is not None]
    return float(np.median(defined)) if defined else None


# ---------------------------------------------------------------------------------------------
# Figures


def seed_style_figure(results: list[dict], seeds, thresholds: dict):
    """The notebook's two numbers per seed: the share of neurons selective at init, and the
    persistence of its tracked neurons through training; seed 0's eta² at init."""
    figure, (ax_share, ax_persistence, ax_eta2) = new_figure(3, width=4.2)
    network = source_style("network")
    ax_share.scatter(seeds, [result["init_both_share"] for result in results], s=18, zorder=3,
                     **network)  # fmt: skip
    threshold_line(ax_share, thresholds["seed_min_share"])
    ax_share.set_ylim(-0.02, 1.02)
    ax_share.set_title("(a) neurons token- and position-selective at init", fontsize=9)
    seed_axis(ax_share, "share of MLP neurons (ANOVA, p < 0.01 / d_mlp)")
    ax_share.legend(fontsize=7)
    persistence = [np.nan if r["persistence"] is None else r["persistence"] for r in results]
    ax_persistence.scatter(seeds, persistence, s=18, zorder=3, **network)
    threshold_line(ax_persistence, thresholds["seed_min_persistence"])
    ax_persistence.set_ylim(-0.02, 1.02)
    ax_persistence.set_title(f"(b) top {thresholds['track_top']} per layer and factor: "
                             "maintained", fontsize=9)  # fmt: skip
    seed_axis(ax_persistence, "share of tracked neurons maintained")
    ax_persistence.legend(fontsize=7)
    first = results[0]
    bins = np.linspace(0, 1, 26)
    for factor in FACTORS:
        ax_eta2.hist(first[f"init_{factor}_eta2"], bins=bins, histtype="step",
                     color=FACTOR_COLOURS[factor], label=factor)  # fmt: skip
    ax_eta2.axvspan(0.1, 0.8, color="#dddddd", alpha=0.5, label="notebook's 0.1-0.8")
    ax_eta2.set_title(f"eta² per MLP neuron at init (seed {seeds[0]})", fontsize=9)
    ax_eta2.set_xlabel("eta² (share of variance)")
    ax_eta2.set_ylabel("neurons")
    ax_eta2.legend(fontsize=7)
    return figure


def training_figure(results: list[dict], seeds, thresholds: dict):
    """Loss curves of the first seeds, and accuracy per family of the notebook across seeds."""
    figure, (ax_loss, ax_accuracy) = new_figure(2)
    for result, seed in zip(results[:CURVE_SEEDS], seeds, strict=False):
        ax_loss.plot(result["losses"], linewidth=1, label=f"seed {seed}")
    ax_loss.set_title(f"the notebook's training: {thresholds['train_epochs']} epochs of "
                      f"{thresholds['train_samples']} sequences", fontsize=9)  # fmt: skip
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training cross-entropy (batch mean)")
    ax_loss.legend(fontsize=7)
    ax_loss.grid(alpha=0.3)
    positions = np.arange(len(PATTERN_FAMILIES))
    for stage, offset in (("init", -0.15), ("trained", 0.15)):
        values = np.array([[r[f"{f}_accuracy_{stage}"] for f in PATTERN_FAMILIES]
                           for r in results])  # fmt: skip
        jitter = np.linspace(-0.08, 0.08, len(results))[:, None]
        ax_accuracy.scatter((positions + offset + jitter).ravel(), values.ravel(), s=10,
                            color=STAGE_COLOURS[stage], label=stage, alpha=0.8)  # fmt: skip
    ax_accuracy.axhline(CHANCE, color="black", linestyle=":", linewidth=1, label="chance")
    threshold_line(ax_accuracy, thresholds["min_structured_accuracy"],
                   "required mean of the structured three")  # fmt: skip
    ax_accuracy.set_xticks(positions, PATTERN_FAMILIES)
    ax_accuracy.set_ylim(-0.02, 1.02)
    ax_accuracy.set_title(f"{thresholds['family_samples']} fresh sequences per family",
                          fontsize=9)  # fmt: skip
    ax_accuracy.set_ylabel("next-token accuracy (share)")
    ax_accuracy.legend(fontsize=7)
    ax_accuracy.grid(axis="y", alpha=0.3)
    return figure


def eta2_scatter(result: dict):
    """Per neuron: eta² at init (discovery design) against eta² after training (held out)."""
    figure, axes = new_figure(2, width=4.2, height=4.0)
    for ax, factor in zip(axes, FACTORS, strict=True):
        ax.scatter(result[f"{factor}_eta2_init"], result[f"{factor}_eta2_trained"], s=8,
                   alpha=0.6, color=FACTOR_COLOURS[factor])  # fmt: skip
        ax.plot([0, 1], [0, 1], color="#444444", linewidth=0.8, linestyle=":")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"{factor} eta², init (share of variance)")
        ax.set_ylabel(f"{factor} eta², trained (share of variance)")
        ax.set_title(
            f"Spearman {result[f'{factor}_rank_correlation']:.2f} "
            f"(shuffled 95%: {result[f'{factor}_rank_null_95']:.2f}, "
            f"retest {result[f'{factor}_retest_correlation']:.2f})",
            fontsize=8,
        )
        ax.grid(alpha=0.3)
    return figure


def persistence_figure(results: list[dict], seeds):
    """Per seed and factor: persistence against random matching; eta² rank correlation
    against its shuffled null and the retest ceiling."""
    figure, (ax_overlap, ax_rank) = new_figure(2)
    seeds = np.asarray(seeds)
    for factor, offset in (("token", -0.15), ("position", 0.15)):
        colour = FACTOR_COLOURS[factor]
        ax_overlap.scatter(seeds + offset, [r[f"{factor}_persistence"] for r in results], s=18,
                           color=colour, label=f"{factor}: |S0∩S1|/|S0|", zorder=3)  # fmt: skip
        ax_overlap.scatter(seeds + offset, [r[f"{factor}_random_persistence"] for r in results],
                           s=60, marker="s", facecolors="none", edgecolors=colour, zorder=4,
                           label=f"{factor}: random matching |S1|/U")  # fmt: skip
        ax_rank.scatter(seeds + offset, [r[f"{factor}_rank_correlation"] for r in results], s=18,
                        color=colour, label=f"{factor}: init vs trained", zorder=3)  # fmt: skip
        ax_rank.scatter(seeds + offset, [r[f"{factor}_rank_null_95"] for r in results], s=30,
                        marker=source_style("shuffled")["marker"], facecolors="none",
                        edgecolors=colour, label=f"{factor}: shuffled 95%")  # fmt: skip
        ax_rank.scatter(seeds + offset, [r[f"{factor}_retest_correlation"] for r in results],
                        s=14, marker="x", color=colour, alpha=0.6,
                        label=f"{factor}: retest (untrained)")  # fmt: skip
    ax_overlap.set_title("selective sets: persistence vs random matching", fontsize=9)
    ax_overlap.set_ylim(-0.02, 1.05)
    seed_axis(ax_overlap, "persistence of selective sets (share)")
    ax_overlap.legend(fontsize=6)
    ax_rank.set_title("eta² of each neuron, init vs trained", fontsize=9)
    seed_axis(ax_rank, "Spearman r of eta² across neurons")
    ax_rank.legend(fontsize=6)
    return figure
