"""The training loop: batches from a task (or passes over a fixed data set), loss and
gradients, an optimizer step, evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mechclaims.model.config import TransformerConfig
from mechclaims.model.layers import log_softmax
from mechclaims.model.optim import OPTIMIZERS, clip_grad_norm, learning_rate
from mechclaims.model.tasks import Task
from mechclaims.model.transformer import Transformer

# How a snapshot is written: our .npz with its step (Transformer.save), or an HF folder of the
# model's family (Transformer.save_pretrained), whose step its name gives (`step100`).
SNAPSHOT_FORMATS = ("npz", "hf")


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    momentum: float = 0.9  # SGD only
    clip: float = 1.0  # global gradient norm; 0 turns clipping off
    warmup: int = 100
    schedule: str = "cosine"
    eval_size: int = 1024
    snapshot_every: int = 0  # 0: no snapshots
    snapshot_format: str = "npz"  # or "hf": folders by save_pretrained (SNAPSHOT_FORMATS)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "snapshot_every", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.snapshot_format not in SNAPSHOT_FORMATS:
            raise ValueError(
                f"snapshot_format must be one of {', '.join(SNAPSHOT_FORMATS)}, "
                f"got {self.snapshot_format!r}"
            )


@dataclass
class TrainResult:
    model: Transformer
    losses: list[float] = field(default_factory=list)  # training loss per step
    evaluation: dict[str, float] = field(default_factory=dict)  # held-out loss and accuracy
    snapshots: list[Path] = field(default_factory=list)


def config_for_task(cfg: TransformerConfig, task: Task) -> TransformerConfig:
    """The config grown to the vocabulary and context the task needs (never shrunk)."""
    return cfg.replace(
        vocab_size=max(cfg.vocab_size, task.vocab_size), n_ctx=max(cfg.n_ctx, task.n_ctx)
    )


EVAL_LOGITS = 1 << 22  # logits `evaluate` holds at once: 16 MB in float32, 11 problems of GPT-2


def evaluate(model: Transformer, task: Task, size: int, seed: int) -> dict[str, float]:
    """Held-out loss and accuracy (argmax = target) on the scored positions of `size` problems,
    in chunks of problems whose logits hold at most EVAL_LOGITS numbers (a 50257-word
    vocabulary's logits of 1024 problems would take 1.4 GB in float32, and each of log-softmax's
    temporaries as much again)."""
    tokens, targets, loss_mask = task.batch(np.random.default_rng([seed, 2]), size, "test")
    chunk = max(1, EVAL_LOGITS // (tokens.shape[1] * model.cfg.vocab_size))
    scored = [_target_log_probs_and_hits(model, tokens[start : start + chunk],
                                         targets[start : start + chunk])
              for start in range(0, size, chunk)]  # fmt: skip
    target_log_probs = np.concatenate([log_probs for log_probs, _ in scored])  # [n,T]
    correct = np.concatenate([hits for _, hits in scored])  # [n,T]
    return {
        "loss": float(-target_log_probs[loss_mask].mean()),
        "accuracy": float(correct[loss_mask].mean()),
    }


def _target_log_probs_and_hits(model: Transformer, tokens, targets):
    """log p(target) and whether the argmax is the target, per position: [n,T] each."""
    logits = model(tokens)  # [n,T,V]
    log_probs = log_softmax(logits)
    target_log_probs = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    return target_log_probs, logits.argmax(axis=-1) == targets


def train(
    model: Transformer,
    task: Task,
    settings: TrainSettings,
    progress: Callable[[dict], None] | None = None,
    snapshot_path: Callable[[int], Path] | None = None,
) -> TrainResult:
    """Train `model` in place on `task`, a fresh batch each step; call `progress` about 20
    times with step statistics."""
    rng = np.random.default_rng([settings.seed, 1])
    batches = (task.batch(rng, settings.batch_size) for _ in range(settings.steps))
    result = _fit(model, batches, settings.steps, settings, progress, snapshot_path)
    result.evaluation = evaluate(model, task, settings.eval_size, settings.seed)
    return result


def train_epochs(
    model: Transformer,
    sequences: np.ndarray,
    epochs: int,
    settings: TrainSettings,
    progress: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train `model` in place on a fixed data set, as the seed notebook's `train_and_track`
    did: `epochs` passes over `sequences` [n, L] in their order, in batches of
    `settings.batch_size` (the last one of each pass partial), each sequence's S[:-1]
    predicting S[1:] at every position. The settings' optimizer, rates, clipping and schedule
    apply (the schedule over the passes' steps); the data set fixes the steps, and no held-out
    problems are evaluated (the data set has no split): `steps`, `eval_size` and `seed` of the
    settings are not used."""
    sequences = np.asarray(sequences)
    if epochs < 1 or sequences.ndim != 2 or len(sequences) == 0 or sequences.shape[1] < 2:
        raise ValueError(
            f"need epochs >= 1 and sequences [n >= 1, L >= 2], got {epochs} and {sequences.shape}"
        )
    starts = range(0, len(sequences), settings.batch_size)
    batches = (
        (batch[:, :-1], batch[:, 1:], None)
        for _ in range(epochs)
        for batch in (sequences[start : start + settings.batch_size] for start in starts)
    )
    return _fit(model, batches, epochs * len(starts), settings, progress, None)


def _fit(model, batches, steps: int, settings: TrainSettings, progress, snapshot_path):
    """The optimizer's steps on `batches` of (tokens, targets, loss_mask), `steps` of them."""
    optimizer = _make_optimizer(model, settings)
    result = TrainResult(model)
    report_every = max(1, steps // 20)
    started, tokens_seen = time.perf_counter(), 0
    _maybe_snapshot(model, 0, settings, snapshot_path, result)
    for step, (tokens, targets, loss_mask) in enumerate(batches):
        loss, grads = model.loss_and_grads(tokens, targets, loss_mask)
        if not np.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss} at step {step}")
        clip_grad_norm(grads, settings.clip)
        lr = learning_rate(step, steps, settings.lr, settings.warmup, settings.schedule)
        optimizer.step(grads, lr)
        result.losses.append(loss)
        tokens_seen += tokens.size
        _maybe_snapshot(model, step + 1, settings, snapshot_path, result)
        if progress and ((step + 1) % report_every == 0 or step + 1 == steps):
            elapsed = time.perf_counter() - started
            progress({"step": step + 1, "steps": steps, "loss": loss, "lr": lr,
                      "tokens_per_s": tokens_seen / max(elapsed, 1e-9)})  # fmt: skip
    return result


def _make_optimizer(model: Transformer, settings: TrainSettings):
    if settings.optimizer == "sgd":
        return OPTIMIZERS["sgd"](
            model.params, settings.lr, settings.momentum, settings.weight_decay
        )
    return OPTIMIZERS["adamw"](model.params, settings.lr, weight_decay=settings.weight_decay)


def _maybe_snapshot(model, step: int, settings: TrainSettings, snapshot_path, result) -> None:
    every = settings.snapshot_every
    if snapshot_path is None or not every:
        return
    if step % every == 0 or step == settings.steps:
        path = snapshot_path(step)
        if settings.snapshot_format == "hf":
            model.save_pretrained(path)
        else:
            model.save(path, step=step)
        result.snapshots.append(path)
