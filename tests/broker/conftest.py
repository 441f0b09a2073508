"""Fixtures of the broker's tests: a fresh toy claim project, and its serial report."""

from __future__ import annotations

from pathlib import Path

import pytest
from toy_claim_project import N_MEASUREMENTS, calls, run_pytest, write_toy_project


@pytest.fixture
def toy_project(tmp_path: Path) -> Path:
    return write_toy_project(tmp_path / "toy")


@pytest.fixture(scope="session")
def serial_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The report of the toy project measured in the pytest process, each measurement once."""
    project = write_toy_project(tmp_path_factory.mktemp("serial") / "toy")
    run = run_pytest(project)
    assert run.returncode == 0, run.output
    assert len(calls(project)) == N_MEASUREMENTS
    return run.report()
