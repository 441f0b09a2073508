"""--dask-workers and --dask-scheduler (and their ini keys): each choice that cannot be honoured
is a one-line usage error before any test runs; and Dask stays optional."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from toy_claim_project import calls, toy_env, write_toy_project

needs_dask = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="the Dask broker needs the extra mechclaims[dask]",
)
WITHOUT_DASK = """
import sys

sys.modules["dask"] = sys.modules["distributed"] = None  # as if Dask were not installed
import pytest

sys.exit(pytest.main(["-p", "no:cacheprovider", *sys.argv[1:]]))
"""


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--dask-workers", "2", "--dask-scheduler", "tcp://127.0.0.1:8786"], "",
         "ERROR: --dask-workers and --dask-scheduler: choose one cluster, not both"),
        ([], 'dask_workers = "2"\ndask_scheduler = "tcp://127.0.0.1:8786"',
         "ERROR: ini option dask_workers and ini option dask_scheduler: choose one cluster, not "
         "both"),
        (["--dask-workers", "two"], "",
         "ERROR: --dask-workers: expected a number of workers >= 0, got 'two'"),
        ([], 'dask_workers = "-1"',
         "ERROR: ini option dask_workers: expected a number of workers >= 0, got '-1'"),
        (["-n", "2", "--dask-workers", "2"], "",
         "ERROR: -n (pytest-xdist) and --dask-workers: xdist splits the tests, the Dask cluster "
         "measures for all of them; use one (--dask-workers 0: no cluster)"),
    ],
)  # fmt: skip
def test_a_choice_that_cannot_be_honoured_is_a_usage_error(pytester, args, ini, message):
    # These are refused before Dask is imported: an inline run must not import it (pytester's
    # restored sys.modules would leave importlib.metadata finding no distributions).
    pyproject = write_toy_project(pytester.path) / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + ini + "\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.outlines
    assert [line for line in result.errlines if line.strip()] == [message]


@needs_dask
def test_a_scheduler_that_cannot_be_reached_is_a_usage_error_within_the_connect_timeout(
    toy_project,
):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    unreachable = run_in_subprocess(toy_project, "--dask-scheduler", address)
    assert unreachable.returncode == pytest.ExitCode.USAGE_ERROR, unreachable.stdout
    assert unreachable.stderr.strip() == (
        f"ERROR: --dask-scheduler {address}: Timed out trying to connect to {address} after 2 s"
    )
    assert time.monotonic() - started < 60
    malformed = run_in_subprocess(toy_project, "--dask-scheduler", "nonsense::1")
    assert malformed.returncode == pytest.ExitCode.USAGE_ERROR, malformed.stdout
    assert malformed.stderr.strip() == (
        "ERROR: --dask-scheduler nonsense::1: invalid address 'nonsense::1'; maybe: ipv6 needs "
        "brackets like [::1]"
    )
    assert calls(toy_project) == []


def run_in_subprocess(project: Path, *args: str) -> subprocess.CompletedProcess:
    """The toy project's run with `args`, Dask's connect timeout set to 2 s."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=toy_env(project, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_line_can_measure_in_this_process_when_the_ini_chose_a_cluster(
    pytester, monkeypatch
):
    monkeypatch.setenv("TOY_CALLS", str(pytester.path / "calls"))
    pyproject = write_toy_project(pytester.path) / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'dask_scheduler = "tcp://127.0.0.1:1"\n')
    result = pytester.runpytest("--dask-workers", "0")
    result.assert_outcomes(passed=10)
    assert "dask:" not in result.stdout.str()
    assert len(calls(pytester.path)) == 8


def test_without_dask_a_cluster_is_a_usage_error_and_the_rest_runs(toy_project):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", WITHOUT_DASK, *args], cwd=toy_project,
                              env=toy_env(toy_project), capture_output=True, text=True,
                              timeout=120)  # fmt: skip

    cluster = run("--dask-workers", "2")
    assert cluster.returncode == pytest.ExitCode.USAGE_ERROR, cluster.stdout
    assert cluster.stderr.strip() == (
        "ERROR: --dask-workers needs Dask (import of dask halted; None in sys.modules): "
        "pip install 'mechclaims[dask]'"
    )
    in_process = run()
    assert in_process.returncode == pytest.ExitCode.OK, in_process.stdout + in_process.stderr
    assert len(calls(toy_project)) == 8
