"""The evidence pytest plugin: tests record what they measured; the run writes it as a report.

It knows nothing of the project's subject: it would serve any project's claims.

Recording. A test ties itself to a claim with a marker and records through the `evidence`
fixture (see `recorder` for the rules on names and values):

    @pytest.mark.claim("token-selectivity", statement="Neurons are selective for tokens.")
    def test_selectivity(evidence, preset, seed):
        evidence.record(statistic=s, threshold=0.5, null_value=s0, p_value=p, effect=s - s0)
        evidence.table("per neuron", dataframe)
        evidence.figure("histogram", histogram, values, threshold=0.5)  # or a Figure
        assert s > 0.5

A test takes part in the report if it has the marker or uses the fixture; one that uses the
fixture without a marker is filed under the claim id "(unclaimed)" ("Tests without a claim").
Its parameters (`item.callspec.params`: JSON scalars as they are, other objects by argname and
index, e.g. `config0`) become columns. Its outcome and one-line message (the failure's first
line, the skip or xfail reason) are recorded, and its verdict: the `verdict` it recorded, else
the one its outcome gives (the reasons are in `outcomes`):

    passed, xpassed (also a strict xpass)  -> supported
    failed, xfailed (a refuted claim marked xfail(strict=True))  -> refuted
    skipped -> inconclusive;   error (in setup or teardown) -> error

A claim's summary pools its tests over `seed` per test function and other parameters (e.g.
per preset): pass rate (share of decided tests that support it) with a 95% Wilson interval,
and the median and 2.5-97.5% range of each numeric value (`results`). A test marked
`decides=True` (typically one that weighs all seeds at once) gives the claim's verdict for its
parameters. A claim id `<claim>/<reading>` names a claim and one way of reading it; the report
opens with the verdict matrix (`matrix`): a row per claim, a column per reading and group of
parameters, each cell a deciding test's verdict, on how many seeds it held and why.

What the project says of its claims beyond their tests (order, titles, statements, what each
reading measures, thresholds and their reasons, the verdicts it expects) comes from the hook
`pytest_evidence_claims(config)` (`hooks`); without it the report uses the claim ids.
Every figure is titled with its claim, reading and parameters.

Figures. A figure drawn by a function of plain data is kept in pytest's cache directory and
reused while its title, data and drawing code are unchanged (`figure_cache`): a rerun of tests
whose results did not change draws nothing.

Transport. The fixture's content travels as plain JSON on an attribute of the test report,
which pytest serializes with the report, so it crosses pytest-xdist like pytest-json-report's
data. Figures are saved as PNGs by the process that drew them. Every other file is written
once, by the controller, at the end of the session (`collector`, `report`).

Options (`settings`): --evidence-dir, --no-evidence, --evidence-compare; ini keys
`evidence_dir` and `evidence_compare`. A directory that cannot be created or written is a usage
error before any test runs; a report that cannot be written at the end (a full disk) is
written to a new temporary directory instead, whose path is printed. A run in which no test
took part writes nothing.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import pytest

from mechclaims.evidence import hooks
from mechclaims.evidence.collector import PAYLOAD_ATTRIBUTE, ReportCollector
from mechclaims.evidence.descriptions import (
    DESCRIPTIONS_KEY,
    checked_descriptions,
    claim_title,
    reading_name,
    split_claim_id,
)
from mechclaims.evidence.figure_cache import COUNTS_KEY, FIGURE_CACHE_KEY, figure_cache
from mechclaims.evidence.matrix import group_text
from mechclaims.evidence.recorder import Evidence
from mechclaims.evidence.results import UNCLAIMED, function_of
from mechclaims.evidence.settings import Settings, add_options, read_settings
from mechclaims.evidence.values import is_scalar, to_jsonable

CLAIM_MARKER = "claim"
CLAIM_MARKER_HELP = (
    f'{CLAIM_MARKER}(id, statement="", decides=False): the test is evidence for the claim `id`; '
    "its outcome and recorded values go into the evidence report; with decides=True its "
    "verdict is the claim's verdict for its parameters (other than seed)"
)
SETTINGS_KEY = pytest.StashKey[Settings]()
CLAIM_KEY = pytest.StashKey[tuple[str, str, bool]]()
MARKER_ERROR_KEY = pytest.StashKey[str]()
RECORDER_KEY = pytest.StashKey[Evidence]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", CLAIM_MARKER_HELP)
    is_xdist_worker = hasattr(config, "workerinput")
    # Only the controller tries the directory: it runs before the workers exist.
    settings = read_settings(config, try_directory=not is_xdist_worker)
    config.stash[SETTINGS_KEY] = settings
    if settings.enabled and not is_xdist_worker:
        config.pluginmanager.register(ReportCollector(settings), "evidence-collector")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Ask the project for its claims' descriptions, once every plugin is configured."""
    config = session.config
    try:
        descriptions = checked_descriptions(config.hook.pytest_evidence_claims(config=config))
    except ValueError as error:
        raise pytest.UsageError(f"pytest_evidence_claims returned a bad result: {error}") from None
    config.stash[DESCRIPTIONS_KEY] = descriptions


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A pytest-xdist worker sends the controller its figures' counts (for run.json)."""
    config = session.config
    if hasattr(config, "workeroutput") and FIGURE_CACHE_KEY in config.stash:
        config.workeroutput[COUNTS_KEY] = dict(config.stash[FIGURE_CACHE_KEY].counts)


def pytest_itemcollected(item: pytest.Item) -> None:
    marker = item.get_closest_marker(CLAIM_MARKER)
    if marker is None:
        return
    try:
        item.stash[CLAIM_KEY] = claim_of(marker)
    except ValueError as error:
        # Raised when the test runs: an error in collection would be lost under pytest-xdist.
        item.stash[MARKER_ERROR_KEY] = str(error)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if MARKER_ERROR_KEY in item.stash:
        pytest.fail(item.stash[MARKER_ERROR_KEY], pytrace=False)


def claim_of(marker: pytest.Mark) -> tuple[str, str, bool]:
    """(claim id, statement, decides) of a claim marker; ValueError for a malformed one."""
    claim_id = marker.args[0] if len(marker.args) == 1 else None
    statement = marker.kwargs.get("statement", "")
    decides = marker.kwargs.get("decides", False)
    if (
        not isinstance(claim_id, str)
        or not claim_id.strip()
        or set(marker.kwargs) - {"statement", "decides"}
        or not isinstance(statement, str)
        or not isinstance(decides, bool)
    ):
        raise ValueError(
            f'use @pytest.mark.{CLAIM_MARKER}("claim-id", statement="...", decides=False), '
            f"got args {marker.args!r} and keywords {marker.kwargs!r}"
        )
    return claim_id, statement, decides


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Evidence:
    """Record named values, tables and figures of this test for the evidence report."""
    settings = request.config.stash[SETTINGS_KEY]
    params = params_of(request.node)
    heading = figure_heading(request.node, params, request.config.stash[DESCRIPTIONS_KEY])
    recorder = Evidence(request.node.nodeid, params, settings.directory, heading,
                        figure_cache(request.config))  # fmt: skip
    request.node.stash[RECORDER_KEY] = recorder
    return recorder


def figure_heading(item: pytest.Item, params: dict[str, Any], descriptions: dict[str, Any]) -> str:
    """What every figure of the test is titled with: its claim (title), then its reading and
    parameters, e.g. `3. Selective units` / `controlled · preset tiny-mha, seed 3`."""
    claim, reading = split_claim_id(item.stash.get(CLAIM_KEY, (UNCLAIMED, "", False))[0])
    first = function_of(item.nodeid) if claim == UNCLAIMED else claim_title(descriptions, claim)
    second = (reading_name(descriptions, reading), group_text(params))
    return "\n".join(filter(None, (first, " · ".join(filter(None, second)))))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo
) -> Generator[None, Any, None]:
    outcome = yield
    if item.config.stash[SETTINGS_KEY].enabled and takes_part(item):
        setattr(outcome.get_result(), PAYLOAD_ATTRIBUTE, payload_of(item))


def takes_part(item: pytest.Item) -> bool:
    has_marker = item.get_closest_marker(CLAIM_MARKER) is not None
    return has_marker or "evidence" in getattr(item, "fixturenames", ())


def payload_of(item: pytest.Item) -> dict[str, Any]:
    """What the report of each phase carries: claim, parameters and what was recorded so far."""
    claim, statement, decides = item.stash.get(CLAIM_KEY, (UNCLAIMED, "", False))
    recorder = item.stash.get(RECORDER_KEY, None) or Evidence(item.nodeid, {}, None)
    return {
        "claim": claim,
        "statement": statement,
        "decides": decides,
        "params": params_of(item),
        **recorder.payload(),
    }


def params_of(item: pytest.Item) -> dict[str, Any]:
    """The test's parameters: JSON scalars as they are, other objects as argname + index."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return {}
    params = {}
    for name, value in callspec.params.items():
        plain = value.item() if isinstance(value, np.generic) else value
        params[name] = to_jsonable(plain) if is_scalar(plain) else f"{name}{callspec.indices[name]}"
    return params
