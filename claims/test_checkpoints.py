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
"""

from __future__ import annotations

import numpy as np
import pytest

from claim_plots import new_figure, source_style, threshold_line
from mechclaims.fixtures.plugin import OPTIONS_KEY, REGISTRY_KEY, run_seeds
from mechclaims.interp.checkpoints import CENTRAL_BAND
from mechclaims.interp.claims.catalog import CLAIMS
from mechclaims.interp.claims.checkpoint import (
    READINGS,
    baseline_sources,
    judged,
    measurements,
    single_cases,
)
from mechclaims.interp.sources import ModelSource, checkpoint_source


def planned_measurements(item: pytest.Item) -> list[tuple]:
    """What a checkpoint's test asks memo for (the broker's plan, see measurements_of in
    mechclaims.fixtures.plugin): every reading on the checkpoint and its baselines."""
    config = item.config
    path = item.callspec.params["checkpoint"]
    source = checkpoint_source(path, config.stash[OPTIONS_KEY].panel_rule)
    baselines = baseline_sources(source, run_seeds(config, None))
    return measurements(config.stash[REGISTRY_KEY], source, baselines)


def judge_checkpoint(evidence, memo, registry, source: ModelSource, seeds, claim, reading):
    """Record the verdict of one claim's reading on the checkpoint (judged with all the others)."""
    baselines = baseline_sources(source, seeds)
    cases = single_cases(memo, registry, source, baselines)
    verdicts = judged(memo, registry, source, baselines)
    case = cases[claim, reading]
    if isinstance(case, str):
        evidence.record(verdict="not-applicable", why=case, summary=f"not applicable: {case}")
        return
    verdict, adjusted, q = verdicts[claim, reading]
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
            f"{case.value:.4g} vs baselines' median {np.median(case.baselines):.4g} "
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
    def test(evidence, memo, registry, checkpoint_model_source, seeds):
        judge_checkpoint(evidence, memo, registry, checkpoint_model_source, seeds, claim,
                         reading)  # fmt: skip

    test.__name__ = f"test_{claim}_{reading}".replace("-", "_")
    return test


for _claim in CLAIMS:
    for _reading in READINGS:
        _test = judging(_claim, _reading)
        globals()[_test.__name__] = _test


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
