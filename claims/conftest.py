"""What is specific to this repository's claims: the figures module on the import path.

Every claim is asked twice, as the seed measured it (`seed-protocol`) and properly
(`controlled`). A claim is declared once, in its measurement module (`CLAIM`,
mechclaims.interp.claims.declaration); its test module takes that declaration. Per-seed tests
record what one seed shows (`read_seed()`: the statistic, its threshold or null and whether the
claim held on it, as declared); they assert only what cannot depend on the luck of a seed.
The cross-seed test of each reading (`read_seeds()`) turns the per-seed outcomes into a verdict
(`interp.verdicts`) and asserts, through the harness's `judge` (mechclaims.fixtures), that it
is the verdict the registry records
(claims/registry.toml): when the evidence moves, the suite goes red and a person decides.

Two opt-in studies (markers `evolution` and `sweep`, deselected unless -m names them) answer in
their own words, which their tests decide and `judge_word` holds against the registry.
"""

import pytest

from mechclaims.fixtures.judge import judge_finding
from mechclaims.fixtures.plugin import registry_entry
from mechclaims.fixtures.registry import registry_seeds


@pytest.fixture
def judge_word(request: pytest.FixtureRequest, registry, evidence, seeds):
    """`judge_word(reading, group, word, account, **record)`: a word the test decided for a
    reading that answers in its own words (evolution, sweep) and for its group of parameters,
    recorded and held against the registry (mechclaims.fixtures.judge.judge_finding)."""
    claim = request.module.CLAIM

    def decide(reading: str, group: dict, word: str, account: str, **record) -> str:
        return judge_finding(
            registry_entry(registry, claim), claim, reading, group, word, account, evidence,
            seeds, registry_seeds(registry, claim, group.get("preset")), **record,
        )  # fmt: skip

    return decide
