"""Evolution through training: how the controlled statistics of claims 1, 3, 4 and 5 move.

Claim 6 compares a model before and after training. Here each (source, seed) model is trained on the
`patterns` task (the budget claim 6 trained with before issue 20; claim 6 now trains by epochs as
the seed notebook did, which gives no snapshots) with a snapshot every `snapshot_every` steps (the
trainer's snapshots, step 0 included); at every snapshot each measured claim's network statistic and
its studied null's, the null its controlled reading is decided against (`measured.beyond_null`:
claims 3's and 4's rotated basis, claim 5's layout-matched families, claim 1's embedding alone), and
the task accuracy: on held-out problems, and on every member of the structured families (whether
training taught the task: the held-out split of `patterns` holds the few ascending and repeating
sequences whose hash falls into it, so random and alternating ones dominate it).

The property a claim is about is its structure beyond its null: the difference network - null
at the same step (the null is measured on the same snapshot: the embedding trains too). Whether
training makes it emerge, keeps it or lets it fade is the margin rule on both sides
(mechclaims.interp.verdicts.margin_side) applied to the paired change of that difference from
step 0 (the random init) to the last snapshot, one per seed, against the claim's margin of its
studied null (`evolution_verdict`).

Multiplicity: none across the 4 claims x presets. Each (claim, preset) word is a verdict of its
own, judged against its own registry entry, as every claim's verdict per preset is; the study
draws no conclusion across cells ("something emerges somewhere"). A cell's word is wrong only
when its interval misses the true mean change: emerges or fades at most (1 - confidence) / 2 of
the time each, persists at most (1 - confidence) / 2 (tests/interp/test_evolution_rule.py
simulates each at the margin).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mechclaims.interp.claims.catalog import STUDIED
from mechclaims.interp.claims.measured import (
    beyond_null,
    compared,
    studied_margin,
)
from mechclaims.interp.inputs import family_sequences
from mechclaims.interp.persistence import family_accuracy
from mechclaims.interp.sources import PANEL_SIZE, ModelSource
from mechclaims.interp.verdicts import MarginVerdict, sided_verdict
from mechclaims.model.tasks import PATTERN_FAMILIES, get_task
from mechclaims.model.train import TrainSettings, evaluate, train
from mechclaims.model.transformer import Transformer

TASK = "patterns"  # the seed notebook's pattern families, by steps (the trainer's snapshots)
STATISTICS = tuple(STUDIED)  # the claims measured at every snapshot
# positions the designs and the training need
CONTEXT = max(get_task(TASK).n_ctx, *(claim.context for claim in STUDIED.values()))
WORDS = ("emerges", "persists", "fades", "inconclusive")


def train_settings(thresholds: dict, seed: int, **more) -> TrainSettings:
    """The evolution's training budget (train_steps, train_batch_size, train_lr, train_warmup),
    and `more` settings."""
    return TrainSettings(
        steps=thresholds["train_steps"],
        batch_size=thresholds["train_batch_size"],
        lr=thresholds["train_lr"],
        warmup=thresholds["train_warmup"],
        seed=seed,
        **more,
    )


def structured_families(source: ModelSource, task) -> dict[str, np.ndarray]:
    """The evolution's families: {family: every member [n, T] as the source's token ids} of the
    task's structured families (`inputs.family_sequences`, of PATTERN_FAMILIES)."""
    return {
        name: source.tokens(members)
        for name, members in family_sequences(PANEL_SIZE, task.seq_len).items()
        if name in PATTERN_FAMILIES
    }


def trajectory(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """Train the model of (source, seed) on the task with snapshots; measure every snapshot.

    {"steps": [S], "accuracy": [S] next-token accuracy on held-out problems,
    "structured_accuracy": [S] mean next-token accuracy over the structured families' members,
    "<claim>": {"network": [S], "null": [S]} for each of STATISTICS}."""
    task = get_task(TASK).on_tokens(source.panel)
    settings = train_settings(thresholds, seed, eval_size=thresholds["eval_size"],
                              snapshot_every=thresholds["snapshot_every"])  # fmt: skip
    families = structured_families(source, task)
    steps, measured = [], []
    with tempfile.TemporaryDirectory() as directory:

        def snapshot_path(step: int) -> Path:
            steps.append(step)
            return Path(directory) / f"step{step:06d}.npz"

        result = train(source.model(seed), task, settings, snapshot_path=snapshot_path)
        for path in result.snapshots:
            model = Transformer.load(path)
            measured.append(snapshot(model, source, seed, thresholds, task, families))
    return {
        "steps": np.array(steps),
        **{name: np.array([entry[name] for entry in measured])
           for name in ("accuracy", "structured_accuracy")},
        **{
            claim: {side: np.array([entry[claim][side] for entry in measured])
                    for side in ("network", "null")}
            for claim in STATISTICS
        },
    }  # fmt: skip


def snapshot(
    model: Transformer, source: ModelSource, seed: int, thresholds: dict, task, families: dict
) -> dict:
    """One snapshot's measurements: each claim's statistics and the task accuracies."""
    return {
        "accuracy": evaluate(model, task, thresholds["eval_size"], seed)["accuracy"],
        "structured_accuracy": float(np.mean(list(family_accuracy(model, families).values()))),
        **{claim: beyond_null(claim, model, source, seed, thresholds) for claim in STATISTICS},
    }


def beyond_by_step(trajectories: Sequence[dict], claim: str) -> np.ndarray:
    """[seeds, S]: network - null at every snapshot, the null measured on the same snapshot."""
    return np.array([entry[claim]["network"] - entry[claim]["null"] for entry in trajectories])


def seed_changes(trajectories: Sequence[dict], claim: str) -> np.ndarray:
    """[seeds]: each seed's change of network - null from step 0 (its random init) to its
    last snapshot: paired by seed, the same model before and after."""
    beyond = beyond_by_step(trajectories, claim)  # [seeds, S]
    return beyond[:, -1] - beyond[:, 0]


WORD_OF_SIDE = {"above": "emerges", "below": "fades", "within": "persists",
                "undecided": "inconclusive"}  # fmt: skip


def evolution_verdict(
    changes, margin: float, confidence: float = 0.95, comparison: str = "network - null"
) -> MarginVerdict:
    """The margin rule on both sides of the paired changes [seeds] (`margin_side`): `emerges`
    if their interval lies above +margin, `fades` if below -margin, `persists` if inside
    (-margin, +margin) (an equivalence test: both one-sided rules refute a change of the
    margin's size), else `inconclusive`."""
    return sided_verdict(changes, margin, confidence, WORD_OF_SIDE,
                         f"change of {comparison} from step 0")  # fmt: skip


def claim_verdict(trajectories: Sequence[dict], claim: str, thresholds: dict) -> MarginVerdict:
    """`claim`'s evolution on `trajectories` (one per seed) against its margin of its studied
    null, at the study's `confidence`."""
    return evolution_verdict(seed_changes(trajectories, claim), studied_margin(thresholds, claim),
                             thresholds["confidence"], compared(claim))  # fmt: skip


def seed_word(change: float, margin: float) -> str:
    """What one seed's change shows, descriptively (one seed decides nothing)."""
    if change > margin:
        return "emerges"
    if change < -margin:
        return "fades"
    return "persists"
