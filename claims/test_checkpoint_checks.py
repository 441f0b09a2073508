"""Does judging a checkpoint against its random baselines work? Calibration and power.

Opt-in (`pytest claims/ -m calibration`; CI runs it): both judge checkpoints of the cheap
tiny-mha preset against its random inits (the --seeds) exactly as `--model-checkpoint` does
(claims/test_checkpoints.py).

- Calibration: a checkpoint that is itself a random init of the config, of a seed outside the
  baselines', must be unlike-random on no claim but by chance: over CALIBRATION_SEEDS such
  checkpoints, the share unlike-random on any claim is consistent with at most the registry's
  level: its one-sided Clopper-Pearson lower bound (at the registry's calibration_confidence,
  0.99) lies at or below it (the procedure promises at most 1/21 with 20 baselines; a check at
  99% fails a calibrated one 1% of the time).
- Power: a model trained by our trainer on the patterns task changes what its units respond to;
  the claim that measures that (3, selectivity beyond the embedding) must come out
  unlike-random. Every verdict of the trained checkpoint is recorded beside it.
"""

from __future__ import annotations

import pytest
import scipy.stats

from claim_plots import new_figure, seed_axis
from mechclaims.interp.claims.checkpoint import judged
from mechclaims.interp.sources import checkpoint_source
from mechclaims.interp.stats import wilson_interval
from mechclaims.model.config import TransformerConfig
from mechclaims.model.tasks import get_task
from mechclaims.model.train import TrainSettings, train
from mechclaims.model.transformer import Transformer

pytestmark = pytest.mark.calibration

PRESET = "tiny-mha"  # the cheapest preset with attention weights
CALIBRATION_SEEDS = range(1000, 1040)  # random-init checkpoints, outside any baseline's seed
POWER_TRAINING = TrainSettings(steps=400, seed=0)  # `mechclaims train`'s defaults, 400 steps
POWER_CLAIM = ("selectivity", "controlled")  # what training on patterns must change
STATEMENT = "Judging a checkpoint against its random baselines is calibrated and has power."


def clopper_pearson_lower(successes: int, trials: int, confidence: float) -> float:
    """The exact one-sided lower confidence bound of a binomial rate."""
    if successes == 0:
        return 0.0
    return float(scipy.stats.beta.ppf(1 - confidence, successes, trials - successes + 1))


def verdicts_of(memo, registry, path, seeds) -> dict:
    """{(claim, reading): verdict} of a checkpoint file, as a checkpoint run judges it."""
    judgement = judged(memo, registry, checkpoint_source(str(path)), seeds)
    return {key: verdict for key, (verdict, _, _) in judgement.items()}


@pytest.mark.claim("checkpoint-calibration", statement=STATEMENT, decides=True)
def test_a_random_init_is_unlike_random_no_more_often_than_the_level(
    evidence, memo, registry, seeds, tmp_path
):
    cfg = TransformerConfig.preset(PRESET)
    unlike = []
    for seed in CALIBRATION_SEEDS:
        path = tmp_path / f"init{seed}.npz"
        # saved without its seed: claim 6 (which rebuilds a model's initialization) abstains
        Transformer.from_params(cfg, Transformer(cfg, seed=seed).params).save(path)
        verdicts = verdicts_of(memo, registry, path, seeds)
        unlike.append([key for key, verdict in verdicts.items() if verdict == "unlike-random"])
    level = registry["checkpoints"]["fdr"]
    flagged = sum(bool(keys) for keys in unlike)
    low, high = wilson_interval(flagged, len(unlike))
    confidence = registry["checkpoints"]["calibration_confidence"]
    bound = clopper_pearson_lower(flagged, len(unlike), confidence)
    evidence.record(
        verdict="supported" if bound <= level else "refuted",
        lower_bound=bound,
        confidence=confidence,
        checkpoints=len(unlike),
        unlike_on_any_claim=flagged,
        rate_low=float(low),
        rate_high=float(high),
        level=level,
        flagged=[f"{seed}: {', '.join('/'.join(key) for key in keys)}"
                 for seed, keys in zip(CALIBRATION_SEEDS, unlike, strict=True) if keys],
        summary=f"{flagged}/{len(unlike)} random-init checkpoints unlike-random on some claim "
        f"(95% CI {low:.2f}-{high:.2f}; {confidence:.0%} lower bound {bound:.3f}, level {level})",
    )  # fmt: skip
    figure, (ax,) = new_figure(1, width=6.0)
    ax.bar(list(CALIBRATION_SEEDS), [len(keys) for keys in unlike])
    seed_axis(ax, "claims and readings unlike-random")
    ax.set_title(f"random-init checkpoints of {PRESET} against seeds {seeds[0]}-{seeds[-1]}",
                 fontsize=9)  # fmt: skip
    evidence.figure("unlike-random verdicts of random-init checkpoints", figure)
    assert bound <= level, f"{flagged}/{len(unlike)} random inits judged unlike-random"


@pytest.mark.claim("checkpoint-power", statement=STATEMENT, decides=True)
def test_a_model_trained_on_patterns_is_unlike_random_where_training_changes_it(
    evidence, memo, registry, seeds, tmp_path
):
    task = get_task("patterns")
    model = Transformer(TransformerConfig.preset(PRESET), seed=POWER_TRAINING.seed)
    trained = train(model, task, POWER_TRAINING)
    model.save(tmp_path / "trained.npz")
    verdicts = verdicts_of(memo, registry, tmp_path / "trained.npz", seeds)
    evidence.record(
        verdict="supported" if verdicts[POWER_CLAIM] == "unlike-random" else "refuted",
        steps=POWER_TRAINING.steps,
        heldout_accuracy=trained.evaluation["accuracy"],
        **{f"{claim}_{reading}": verdict for (claim, reading), verdict in verdicts.items()},
        summary=f"{'/'.join(POWER_CLAIM)}: {verdicts[POWER_CLAIM]} after {POWER_TRAINING.steps} "
        f"steps on patterns (held-out accuracy {trained.evaluation['accuracy']:.2f})",
    )  # fmt: skip
    assert verdicts[POWER_CLAIM] == "unlike-random"
