"""One claim of your own: per-seed tests that record, and one cross-seed test that decides."""

import pytest
from own_measures import token_selectivity

CLAIM = "mlp-token-selectivity"  # its id in registry.toml
STATEMENT = "Most MLP neurons of block 0 of a random transformer are token-selective."


@pytest.mark.claim(f"{CLAIM}/controlled", statement=STATEMENT)
def test_each_seed(evidence, memo, model_config, seed, thresholds):
    result = memo(token_selectivity, model_config, seed, thresholds)
    holds = result["share"] >= thresholds["min_share"]
    evidence.record(
        statistic=result["share"],
        null_value=result["gaussian_share"],
        verdict="supported" if holds else "refuted",
    )
    assert 0.0 <= result["share"] <= 1.0
    assert 0.0 <= result["gaussian_share"] <= 1.0


@pytest.mark.claim(f"{CLAIM}/controlled", statement=STATEMENT, decides=True)
def test_across_seeds(evidence, judge, memo, model_config, seeds, thresholds):
    shares = [memo(token_selectivity, model_config, seed, thresholds)["share"] for seed in seeds]
    judge(CLAIM, "controlled", [share >= thresholds["min_share"] for share in shares])
