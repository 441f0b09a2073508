"""One claim of your own: per-seed tests that record, and one cross-seed test that decides."""

import pytest
from own_measures import CLAIM


@pytest.mark.claim(f"{CLAIM.id}/controlled", statement=CLAIM.statement)
def test_each_seed(read_seed):
    result = read_seed()  # measured once (memo) and recorded as the declaration says
    assert 0.0 <= result["share"] <= 1.0
    assert 0.0 <= result["gaussian_share"] <= 1.0


@pytest.mark.claim(f"{CLAIM.id}/controlled", statement=CLAIM.statement, decides=True)
def test_across_seeds(judge, read_seeds, thresholds):
    results = read_seeds()
    judge(CLAIM.id, "controlled", CLAIM.readings["controlled"].seeds_hold(results, thresholds))
