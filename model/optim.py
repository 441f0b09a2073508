"""Optimizers that update a model's parameter arrays in place, gradient clipping, LR schedules."""

from __future__ import annotations

import math

import numpy as np

Params = dict[str, np.ndarray]


class SGD:
    """SGD with (heavy-ball) momentum and decoupled weight decay."""

    def __init__(self, params: Params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
        _check_hyper(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if momentum >= 1:
            raise ValueError(f"momentum must be < 1, got {momentum}")
        self.params, self.lr, self.momentum, self.weight_decay = params, lr, momentum, weight_decay
        self.velocity = {name: np.zeros_like(value) for name, value in params.items()}

    def step(self, grads: Params, lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        for name, param in self.params.items():
            velocity = self.velocity[name]
            velocity *= self.momentum
            velocity += grads[name]
            if self.weight_decay and _decays(param):
                param *= 1 - lr * self.weight_decay
            param -= lr * velocity


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), applied to matrices only."""

    def __init__(
        self,
        params: Params,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ):
        _check_hyper(lr=lr, eps=eps, weight_decay=weight_decay)
        if not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        self.params, self.lr, self.betas = params, lr, betas
        self.eps, self.weight_decay = eps, weight_decay
        self.moment1 = {name: np.zeros_like(value) for name, value in params.items()}
        self.moment2 = {name: np.zeros_like(value) for name, value in params.items()}
        self.steps = 0

    def step(self, grads: Params, lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        self.steps += 1
        beta1, beta2 = self.betas
        correction1 = 1 - beta1**self.steps
        correction2 = 1 - beta2**self.steps
        for name, param in self.params.items():
            grad, m, v = grads[name], self.moment1[name], self.moment2[name]
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            if self.weight_decay and _decays(param):
                param *= 1 - lr * self.weight_decay
            param -= (lr / correction1) * m / (np.sqrt(v / correction2) + self.eps)


OPTIMIZERS = {"sgd": SGD, "adamw": AdamW}


def _decays(param: np.ndarray) -> bool:
    """Weight decay applies to matrices (embeddings, projections), not to biases or LN gains."""
    return param.ndim >= 2


def _check_hyper(**values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {value}")


def clip_grad_norm(grads: Params, max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most `max_norm`; the old norm."""
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if max_norm > 0 and total > max_norm:
        scale = max_norm / (total + 1e-12)
        for grad in grads.values():
            grad *= scale
    return total


def learning_rate(step: int, total_steps: int, base_lr: float, warmup: int, schedule: str) -> float:
    """Linear warmup for `warmup` steps, then constant or cosine decay to 10% of `base_lr`."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total_steps - warmup)
        return base_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
    raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
