"""Sparse autoencoders (SAEs) on a model's activations, their quality metrics, and how
interpretable their latents are without a language model: the foundation of claim 7.

Two kinds, as SAELens trains them:

- **TopK** (Gao et al. 2024): latents = TopK_k(ReLU((x - b_dec) W_enc + b_enc)): the k largest
  pre-activations of each row are kept (and ReLU'd), the rest are 0; x_hat = latents W_dec +
  b_dec. The decoder's rows (one direction per latent) have unit norm: after every Adam step they
  are renormalized, and before it the gradient of each row loses its component along the row
  (the gradient of the loss of the row-normalized decoder, at a unit-norm decoder). Loss: the
  squared error summed over the d features, averaged over rows (SAELens's MSE). No AuxK loss and
  no resampling: dead latents stay dead, and are counted (`dead_fraction`).
- **ReLU + L1** (SAELens's standard SAE): latents = ReLU((x - b_dec) W_enc + b_enc), the same
  decoder without the norm constraint, loss = squared error + l1_coefficient * sum_i latents_i
  ||W_dec[i]||, averaged over rows (the L1 weighted by decoder norms, so shrinking the latents
  by growing the decoder gains nothing).

Init as SAELens: decoder rows random unit vectors, W_enc = W_dec.T, b_enc = 0, b_dec = the
mean of the training data (SAELens's "mean" b_dec init). Training: Adam (model/optim.py, no
weight decay) on shuffled minibatches, every draw from `np.random.default_rng(seed)`: the same
seed and data give the same bytes. float32 by default; float64 for gradient checks. Each
layer is one 2-D GEMM per batch and direction, the top-k one np.argpartition; temporaries are
fresh arrays whose memory the process reuses (model/memory.py). bench/test_sae_speed.py: 200,000
x 64 activations, 512 latents, k 32, in 2 s, 0.64x the same SAE in PyTorch.

Layers are pure forward/backward pairs as in model/layers.py: `*_forward` returns
`(out, cache)`, `*_backward(dout, cache)` returns `(dx, dparams)`. Shapes: n rows, d features,
m latents, k active latents per row (TopK).

Metrics, as SAELens / SAEBench define them: `fvu` (fraction of variance unexplained), `l0`,
`dead_fraction`, `dense_fraction`, and `spliced_losses` (the next-token loss with the SAE's
reconstruction replacing a hook point's activation, beside the clean and zero-ablation losses,
and SAEBench's loss recovered). Interpretability: `latent_eta2` (the eta² of each latent by
current token and by position, the project's ANOVA) and `single_token_share` (of each latent's
top-activating rows, the share whose token is its most common one), summarized by
`interpretability_summary`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mechclaims.interp.persistence import eta2_by_factor
from mechclaims.model.layers import cross_entropy_forward
from mechclaims.model.optim import AdamW
from mechclaims.model.transformer import Transformer

KINDS = ("topk", "relu")
Params = dict[str, np.ndarray]


# ---------------------------------------------------------------- forward/backward pairs


def encode_forward(x: np.ndarray, params: Params, k: int | None):
    """Latents [n,m] of rows x [n,d]: ReLU of the pre-activations, only the top k per row when
    `k` is given (TopK), else all of them (ReLU SAE)."""
    centered = x - params["b_dec"]  # [n,d]
    latents = centered @ params["W_enc"]  # [n,d] @ [d,m] -> [n,m]
    latents += params["b_enc"]
    if k is not None:
        top = np.argpartition(latents, -k, axis=1)[:, -k:]  # [n,k]
        kept = np.take_along_axis(latents, top, axis=1)  # [n,k]
        latents.fill(0)
        np.put_along_axis(latents, top, kept, axis=1)
    np.maximum(latents, 0, out=latents)
    return latents, (centered, latents, params["W_enc"])


def encode_backward(dlatents: np.ndarray, cache):
    """Gradients of W_enc, b_enc and (through x - b_dec) b_dec; x is data and gets none."""
    centered, latents, W_enc = cache
    dpre = np.multiply(dlatents, latents > 0)  # [n,m]: only kept, positive pre-activations
    db_enc = dpre.sum(axis=0)  # [m]
    dW_enc = centered.T @ dpre  # [d,n] @ [n,m] -> [d,m]
    return None, {"W_enc": dW_enc, "b_enc": db_enc, "b_dec": -(W_enc @ db_enc)}  # [d]


def decode_forward(latents: np.ndarray, params: Params):
    x_hat = latents @ params["W_dec"]  # [n,m] @ [m,d] -> [n,d]
    x_hat += params["b_dec"]
    return x_hat, (latents, params["W_dec"])


def decode_backward(dx_hat: np.ndarray, cache):
    latents, W_dec = cache
    dlatents = dx_hat @ W_dec.T  # [n,d] @ [d,m] -> [n,m]
    dW_dec = latents.T @ dx_hat  # [m,n] @ [n,d] -> [m,d]
    return dlatents, {"W_dec": dW_dec, "b_dec": dx_hat.sum(axis=0)}


def mse_forward(x_hat: np.ndarray, x: np.ndarray):
    """SAELens's reconstruction loss: squared error summed over features, mean over rows."""
    error = x_hat - x  # [n,d]
    return float(np.vdot(error, error)) / len(x), error


def mse_backward(dloss: float, error: np.ndarray):
    error *= 2 * dloss / len(error)
    return error, {}


def weighted_l1_forward(latents: np.ndarray, W_dec: np.ndarray, coefficient: float):
    """SAELens's standard sparsity penalty: coefficient * mean over rows of sum_i latents_i
    ||W_dec[i]|| (latents are >= 0, so |latents| = latents)."""
    norms = np.linalg.norm(W_dec, axis=1)  # [m]
    totals = latents.sum(axis=0)  # [n,m] -> [m]
    penalty = coefficient * float(totals @ norms) / len(latents)
    return penalty, (norms, totals, W_dec, coefficient, len(latents))


def weighted_l1_backward(dloss: float, cache):
    """(dlatents [m], broadcast over rows), and the gradient of W_dec through the norms."""
    norms, totals, W_dec, coefficient, n = cache
    scale = dloss * coefficient / n
    dW_dec = W_dec * (scale * totals / np.maximum(norms, np.finfo(W_dec.dtype).tiny))[:, None]
    return scale * norms, {"W_dec": dW_dec}


def project_out_rows(dW_dec: np.ndarray, W_dec: np.ndarray) -> np.ndarray:
    """The gradient without its component along each (unit-norm) decoder row, in place: the
    gradient of the loss of the row-normalized decoder (Gao et al.; SAELens's
    remove_gradient_parallel_to_decoder_directions)."""
    along = np.einsum("md,md->m", dW_dec, W_dec)  # [m]
    dW_dec -= along[:, None] * W_dec
    return dW_dec


def normalize_rows(W_dec: np.ndarray) -> np.ndarray:
    """Each decoder row scaled to unit norm, in place."""
    W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
    return W_dec


def loss_and_grads(x: np.ndarray, params: Params, k: int | None, l1_coefficient: float):
    """The SAE's training loss on rows x [n,d], its gradients, and the latents [n,m]. TopK
    (`k` given): MSE, with the decoder gradient projected as the unit-norm constraint wants;
    ReLU (`k` None): MSE + weighted L1."""
    latents, encode_cache = encode_forward(x, params, k)
    x_hat, decode_cache = decode_forward(latents, params)
    loss, error = mse_forward(x_hat, x)
    dlatents, grads = decode_backward(mse_backward(1.0, error)[0], decode_cache)
    if k is None:
        penalty, l1_cache = weighted_l1_forward(latents, params["W_dec"], l1_coefficient)
        loss += penalty
        dl1, l1_grads = weighted_l1_backward(1.0, l1_cache)
        dlatents += dl1
        grads["W_dec"] += l1_grads["W_dec"]
    else:
        project_out_rows(grads["W_dec"], params["W_dec"])
    _, encode_grads = encode_backward(dlatents, encode_cache)
    grads["b_dec"] += encode_grads.pop("b_dec")
    return loss, grads | encode_grads, latents


# ---------------------------------------------------------------- the SAE and its training


@dataclass(frozen=True)
class SparseAutoencoder:
    """A trained SAE: its parameters (W_enc [d,m], b_enc [m], W_dec [m,d], b_dec [d]), its kind
    ("topk" with `k`, or "relu" with `l1_coefficient`), and its training loss per step."""

    params: Params
    kind: str
    k: int | None = None
    l1_coefficient: float = 0.0
    losses: tuple[float, ...] = ()

    @property
    def n_latents(self) -> int:
        return self.params["W_enc"].shape[1]

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Latents [..., m] of activations [..., d]."""
        x = np.asarray(x, dtype=self.params["W_enc"].dtype)
        flat = x.reshape(-1, x.shape[-1])  # [n,d]
        latents = encode_forward(flat, self.params, self.k)[0]  # [n,m]
        return latents.reshape(*x.shape[:-1], self.n_latents)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Reconstructions [..., d] of latents [..., m]."""
        flat = latents.reshape(-1, self.n_latents)  # [n,m]
        return decode_forward(flat, self.params)[0].reshape(*latents.shape[:-1], -1)

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(x))


def init_params(data: np.ndarray, n_latents: int, rng: np.random.Generator, dtype) -> Params:
    """SAELens's init: decoder rows random unit vectors, W_enc = W_dec.T, b_enc = 0, b_dec =
    the data's mean."""
    W_dec = normalize_rows(rng.standard_normal((n_latents, data.shape[1])))  # [m,d]
    params = {
        "W_enc": W_dec.T.copy(),  # [d,m]
        "b_enc": np.zeros(n_latents),
        "W_dec": W_dec,
        "b_dec": data.mean(axis=0, dtype=np.float64),  # [d]
    }
    return {name: value.astype(dtype) for name, value in params.items()}


def train_sae(
    data: np.ndarray,
    n_latents: int,
    kind: str = "topk",
    *,
    k: int | None = None,
    l1_coefficient: float = 0.0,
    lr: float = 1e-3,
    batch_size: int = 4096,
    epochs: int = 1,
    seed: int = 0,
    dtype=np.float32,
) -> SparseAutoencoder:
    """Train an SAE on activations `data` [n,d] with Adam on shuffled minibatches (the last,
    short one dropped), `epochs` passes; deterministic in `seed`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "topk" and not (k is not None and 0 < k <= n_latents):
        raise ValueError(f"a TopK SAE needs 0 < k <= n_latents={n_latents}, got k={k}")
    if not 0 < batch_size <= len(data):
        raise ValueError(f"batch_size must lie in (0, {len(data)}], got {batch_size}")
    rng = np.random.default_rng(seed)
    data = np.asarray(data, dtype=dtype)
    params = init_params(data, n_latents, rng, dtype)
    optimizer = AdamW(params, lr=lr, weight_decay=0.0)
    top = k if kind == "topk" else None
    losses = []
    for batch in minibatches(len(data), batch_size, epochs, rng):
        loss, grads, _ = loss_and_grads(data[batch], params, top, l1_coefficient)
        optimizer.step(grads)
        if top is not None:
            normalize_rows(params["W_dec"])
        losses.append(loss)
    params = {name: value.copy() for name, value in params.items()}  # off the flat buffer
    return SparseAutoencoder(params, kind, top, l1_coefficient, tuple(losses))


def minibatches(n: int, batch_size: int, epochs: int, rng: np.random.Generator):
    """Row indices of each minibatch: a fresh permutation per epoch, cut into full batches."""
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]  # [batch_size]


# ---------------------------------------------------------------- quality metrics


def fvu(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Fraction of variance unexplained: sum ||x - x_hat||² / sum ||x - mean(x)||² over rows
    [..., d] (SAEBench's; 0 for a perfect reconstruction, 1 for the mean)."""
    x = x.reshape(-1, x.shape[-1]).astype(np.float64)  # [n,d]
    error = x - x_hat.reshape(x.shape)
    centered = x - x.mean(axis=0)
    return float(np.vdot(error, error) / np.vdot(centered, centered))


def l0(latents: np.ndarray) -> float:
    """Mean number of active (nonzero) latents per row of latents [..., m]."""
    return float(np.count_nonzero(latents) / (latents.size / latents.shape[-1]))


def firing_rates(latents: np.ndarray) -> np.ndarray:
    """Per latent, the share of rows on which it is active: [m]."""
    flat = latents.reshape(-1, latents.shape[-1])  # [n,m]
    return np.count_nonzero(flat, axis=0) / len(flat)


def dead_fraction(latents: np.ndarray) -> float:
    """Share of latents never active on these rows."""
    return float(np.mean(firing_rates(latents) == 0))


def dense_fraction(latents: np.ndarray, threshold: float = 0.1) -> float:
    """Share of latents active on more than `threshold` of the rows (SAEBench: 10%)."""
    return float(np.mean(firing_rates(latents) > threshold))


def next_token_loss(logits: np.ndarray, tokens: np.ndarray) -> float:
    """Mean cross-entropy of predicting tokens[:, 1:] from logits[:, :-1] (the model's own)."""
    predicted = logits[:, :-1].astype(np.float64)  # [B,T-1,V]
    weights = np.full(predicted.shape[:2], 1 / (predicted.size // predicted.shape[-1]))  # [B,T-1]
    return cross_entropy_forward(predicted, tokens[:, 1:], weights)[0]


def spliced_losses(
    model: Transformer, tokens: np.ndarray, hook_name: str, sae: SparseAutoencoder
) -> dict:
    """Next-token losses: clean, with the SAE's reconstruction in place of `hook_name`'s
    activation, and with that activation zeroed; and SAEBench's loss recovered,
    (L_zero - L_sae) / (L_zero - L_clean) (None when ablation does not change the loss)."""
    tokens = model.check_tokens(tokens)

    def splice(activation, name):
        return sae.reconstruct(activation).astype(activation.dtype)

    clean = next_token_loss(model(tokens), tokens)
    spliced = next_token_loss(model.run_with_hooks(tokens, [(hook_name, splice)]), tokens)
    zeroed = model.run_with_hooks(tokens, [(hook_name, lambda act, name: np.zeros_like(act))])
    zero = next_token_loss(zeroed, tokens)
    recovered = (zero - spliced) / (zero - clean) if zero != clean else None
    return {"clean": clean, "sae": spliced, "zero": zero, "recovered": recovered}


# ---------------------------------------------------------------- interpretability


def latent_eta2(latents: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Eta² of each latent by current token (row 0) and by position (row 1): latents
    [B,T,m] and the tokens [B,T] that produced them -> [2, m] (0 for a dead latent). The ANOVA
    builds a dense one-hot [distinct tokens, rows]: with a large vocabulary, pass a sample."""
    return eta2_by_factor(latents, tokens)


def single_token_share(latents: np.ndarray, tokens: np.ndarray, top_n: int = 20) -> np.ndarray:
    """Per latent, of its `top_n` largest activations (the active ones among them), the share
    whose token is the most common token among them: [m], NaN for a dead latent."""
    flat = latents.reshape(-1, latents.shape[-1])  # [n,m]
    flat_tokens = tokens.reshape(-1)  # [n]
    top_n = min(top_n, len(flat))
    top = np.argpartition(flat, -top_n, axis=0)[-top_n:]  # [top_n,m]
    active = np.take_along_axis(flat, top, axis=0) > 0  # [top_n,m]
    top_tokens = flat_tokens[top]  # [top_n,m]
    same = top_tokens[:, None, :] == top_tokens[None, :, :]  # [top_n,top_n,m]
    counts = (same & active[:, None, :] & active[None, :, :]).sum(axis=1)  # [top_n,m]
    with np.errstate(invalid="ignore"):
        return counts.max(axis=0) / active.sum(axis=0)  # [m]


def interpretability_summary(
    latents: np.ndarray,
    tokens: np.ndarray,
    top_n: int = 20,
    single_token_threshold: float = 0.9,
    min_eta2: float = 0.5,
) -> dict:
    """Per SAE, over its live latents (active on some row): the median eta² by token and by
    position, the share with eta² >= `min_eta2` for each, the median single-token share, and
    the share of single-token latents (share of top examples on one token >=
    `single_token_threshold`). Latents [B,T,m], tokens [B,T]."""
    live = firing_rates(latents) > 0  # [m]
    if not live.any():
        return {"live_latents": 0}
    eta2 = latent_eta2(latents[..., live], tokens)  # [2, live]
    share = single_token_share(latents[..., live], tokens, top_n)  # [live]
    return {
        "live_latents": int(live.sum()),
        "median_token_eta2": float(np.median(eta2[0])),
        "median_position_eta2": float(np.median(eta2[1])),
        "token_selective_fraction": float(np.mean(eta2[0] >= min_eta2)),
        "position_selective_fraction": float(np.mean(eta2[1] >= min_eta2)),
        "median_single_token_share": float(np.median(share)),
        "single_token_fraction": float(np.mean(share >= single_token_threshold)),
    }
