"""What is specific to this repository's claims: the figures module on the import path.

Every claim is asked twice, as the seed measured it (`seed-protocol`) and properly
(`controlled`). Per-seed tests record what one seed shows, including whether the claim held on
it; they assert only what cannot depend on the luck of a seed. The cross-seed test of each
reading turns the per-seed outcomes into a verdict (`interp.verdicts`) and asserts, through the
harness's `judge` (mechclaims.fixtures), that it is the verdict the registry records
(claims/registry.toml): when the evidence moves, the suite goes red and a person decides.
"""
