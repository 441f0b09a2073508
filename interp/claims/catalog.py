"""Every claim of the harness, from its declaration (mechclaims.interp.claims.declaration), in
the registry's order: the one table that the claims' tests, the broker's plan, the checkpoint
judge, the studies and the controls read."""

from __future__ import annotations

from mechclaims.interp.claims import (
    circuits,
    feature_detectors,
    persistence,
    selectivity,
    specific_hypothesis,
    structured_inputs,
)
from mechclaims.interp.claims.declaration import Claim

CLAIMS: dict[str, Claim] = {
    module.CLAIM.id: module.CLAIM
    for module in (feature_detectors, specific_hypothesis, selectivity, circuits,
                   structured_inputs, persistence)
}  # fmt: skip
# The claims the studies follow through training and across architectures: those whose
# controlled reading is decided against a null the studies can measure on any model.
STUDIED = {claim_id: claim for claim_id, claim in CLAIMS.items() if claim.studied_null}
