"""Each claim's reading on a checkpoint and on its random baselines (a checkpoint run).

For `pytest claims/ --model-checkpoint PATH` (claims/test_checkpoints.py) and its calibration
and power checks (claims/test_checkpoint_checks.py): every claim's reading is measured on the
checkpoint and on its baselines, all with the input seed CHECKPOINT_INPUTS; the registry's
`primary` statistic of each reading goes into Crawford and Howell's single-case test
(`mechclaims.interp.checkpoints`). `memo` is the harness's broker: each measurement once.

The baselines of a checkpoint run are the random inits of the checkpoint's config of the run's
seeds but its own initialization (`baseline_sources`), each measured exactly as the checkpoint
is: a random init saved with its seed (`Transformer(cfg, seed=s).save(path)`) gives, reading by
reading, the very numbers of the baseline of seed s (tests/interp/test_checkpoint_stats.py), so
that a random checkpoint is one more draw of its baselines. The calibration check passes other
checkpoints as the baselines (a pool of random inits judged against each other).

A run through training (checkpoints of one run, mechclaims.interp.training_steps) is judged
step by step: each checkpoint exactly as it would be on its own (`judgement`), its verdict, its
primary statistic and its baselines' central band a row of the reading's `trajectory`.
"""

from __future__ import annotations

import numpy as np

from mechclaims.interp.checkpoints import (
    CENTRAL_BAND,
    SingleCase,
    checkpoint_verdicts,
    single_case_test,
)
from mechclaims.interp.claims.catalog import CLAIMS
from mechclaims.interp.claims.declaration import Reading
from mechclaims.interp.sources import ModelSource, baseline_source

CHECKPOINT_INPUTS = 0  # the input seed the checkpoint and every baseline are measured with
READINGS = ("seed-protocol", "controlled")
NOT_APPLICABLE = "not-applicable"  # the verdict of a reading that cannot judge a checkpoint


def statistic(values: dict, primary: dict) -> float:
    """The reading's primary statistic (registry `primary`) in one measurement's result."""
    value = values[primary["statistic"]]
    return float(value - values[primary["minus"]] if "minus" in primary else value)


def not_applicable(claim: str, reading: str, entry: dict, source: ModelSource) -> str | None:
    """Why the reading cannot judge this checkpoint, or None."""
    primary = entry.get("primary", {}).get(reading)
    if primary is None:
        return f"the registry names no primary statistic of {claim}'s {reading} reading"
    if "not_applicable" in primary:
        return primary["not_applicable"]
    if CLAIMS[claim].needs_initialization and source.init_seed is None:
        return "it needs the model's own initialization, which this checkpoint does not record"
    return None


def baseline_seeds(source: ModelSource, seeds) -> list[int]:
    """The baselines' seeds: the run's, but the checkpoint's own initialization (when known),
    which is no random draw beside it (for claim 6 it would be the checkpoint's retest)."""
    return [seed for seed in seeds if seed != source.init_seed]


def baseline_sources(source: ModelSource, seeds) -> list[ModelSource]:
    """A checkpoint run's baselines: the random inits of the checkpoint's config of
    `baseline_seeds`, each treated as the checkpoint is (`baseline_source`)."""
    return [baseline_source(source, seed) for seed in baseline_seeds(source, seeds)]


def applicable(registry, source: ModelSource):
    """(claim, reading, its declaration, entry, reason) of every claim and reading, in order;
    reason is why the reading cannot judge this checkpoint, or None."""
    for claim, declared in CLAIMS.items():
        entry = registry["claims"][claim]
        for reading in READINGS:
            reason = not_applicable(claim, reading, entry, source)
            yield claim, reading, declared.reading(reading), entry, reason


def measurements(registry, source: ModelSource, baselines: list[ModelSource]) -> list[tuple]:
    """Every (measure, source, input seed, thresholds) that `single_cases` asks memo for: the
    checkpoint's, then its baselines', reading by reading (the broker's plan of a checkpoint
    run)."""
    return [
        (declared.checkpoint_measure, each, CHECKPOINT_INPUTS, entry["thresholds"])
        for _, _, declared, entry, reason in applicable(registry, source)
        if reason is None
        for each in (source, *baselines)
    ]


def single_cases(memo, registry, source: ModelSource, baselines: list[ModelSource]) -> dict:
    """{(claim, reading): SingleCase, or the reason it does not apply}, every claim and reading
    of the checkpoint `source` against `baselines` (memo computes each measurement once)."""
    cases = {}
    for claim, reading, declared, entry, reason in applicable(registry, source):
        if reason:
            cases[claim, reading] = reason
            continue
        primary = entry["primary"][reading]
        value, *others = (
            statistic(measured_on(memo, declared, each, entry["thresholds"]), primary)
            for each in (source, *baselines)
        )
        cases[claim, reading] = single_case_test(value, others)
    return cases


def measured_on(memo, reading: Reading, source: ModelSource, thresholds: dict) -> dict:
    """The reading's result on `source`, as a checkpoint run measures it (memo: once)."""
    measured = memo(reading.checkpoint_measure, source, CHECKPOINT_INPUTS, thresholds)
    return reading.checkpoint_result(measured)


def judged(memo, registry, source: ModelSource, baselines: list[ModelSource]) -> dict:
    """{(claim, reading): (verdict, adjusted p, BH q)} of the readings that apply, judged
    together (`mechclaims.interp.checkpoints.checkpoint_verdicts`)."""
    cases = single_cases(memo, registry, source, baselines)
    keys = [key for key, case in cases.items() if not isinstance(case, str)]
    verdicts = checkpoint_verdicts([cases[key] for key in keys], registry["checkpoints"]["fdr"])
    return dict(zip(keys, verdicts, strict=True))


def judgement(memo, registry, source: ModelSource, seeds, claim: str, reading: str) -> tuple:
    """One claim's reading on the checkpoint `source` against the random inits of `seeds`
    (`baseline_sources`), judged with all the others (`judged`): (its SingleCase, (verdict,
    adjusted p, BH q)), or (the reason it does not apply, None)."""
    baselines = baseline_sources(source, seeds)
    case = single_cases(memo, registry, source, baselines)[claim, reading]
    if isinstance(case, str):
        return case, None
    return case, judged(memo, registry, source, baselines)[claim, reading]


def trajectory(memo, registry, run: dict[int, ModelSource], seeds, claim: str, reading: str):
    """The reading through a run's checkpoints ({step: source}, in order), each judged as on its
    own (`judgement`): a row per step, its step and checkpoint, then `judged_row`."""
    return [
        {"step": step, "checkpoint": source.checkpoint,
         **judged_row(*judgement(memo, registry, source, seeds, claim, reading))}
        for step, source in run.items()
    ]  # fmt: skip


def judged_row(case: SingleCase | str, decided: tuple | None) -> dict:
    """A checkpoint's verdict (NOT_APPLICABLE with why), the primary statistic and its
    direction, the baselines' median and central band (CENTRAL_BAND), the max-T adjusted p."""
    if decided is None:
        return {"verdict": NOT_APPLICABLE, "why": case}
    low, high = case.band(CENTRAL_BAND)
    return {
        "verdict": decided[0],
        "direction": case.direction,
        "statistic": case.value,
        "baseline_median": float(np.median(case.baselines)),
        "band_low": low,
        "band_high": high,
        "adjusted_p": decided[1],
    }
