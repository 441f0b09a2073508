"""Evolution through training: how the controlled statistics of claims 1, 3, 4 and 5 move.

Claim 6 compares a model before and after training. Here each (source, seed) model is trained
on the `patterns` task (claim 6's task and budget) with a snapshot every `snapshot_every` steps
(the trainer's snapshots, step 0 included); at every snapshot each measured claim's network
statistic and the embedding alone's (`measured.beyond_embedding`), and the task accuracy: on
held-out problems, and on every member of the structured families (claim 6's measure of whether
training taught the task: the held-out split of `patterns` holds the few ascending and
repeating sequences whose hash falls into it, so random and alternating ones dominate it).

The property a claim is about is its structure beyond the embedding: the difference
network - embedding at the same step (the embedding trains too). Whether training makes it
emerge, keeps it or lets it fade is the margin rule applied on both sides to the paired change
of that difference from step 0 (the random init) to the last snapshot, one per seed
(`evolution_verdict`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mechclaims.interp.claims.measured import CLAIMS, beyond_embedding
from mechclaims.interp.claims.persistence import TASK, structured_families, train_settings
from mechclaims.interp.persistence import family_accuracy
from mechclaims.interp.sources import ModelSource
from mechclaims.interp.verdicts import margin_verdict
from mechclaims.model.tasks import get_task
from mechclaims.model.train import evaluate, train
from mechclaims.model.transformer import Transformer

STATISTICS = tuple(CLAIMS)  # the claims measured at every snapshot
# positions the designs and the training need
CONTEXT = max(get_task(TASK).n_ctx, *(module.CONTEXT for module in CLAIMS.values()))
WORDS = ("emerges", "persists", "fades", "inconclusive")


def trajectory(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """Train the model of (source, seed) on the task with snapshots; measure every snapshot.

    {"steps": [S], "accuracy": [S] next-token accuracy on held-out problems,
    "structured_accuracy": [S] mean next-token accuracy over the structured families' members,
    "<claim>": {"network": [S], "embedding": [S]} for each of STATISTICS}."""
    task = get_task(TASK).on_tokens(source.panel)
    settings = train_settings(thresholds, seed, eval_size=thresholds["eval_size"],
                              snapshot_every=thresholds["snapshot_every"])  # fmt: skip
    families = structured_families(source, task)  # as claim 6 measures them
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
                    for side in ("network", "embedding")}
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
        **{claim: beyond_embedding(claim, model, source, seed, thresholds) for claim in STATISTICS},
    }


def beyond_by_step(trajectories: Sequence[dict], claim: str) -> np.ndarray:
    """[seeds, S]: network - embedding alone at every snapshot, each at its own step."""
    return np.array([entry[claim]["network"] - entry[claim]["embedding"] for entry in trajectories])


def seed_changes(trajectories: Sequence[dict], claim: str) -> np.ndarray:
    """[seeds]: each seed's change of network - embedding from step 0 (its random init) to its
    last snapshot: paired by seed, the same model before and after."""
    beyond = beyond_by_step(trajectories, claim)  # [seeds, S]
    return beyond[:, -1] - beyond[:, 0]


@dataclass(frozen=True)
class EvolutionVerdict:
    word: str  # one of WORDS
    mean: float  # mean change across seeds
    low: float  # its t-interval
    high: float
    margin: float  # the smallest change of interest
    seeds: int

    def describe(self) -> str:
        return (
            f"{self.word}: change of network - embedding from step 0 {self.mean:.3g} "
            f"[{self.low:.3g}, {self.high:.3g}] against ±{self.margin:g} ({self.seeds} seeds)"
        )


def evolution_verdict(
    changes, margin: float, confidence: float = 0.95, name: str = "change"
) -> EvolutionVerdict:
    """The margin rule on both sides of the paired changes [seeds]: `emerges` if their
    interval lies above +margin, `fades` if below -margin, `persists` if inside (-margin,
    +margin) (an equivalence test: both one-sided rules refute a change of the margin's size),
    else `inconclusive`."""
    up = margin_verdict(changes, margin, confidence, name)
    down = margin_verdict(-np.asarray(changes, dtype=float), margin, confidence, name)
    if up.verdict == "supported":
        word = "emerges"
    elif down.verdict == "supported":
        word = "fades"
    elif up.verdict == down.verdict == "refuted":
        word = "persists"
    else:
        word = "inconclusive"
    return EvolutionVerdict(word, up.mean, up.low, up.high, margin, up.seeds)


def seed_word(change: float, margin: float) -> str:
    """What one seed's change shows, descriptively (one seed decides nothing)."""
    if change > margin:
        return "emerges"
    if change < -margin:
        return "fades"
    return "persists"
