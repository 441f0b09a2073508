"""Evolution through training: does the structure claims 1, 3, 4 and 5 look for emerge, persist
or fade as a model learns?

The seed's future direction: "track feature evolution during training" (claim 6 compares only before
and after). Each preset and seed is trained on the `patterns` task (claim 6's budget before issue
20) with a snapshot every few steps (the trainer's `--snapshot-every`, step 0 included); at every
snapshot each claim's controlled statistic, that of the null its controlled reading is decided
against (claims 3's and 4's rotated basis, claim 5's layout-matched families, claim 1's embedding
alone) on the same inputs, and the task accuracy are measured (mechclaims.interp.claims.evolution).

The property is the structure beyond the claim's null, network - null at the same step. Its
change from step 0 (the random init) to the last snapshot, paired by seed, is held against the
claim's margin of that null on both sides (the margin rule twice): it emerges (the interval
above +margin), fades (below -margin), persists (inside ±margin, an equivalence test) or is
inconclusive. Each (claim, preset) is a verdict of its own, not corrected for the others
(interp/claims/evolution.py says why). Opt-in: `pytest claims -m evolution`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from claim_plots import OTHER_SOURCE, SOURCES, Source, threshold_line
from mechclaims.fixtures.plugin import OPTIONS_KEY, REGISTRY_KEY, claim_config, run_seeds
from mechclaims.fixtures.registry import READING_WORDS, claim_thresholds
from mechclaims.interp.claims.catalog import STUDIED
from mechclaims.interp.claims.evolution import CONTEXT as TRAINED_CONTEXT
from mechclaims.interp.claims.evolution import (
    STATISTICS,
    beyond_by_step,
    claim_verdict,
    seed_word,
    trajectory,
)
from mechclaims.interp.claims.measured import (
    NULL_NAMES,
    compared,
    studied_margin,
    studied_null,
)
from mechclaims.interp.sources import source_for
from mechclaims.interp.verdicts import margin_verdict

CLAIM = "evolution"
READING = "evolution"
STATEMENT = "The structure of random transformers emerges, persists or fades through training."
CONTEXT = TRAINED_CONTEXT  # the positions its designs need (mechclaims.fixtures.plugin)
pytestmark = pytest.mark.evolution


def planned_measurements(item: pytest.Item) -> list[tuple]:
    """What an evolution test asks memo for (the broker's plan, see measurements_of in
    mechclaims.fixtures.plugin): its preset's trajectory for its seed or its seeds; the first
    preset's cross-seed tests draw every preset's (one figure per claim)."""
    config, params = item.config, item.callspec.params
    if "seed" in params:
        source, thresholds = preset_measurement(config, params["preset"])
        return [(trajectory, source, params["seed"], thresholds)]
    first = params["preset"] == config.stash[OPTIONS_KEY].presets[0]
    presets = config.stash[OPTIONS_KEY].presets if first else [params["preset"]]
    return [measurement for preset in presets
            for measurement in preset_measurements(config, preset)]  # fmt: skip


def preset_measurement(config: pytest.Config, preset: str) -> tuple:
    """(source, thresholds) of the evolution on `preset`, as the fixtures make them."""
    source = source_for(claim_config(config, CLAIM, preset), config.stash[OPTIONS_KEY].panel_rule)
    return source, claim_thresholds(config.stash[REGISTRY_KEY]["claims"][CLAIM], preset)


def preset_measurements(config: pytest.Config, preset: str) -> list[tuple]:
    """Every (trajectory, source, seed, thresholds) of `preset`, over its seeds."""
    source, thresholds = preset_measurement(config, preset)
    return [(trajectory, source, seed, thresholds) for seed in run_seeds(config, CLAIM, preset)]


@pytest.mark.claim(f"{CLAIM}/{READING}", statement=STATEMENT)
@pytest.mark.parametrize("statistic", STATISTICS)
def test_trajectory(evidence, memo, model_source, seed, thresholds, statistic):
    result = memo(trajectory, model_source, seed, thresholds)
    beyond = beyond_by_step([result], statistic)[0]  # [S]
    word = seed_word(beyond[-1] - beyond[0], studied_margin(thresholds, statistic))
    evidence.record(
        change=beyond[-1] - beyond[0],
        verdict=READING_WORDS[READING][word],
        seed_finding=word,
        beyond_init=beyond[0],
        beyond_last=beyond[-1],
        **{f"{side}_{when}": result[statistic][side][index]
           for side in ("network", "null") for when, index in (("init", 0), ("last", -1))},
        **{f"{name}_{when}": result[name][index] for name in ("accuracy", "structured_accuracy")
           for when, index in (("init", 0), ("last", -1))},
    )  # fmt: skip
    assert result["steps"][0] == 0
    assert result["steps"][-1] == thresholds["train_steps"]
    assert np.all(np.isfinite(beyond))
    for name in ("accuracy", "structured_accuracy"):
        assert np.all((result[name] >= 0) & (result[name] <= 1))


@pytest.mark.claim(f"{CLAIM}/{READING}", statement=STATEMENT, decides=True)
@pytest.mark.parametrize("statistic", STATISTICS)
def test_evolution_across_seeds(
    evidence, judge_word, memo, pytestconfig, model_source, preset, seeds, thresholds,
    statistic,
):  # fmt: skip
    results = [memo(trajectory, model_source, seed, thresholds) for seed in seeds]
    decided = claim_verdict(results, statistic, thresholds)
    if preset == pytestconfig.stash[OPTIONS_KEY].presets[0]:  # one figure per claim
        by_preset = every_preset(memo, pytestconfig)
        evidence.figure(f"{statistic} through training, every preset",
                        trajectories_figure(by_preset, statistic))  # fmt: skip
    judge_word(READING, {"statistic": statistic, "preset": preset}, decided.verdict,
               decided.describe(), seeds_tested=decided.seeds, change_mean=decided.mean,
               change_low=decided.low, change_high=decided.high, margin=decided.margin,
               null=studied_null(statistic))  # fmt: skip
    assert_trained(evidence, results, thresholds)


def assert_trained(evidence, results: list[dict], thresholds: dict) -> None:
    """A property's evolution means little if training taught nothing: the accuracy on the
    structured families (every member) must rise from step 0 by the registry's margin (the
    margin rule across seeds). Fails when the seeds show it did not (refuted); too few seeds to
    show it is recorded, not failed."""
    gains = np.array([result["structured_accuracy"][-1] - result["structured_accuracy"][0]
                      for result in results])  # fmt: skip
    learned = margin_verdict(gains, thresholds["accuracy_margin"], thresholds["confidence"],
                             "accuracy gain")  # fmt: skip
    evidence.record(trained=learned.verdict, accuracy_gain_mean=learned.mean)
    assert learned.verdict != "refuted", f"training did not teach the task: {learned.describe()}"


def every_preset(memo, pytestconfig) -> dict[str, tuple[list[dict], dict]]:
    """{preset: (its trajectories over its seeds, its thresholds)} for every preset of the run."""
    by_preset = {}
    for preset in pytestconfig.stash[OPTIONS_KEY].presets:
        measurements = preset_measurements(pytestconfig, preset)
        by_preset[preset] = ([memo(*measurement) for measurement in measurements],
                             preset_measurement(pytestconfig, preset)[1])  # fmt: skip
    return by_preset


def trajectories_figure(by_preset: dict[str, tuple[list[dict], dict]], statistic: str):
    """A column per preset. Top: the network's statistic and its null's at every snapshot
    (median, band from min to max over seeds), against the band of the random inits (step 0).
    Bottom: each seed's change of network - null from step 0, the mean change with its interval
    at the last step, and ±margin: the decision."""
    figure, axes = plt.subplots(2, len(by_preset), figsize=(4.2 * len(by_preset), 6.4),
                                squeeze=False, sharex=True, layout="constrained")  # fmt: skip
    for column, (preset, (results, thresholds)) in enumerate(by_preset.items()):
        steps = results[0]["steps"]
        top, bottom = axes[0, column], axes[1, column]
        for side, style in side_styles(statistic).items():
            values = np.array([result[statistic][side] for result in results])  # [seeds, S]
            top.fill_between(steps, values.min(axis=0), values.max(axis=0), alpha=0.2,
                             color=style.colour)  # fmt: skip
            top.plot(steps, np.median(values, axis=0), color=style.colour, marker=style.marker,
                     markersize=4, label=style.label)  # fmt: skip
        init = np.array([result[statistic]["network"][0] for result in results])
        top.axhspan(init.min(), init.max(), color="#bbbbbb", alpha=0.4, zorder=0,
                    label="random inits (step 0)")  # fmt: skip
        structured = np.median([result["structured_accuracy"] for result in results], axis=0)
        heldout = np.median([result["accuracy"] for result in results], axis=0)
        top.set_title(f"{preset}\naccuracy: families {structured[0]:.2f} → {structured[-1]:.2f}, "
                      f"held-out {heldout[0]:.2f} → {heldout[-1]:.2f}", fontsize=8)  # fmt: skip
        top.set_ylabel(STUDIED[statistic].studied_units)
        top.grid(alpha=0.3)
        top.legend(fontsize=7, loc="best")
        changes_panel(bottom, results, statistic, thresholds)
    return figure


def side_styles(statistic: str) -> dict[str, Source]:
    """How the network and the claim's studied null are drawn: each source as everywhere,
    labelled by what it is."""
    null = studied_null(statistic)
    style = SOURCES.get(null, OTHER_SOURCE)
    return {"network": SOURCES["network"],
            "null": Source(NULL_NAMES[null], style.colour, style.marker)}  # fmt: skip


def changes_panel(ax, results: list[dict], statistic: str, thresholds: dict) -> None:
    """Each seed's change of network - null since step 0, and the evolution verdict."""
    steps = results[0]["steps"]
    beyond = beyond_by_step(results, statistic)  # [seeds, S]
    changes = beyond - beyond[:, :1]
    decided = claim_verdict(results, statistic, thresholds)
    margin = decided.margin
    network = SOURCES["network"]
    for row in changes:
        ax.plot(steps, row, color=network.colour, alpha=0.5, linewidth=1)
    ax.errorbar([steps[-1]], [decided.mean], yerr=[[decided.mean - decided.low],
                [decided.high - decided.mean]], fmt="o", color="black", capsize=4,
                label=f"mean, {thresholds['confidence']:.0%} interval")  # fmt: skip
    threshold_line(ax, margin, "+margin")
    threshold_line(ax, -margin, "-margin")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_title(f"{decided.verdict} ({len(results)} seeds, a line each)", fontsize=9)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"change of {compared(statistic)} since step 0")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
