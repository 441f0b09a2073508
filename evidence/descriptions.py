"""What the project says of its claims (the `pytest_evidence_claims` hook), checked and looked up.

A test's claim id is `<claim>/<reading>`: `selectivity/controlled` is the claim `selectivity`
read the `controlled` way; an id without a `/` is a claim with one unnamed reading. The
descriptions give the claims' order, titles, statements, what each reading measures, their
thresholds with reasons and the verdicts the project expects, and the order of the readings and
of the values of the parameters that group the tests (e.g. presets). Whatever they leave out the
report does without: ids for titles, sorted order for the rest.
"""

from __future__ import annotations

from typing import Any

import pytest

from mechclaims.evidence.results import sortable
from mechclaims.evidence.values import to_jsonable

DESCRIPTIONS_KEY = pytest.StashKey[dict[str, Any]]()


def checked_descriptions(raw: Any) -> dict[str, Any]:
    """The hook's result as plain JSON with every top-level key; ValueError names what is wrong."""
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"must be a dict or None, got {type(raw).__name__}")
    try:
        plain = to_jsonable(raw or {}, what="a value")
    except TypeError as error:
        raise ValueError(str(error)) from None
    described = {"readings": [], "groups": {}, "claims": [], **plain}
    for key, kind in (("readings", list), ("groups", dict), ("claims", list)):
        if not isinstance(described[key], kind):
            raise ValueError(f"{key!r} must be a {kind.__name__}, got {described[key]!r}")
    for key in ("readings", "claims"):
        for entry in described[key]:
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise ValueError(f"each of {key!r} must be a dict with an 'id' string: {entry!r}")
    return described


def split_claim_id(claim_id: str) -> tuple[str, str]:
    """`claim/reading` -> (claim, reading); an id without `/` has the reading ''."""
    claim, _, reading = claim_id.partition("/")
    return claim, reading


def claim_entry(descriptions: dict[str, Any], claim: str) -> dict[str, Any]:
    return next((entry for entry in descriptions["claims"] if entry["id"] == claim), {})


def reading_entry(descriptions: dict[str, Any], reading: str) -> dict[str, Any]:
    return next((entry for entry in descriptions["readings"] if entry["id"] == reading), {})


def claim_title(descriptions: dict[str, Any], claim: str) -> str:
    return claim_entry(descriptions, claim).get("title") or claim


def reading_name(descriptions: dict[str, Any], reading: str) -> str:
    return reading_entry(descriptions, reading).get("name") or reading


def expected_verdict(
    descriptions: dict[str, Any], claim: str, reading: str, group: dict[str, Any]
) -> dict[str, Any]:
    """The verdict (and its why) the project expects of a claim's reading for a group, or {}."""
    expected = claim_entry(descriptions, claim).get("expected", [])
    wanted = (reading, group)
    return next((entry for entry in expected if (entry["reading"], entry["group"]) == wanted), {})


def claim_rank(descriptions: dict[str, Any], claim: str) -> tuple:
    """Described claims in their order, then the others by id."""
    ids = [entry["id"] for entry in descriptions["claims"]]
    return (ids.index(claim), "") if claim in ids else (len(ids), claim)


def reading_rank(descriptions: dict[str, Any], reading: str) -> tuple:
    ids = [entry["id"] for entry in descriptions["readings"]]
    return (ids.index(reading), "") if reading in ids else (len(ids), reading)


def group_rank(descriptions: dict[str, Any], group: dict[str, Any]) -> tuple:
    """Groups by each parameter's value in the described order, the others after them, sorted."""
    rank = []
    for name in sorted(group):
        order = descriptions["groups"].get(name, [])
        value = group[name]
        rank.append((order.index(value), ()) if value in order else (len(order), sortable(value)))
    return tuple(rank)
