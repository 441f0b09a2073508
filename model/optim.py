"""Optimizers that update a model's parameter arrays in place, gradient clipping, LR schedules."""

from __future__ import annotations

import math

import numpy as np

Params = dict[str, np.ndarray]


class FlatParams:
    """A model's parameters as views into one contiguous buffer, so that an optimizer step is a
    handful of in-place array operations however many parameter arrays there are (per-array
    overhead and fresh temporaries dominated the step of small models). Rebinds the entries of
    `params` to the views: values, shapes and dtypes are unchanged, and the model keeps using
    the same dict. Matrices come first, so the weight-decayed part is one slice."""

    def __init__(self, params: Params):
        self.names = sorted(params, key=lambda name: not _decays(params[name]))  # stable
        self.buffer = np.concatenate([params[name].ravel() for name in self.names])  # [P]
        self.grad = np.empty_like(self.buffer)  # [P] reused every step
        self.n_decaying = sum(params[name].size for name in self.names if _decays(params[name]))
        start = 0
        for name in self.names:
            shape, size = params[name].shape, params[name].size
            params[name] = self.buffer[start : start + size].reshape(shape)
            start += size

    def gather(self, grads: Params) -> np.ndarray:
        """The gradients in the buffer's layout, written into the reused `grad` buffer: [P]."""
        return np.concatenate([grads[name].ravel() for name in self.names], out=self.grad)

    def decay(self, lr: float, weight_decay: float) -> None:
        """Decoupled weight decay of the matrices: p <- p (1 - lr wd)."""
        if weight_decay:
            self.buffer[: self.n_decaying] *= 1 - lr * weight_decay


class SGD:
    """SGD with (heavy-ball) momentum and decoupled weight decay."""

    def __init__(self, params: Params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
        _check_hyper(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if momentum >= 1:
            raise ValueError(f"momentum must be < 1, got {momentum}")
        self.flat, self.lr, self.momentum, self.weight_decay = (
            FlatParams(params),
            lr,
            momentum,
            weight_decay,
        )
        self.velocity = np.zeros_like(self.flat.buffer)

    def step(self, grads: Params, lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        self.velocity *= self.momentum
        self.velocity += self.flat.gather(grads)
        self.flat.decay(lr, self.weight_decay)
        grad = np.multiply(self.velocity, lr, out=self.flat.grad)
        self.flat.buffer -= grad


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
        self.flat, self.lr, self.betas = FlatParams(params), lr, betas
        self.eps, self.weight_decay = eps, weight_decay
        self.moment1 = np.zeros_like(self.flat.buffer)
        self.moment2 = np.zeros_like(self.flat.buffer)
        self.scratch = np.empty_like(self.flat.buffer)
        self.steps = 0

    def step(self, grads: Params, lr: float | None = None) -> None:
        """One update, in place, with no fresh temporaries (the buffers are reused)."""
        lr = self.lr if lr is None else lr
        self.steps += 1
        beta1, beta2 = self.betas
        grad, scratch = self.flat.gather(grads), self.scratch  # [P] each
        self.moment1 *= beta1
        self.moment1 += np.multiply(grad, 1 - beta1, out=scratch)
        self.moment2 *= beta2
        np.multiply(grad, grad, out=scratch)
        scratch *= 1 - beta2
        self.moment2 += scratch
        # update = lr / c1 * m / (sqrt(v / c2) + eps), with c the bias corrections
        np.divide(self.moment2, 1 - beta2**self.steps, out=scratch)
        np.sqrt(scratch, out=scratch)
        scratch += self.eps
        np.divide(self.moment1, scratch, out=scratch)
        scratch *= lr / (1 - beta1**self.steps)
        self.flat.decay(lr, self.weight_decay)
        self.flat.buffer -= scratch


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
