"""The claim's measurement: a pure function of picklable arguments, in a module of its own so
that the broker can run it anywhere (in this process, or on a Dask worker that imports it)."""

import numpy as np

from mechclaims import Transformer
from mechclaims.interp.inputs import balanced_sequences
from mechclaims.interp.selectivity import selectivity_test
from mechclaims.interp.stats import benjamini_hochberg, gaussian_features

HOOK = "blocks.0.mlp.hook_post"


def token_selectivity(cfg, seed: int, thresholds: dict) -> dict:
    """Share of block 0's MLP neurons selective for the current token, and of Gaussian features."""
    model = Transformer(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    tokens = balanced_sequences(rng, thresholds["n_sequences"], cfg.vocab_size, 4)  # [n,T]
    _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    neurons = cache[HOOK]  # [n,T,d_mlp]
    gaussian = gaussian_features(neurons[..., 0].size, neurons.shape[-1], rng)
    shares = {}
    for name, acts in (("network", neurons), ("gaussian", gaussian.reshape(neurons.shape))):
        test = selectivity_test(acts, tokens, rng, thresholds["n_permutations"])
        shares[name] = float(benjamini_hochberg(test.token_p, thresholds["fdr"]).mean())
    return {"share": shares["network"], "gaussian_share": shares["gaussian"]}
