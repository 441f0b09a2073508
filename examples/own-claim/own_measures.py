"""The claim: its measurement, a pure function of picklable arguments in a module of its own so
that the broker can run it anywhere (in this process, or on a Dask worker that imports it), and
its declaration, which the tests, the broker's plan and the report read."""

import numpy as np

from mechclaims.interp.claims.declaration import Claim, Reading, at_least
from mechclaims.interp.inputs import balanced_sequences
from mechclaims.interp.selectivity import selectivity_test
from mechclaims.interp.sources import PANEL_SIZE
from mechclaims.interp.stats import benjamini_hochberg, gaussian_features

HOOK = "blocks.0.mlp.hook_post"


def token_selectivity(source, seed: int, thresholds: dict) -> dict:
    """Share of block 0's MLP neurons selective for the current token, and of Gaussian features."""
    model = source.model(seed)  # the random init of the preset drawn by `seed`
    rng = np.random.default_rng(seed)
    tokens = balanced_sequences(rng, thresholds["n_sequences"], PANEL_SIZE, 4)  # [n,T]
    _, cache = model.run_with_cache(source.tokens(tokens), names_filter=HOOK)
    neurons = cache[HOOK]  # [n,T,d_mlp]
    gaussian = gaussian_features(neurons[..., 0].size, neurons.shape[-1], rng)
    shares = {}
    for name, acts in (("network", neurons), ("gaussian", gaussian.reshape(neurons.shape))):
        test = selectivity_test(acts, tokens, rng, thresholds["n_permutations"])
        shares[name] = float(benjamini_hochberg(test.token_p, thresholds["fdr"]).mean())
    return {"share": shares["network"], "gaussian_share": shares["gaussian"]}


CLAIM = Claim(
    id="mlp-token-selectivity",  # its id in registry.toml
    statement="Most MLP neurons of block 0 of a random transformer are token-selective.",
    readings={
        "controlled": Reading(
            token_selectivity,
            statistic="share",  # what each seed records as its statistic
            null="gaussian_share",  # and as the null's value beside it
            holds=at_least("share", "min_share"),  # whether a seed holds
        ),
    },
    context=4,  # the positions its design needs
)
