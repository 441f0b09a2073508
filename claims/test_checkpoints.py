"""Is a checkpoint's structure more than random? Each claim, on a model of your own.

`pytest claims/ --model-checkpoint PATH` (our .npz, or an HF GPT-2 folder; repeatable) runs
these tests instead of the presets'. Each claim's reading is measured once on the checkpoint
and on the random initializations of its own config given by --seeds (the baselines), all on
the same inputs and nulls (input seed CHECKPOINT_INPUTS). The registry's `primary` statistic of
the reading (a network statistic, minus its null where the reading compares with one) on the
checkpoint is held against the baselines' by Crawford and Howell's single-case t, with
a max-T adjustment over the claims and readings whose null is the baselines themselves
(`mechclaims.interp.checkpoints`): unlike-random (higher or lower), like-random, inconclusive.
A reading that cannot apply (claim 6 without the checkpoint's own initialization) is recorded
as not applicable, with its reason. The registry holds no verdicts for checkpoints: the run is
green when it ran, and the report carries the verdicts.

Checkpoints of one run through training (several, each with its training step: in its name,
`step1000` or `run.step001000.npz`, or recorded; mechclaims.interp.training_steps) are judged
in the order of their steps, each exactly as it would be on its own, and the first step's test
of each reading also draws the reading through training (`trajectory_figure`) and records its
rows: the primary statistic at every step, its baselines' central band and the verdict.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from claim_plots import CHECKPOINT_VERDICTS, SOURCES, new_figure, source_style, threshold_line
from mechclaims.fixtures.plugin import OPTIONS_KEY, REGISTRY_KEY, run_seeds
from mechclaims.interp.checkpoints import CENTRAL_BAND
from mechclaims.interp.claims.catalog import CLAIMS
from mechclaims.interp.claims.checkpoint import (
    NOT_APPLICABLE,
    READINGS,
    baseline_sources,
    judgement,
    measurements,
    trajectory,
)
from mechclaims.interp.sources import ModelSource, checkpoint_source

TRAJECTORY = "the run through training"  # its figure and table


def planned_measurements(item: pytest.Item) -> list[tuple]:
    """What a checkpoint's test asks memo for (the broker's plan, see measurements_of in
    mechclaims.fixtures.plugin): every reading on the checkpoint and its baselines; the first
    step's tests of a run through training, on every checkpoint of the run."""
    config, path = item.config, item.callspec.params["checkpoint"]
    registry, seeds = config.stash[REGISTRY_KEY], run_seeds(config, None)
    rule, planned = config.stash[OPTIONS_KEY].panel_rule, []
    for source in drawn_run(config, path).values() or [checkpoint_source(path, rule)]:
        planned += measurements(registry, source, baseline_sources(source, seeds))
    return planned


def training_steps(config: pytest.Config) -> dict[str, int]:
    """{checkpoint: its training step} of a run through training, in step order; else {}."""
    options = config.stash[OPTIONS_KEY]
    return dict(zip(options.checkpoints, options.steps, strict=False))


def drawn_run(config: pytest.Config, path: str) -> dict[int, ModelSource]:
    """The run through training the tests of the checkpoint `path` draw, {step: its checkpoint's
    source}: every checkpoint of the run for the first step's tests; else {}."""
    steps = training_steps(config)
    if list(steps)[:1] != [path]:
        return {}
    rule = config.stash[OPTIONS_KEY].panel_rule
    return {step: checkpoint_source(each, rule) for each, step in steps.items()}


def judge_checkpoint(evidence, memo, registry, source: ModelSource, seeds, claim, reading,
                     step: int | None = None):  # fmt: skip
    """Record the verdict of one claim's reading on the checkpoint (judged with all the others),
    at its training `step` if it is one of a run's."""
    case, decided = judgement(memo, registry, source, seeds, claim, reading)
    at = "" if step is None else f"step {step}: "
    if step is not None:
        evidence.record(step=step)
    if decided is None:
        evidence.record(verdict=NOT_APPLICABLE, why=case, summary=f"{at}not applicable: {case}")
        return
    verdict, adjusted, q = decided
    low, high = case.band(0.95)
    evidence.record(
        verdict=verdict,
        statistic=case.value,
        baseline_median=float(np.median(case.baselines)),
        baseline_low=low,
        baseline_high=high,
        p_value=case.p_value,
        adjusted_p=adjusted,
        q_value=q,
        t=case.t,
        rank_p=case.rank_p,
        percentile=case.percentile,
        direction=case.direction,
        baselines_tested=len(case.baselines),
        summary=(
            f"{at}{case.value:.4g} vs baselines' median {np.median(case.baselines):.4g} "
            f"[{low:.4g}, {high:.4g}] ({case.direction}); t = {case.t:.3g}, "
            f"p = {case.p_value:.3g} (max-T adjusted {adjusted:.3g}, BH q {q:.3g}); "
            f"rank p {case.rank_p:.3g}, percentile {case.percentile:.0%}"
        ),
        why=registry["claims"][claim]["primary"][reading]["why"],
    )
    evidence.figure("checkpoint among its random baselines", baselines_figure(case, verdict))
    assert 0.0 <= case.percentile <= 1.0


def judging(claim: str, reading: str):
    """The deciding test of one claim's reading on each --model-checkpoint."""

    @pytest.mark.claim(f"{claim}/{reading}", decides=True)
    def test(evidence, memo, registry, checkpoint_model_source, seeds, pytestconfig):
        path = checkpoint_model_source.checkpoint
        run = drawn_run(pytestconfig, path)
        if run:
            record_trajectory(evidence, trajectory(memo, registry, run, seeds, claim, reading))
        judge_checkpoint(evidence, memo, registry, checkpoint_model_source, seeds, claim,
                         reading, training_steps(pytestconfig).get(path))  # fmt: skip

    test.__name__ = f"test_{claim}_{reading}".replace("-", "_")
    return test


for _claim in CLAIMS:
    for _reading in READINGS:
        _test = judging(_claim, _reading)
        globals()[_test.__name__] = _test


def record_trajectory(evidence, rows: list[dict]) -> None:
    """The reading through training: its rows as a table, and drawn when some step applies."""
    evidence.table(TRAJECTORY, rows)
    if any(row["verdict"] != NOT_APPLICABLE for row in rows):
        evidence.figure(TRAJECTORY, trajectory_figure(rows))


def trajectory_figure(rows: list[dict]):
    """The checkpoint's primary statistic at each training step (a line, each step's verdict a
    marker: `CHECKPOINT_VERDICTS`; a step the reading cannot judge on the x axis), against its
    baselines' median and central band (CENTRAL_BAND, the like-random band) at each step."""
    figure, (ax,) = new_figure(1, width=7.0)
    judged_rows = [row for row in rows if row["verdict"] != NOT_APPLICABLE]
    steps = [row["step"] for row in judged_rows]
    ax.fill_between(steps, column(judged_rows, "band_low"), column(judged_rows, "band_high"),
                    color="#dddddd", label=f"random inits' central {CENTRAL_BAND:.0%}")  # fmt: skip
    ax.plot(steps, column(judged_rows, "baseline_median"), color="#a8a8a8", linestyle="--",
            linewidth=1, label="random inits' median")  # fmt: skip
    ax.plot(steps, column(judged_rows, "statistic"), color=SOURCES["network"].colour,
            linewidth=1, label="checkpoint")  # fmt: skip
    mark_verdicts(ax, rows)
    step_axis(ax, column(rows, "step"))
    ax.set_ylabel("the reading's primary statistic")
    counts = Counter(row["verdict"] for row in rows)
    ax.set_title(f"{len(rows)} steps: " + ", ".join(f"{count} {verdict}"
                                                    for verdict, count in counts.items()),
                 fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return figure


def mark_verdicts(ax, rows: list[dict]) -> None:
    """Each step's verdict as its marker (`verdict_kind`) at its statistic; a step the reading
    cannot judge (no statistic) on the x axis."""
    for kind, style in CHECKPOINT_VERDICTS.items():
        marked = [row for row in rows if verdict_kind(row) == kind]
        if not marked:
            continue
        marks = {"color": style.colour, "marker": style.marker, "s": 36, "label": style.label}
        if kind == NOT_APPLICABLE:
            ax.scatter(column(marked, "step"), [0] * len(marked), clip_on=False, zorder=3,
                       transform=ax.get_xaxis_transform(), **marks)  # fmt: skip
        else:
            ax.scatter(column(marked, "step"), column(marked, "statistic"), zorder=3, **marks)


def column(rows: list[dict], name: str) -> list:
    return [row[name] for row in rows]


def verdict_kind(row: dict) -> str:
    """A step's verdict as its marker tells it: unlike-random with its direction."""
    if row["verdict"] == "unlike-random":
        return f"unlike-random ({row['direction']})"
    return row["verdict"]


def step_axis(ax, steps: list[int]) -> None:
    """The x axis of training steps: logarithmic (linear below 1, for step 0) when they span
    more than two decades, as Pythia's revisions (0, 1, 2, 4, ..., 143000) do."""
    positive = [step for step in steps if step > 0]
    if positive and max(positive) > 100 * min(positive):
        ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("training step")


def baselines_figure(case, verdict: str):
    """The baselines' distribution, the central band and the checkpoint's value."""
    figure, (ax,) = new_figure(1, width=6.0)
    ax.hist(case.baselines, bins=min(20, len(case.baselines)), alpha=0.7,
            color="#a8a8a8", label=f"{len(case.baselines)} random inits")  # fmt: skip
    low, high = case.band(CENTRAL_BAND)
    ax.axvspan(low, high, color="#dddddd", alpha=0.5, label=f"central {CENTRAL_BAND:.0%}")
    threshold_line(ax, case.value, "checkpoint", vertical=True)
    ax.scatter([case.value], [0], zorder=4, **{**source_style("network"), "label": None})
    ax.set_xlabel("the reading's primary statistic")
    ax.set_ylabel("random inits (count)")
    ax.set_title(f"{verdict}: t = {case.t:.3g}, p = {case.p_value:.3g}, rank p = "
                 f"{case.rank_p:.3g}", fontsize=9)  # fmt: skip
    ax.legend(fontsize=7)
    return figure
