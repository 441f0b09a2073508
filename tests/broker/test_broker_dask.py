"""The broker on real Dask clusters: a LocalCluster the run starts (--dask-workers 2), and a
scheduler with workers started on their own (--dask-scheduler). Each test runs the toy claim
project (conftest) in a pytest process of its own and compares its report, byte for byte, with
the report of the same project measured in the pytest process."""

from __future__ import annotations

import importlib.util
import os
import pty
import re
import select
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from toy_claim_project import (
    N_MEASUREMENTS,
    PYPROJECT,
    RUN_TIMEOUT_S,
    calls,
    dask_cluster,
    kill_session,
    pytest_command,
    results,
    run_pytest,
    start,
    stopped_half_way,
    stored,
    toy_env,
    wait_until,
    write_toy_project,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="the Dask broker needs the extra mechclaims[dask]",
)

EACH_ONCE = sorted((seed, d_model) for seed in range(4) for d_model in (16, 64))
FAILED = re.compile(r"^FAILED (\S+)", re.M)


def measured(project: Path) -> list[tuple[int, int]]:
    """(seed, d_model) of every call of the toy measurement, sorted."""
    return sorted((seed, d_model) for seed, d_model, _ in calls(project))


def test_a_local_and_a_running_cluster_measure_each_once_and_report_as_the_serial_run(
    serial_report, toy_project, tmp_path
):
    local = run_pytest(toy_project, "--dask-workers", "2")
    assert local.returncode == 0, local.output
    assert local.report() == serial_report
    assert measured(toy_project) == EACH_ONCE  # per-seed and cross-seed tests share them
    assert local.pid not in {pid for *_, pid in calls(toy_project)}  # measured on the workers
    assert "dask: measuring on a LocalCluster of 2 worker processes; dashboard http" in local.output
    assert f"dask: {N_MEASUREMENTS} measurements submitted" in local.output
    assert "[dask:" not in local.output  # no progress line: the output is not a terminal

    project = write_toy_project(tmp_path / "elsewhere")
    with dask_cluster(project) as cluster:
        (project / "pyproject.toml").write_text(
            f'{PYPROJECT}dask_scheduler = "{cluster.address}"\n'
        )
        running = run_pytest(project)
        # Both workers were set up as the root conftest sets up pytest, and are still up.
        assert list(cluster.ask_workers(set_up_as_the_root_conftest()).values()) == [True, True]
    assert running.returncode == 0, running.output
    assert running.report() == serial_report
    assert measured(project) == EACH_ONCE
    assert (
        f"dask: measuring on the cluster at {cluster.address} (2 workers now)\n" in running.output
    )


def test_a_worker_killed_in_a_measurement_has_it_rerun_and_the_report_is_unchanged(
    serial_report, toy_project
):
    run = run_pytest(toy_project, "--dask-workers", "2", TOY_KILL_SEED="2")
    assert run.returncode == 0, run.output
    assert (toy_project / "calls" / "killed").exists()  # a worker died measuring seed 2
    assert len(calls(toy_project)) > N_MEASUREMENTS  # and what it held was measured again
    assert sorted(set(measured(toy_project))) == EACH_ONCE
    assert run.report() == serial_report


def test_a_run_on_a_cluster_killed_half_way_resumes_where_it_stopped(serial_report, toy_project):
    """Each result is stored by the pytest process as soon as it is done, asked for or not:
    after a SIGKILL, the next run measures what was not stored, each once, and nothing else."""
    cache = toy_project / "cache"
    stopped_half_way(toy_project, cache, signal.SIGKILL, 2, "--dask-workers", "2")
    killed = stored(cache)
    assert 2 <= len(killed) < N_MEASUREMENTS
    before = Counter(measured(toy_project))
    run = run_pytest(toy_project, f"--measure-cache={cache}", "--dask-workers", "2")
    assert run.returncode == 0, run.output
    assert sorted((Counter(measured(toy_project)) - before).elements()) == sorted(
        set(EACH_ONCE) - killed
    )
    assert run.report() == serial_report


def test_a_measurement_that_raises_fails_the_tests_that_need_it_with_the_workers_traceback(
    toy_project,
):
    run = run_pytest(toy_project, "--dask-workers", "2", "-rf", TOY_FAIL_SEED="1")
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.output
    assert set(FAILED.findall(run.output)) == {
        "test_toy_claim.py::test_each_seed[tiny-mha-seed1]",
        "test_toy_claim.py::test_each_seed[gpt2-style-seed1]",
        "test_toy_claim.py::test_across_seeds[tiny-mha]",
        "test_toy_claim.py::test_across_seeds[gpt2-style]",
    }
    # The worker's frames, down to the line that raised, in each failure.
    assert len(re.findall(r"dask_cluster\.py:\d+: in measure_on_worker", run.output)) == 4
    assert run.output.count('>   raise ValueError(f"seed {seed} cannot be measured")') == 4
    raised = r"E   ValueError: seed 1 cannot be measured\s+toy_measures\.py:\d+: ValueError"
    assert len(re.findall(raised, run.output)) == 4
    assert measured(toy_project) == EACH_ONCE  # the cross-seed test did not measure it again


def test_a_worker_with_other_software_at_the_start_is_a_usage_error(toy_project, tmp_path):
    with dask_cluster(toy_project, n_workers=0) as cluster:
        cluster.add_workers(1, pythonpath=other_mechclaims_version(tmp_path))
        run = run_pytest(toy_project, "--dask-scheduler", cluster.address)
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.output
    assert re.search(
        rf"^ERROR: --dask-scheduler {cluster.address}: Dask worker tcp://127\.0\.0\.1:\d+ runs "
        r"mechclaims 9\.9\.9 \(client: \d\S*\): install the client's versions on every worker, "
        r"or the numbers would differ$",
        run.output,
        re.M,
    ), run.output
    assert calls(toy_project) == []


def test_a_worker_with_other_software_that_joins_later_fails_its_tasks_clearly(
    toy_project, tmp_path
):
    with dask_cluster(toy_project, n_workers=1, TOY_SLEEP_S="2") as cluster:
        process = start(pytest_command("--dask-scheduler", cluster.address, "-rf"), toy_project,
                        toy_env(toy_project), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True)  # fmt: skip
        try:
            wait_until(lambda: calls(toy_project))  # measuring, on the one worker
            cluster.add_workers(1, pythonpath=other_mechclaims_version(tmp_path))
            # Else the first worker might finish every task before the new one gets any.
            kill_session(cluster.processes[1])  # [scheduler, first worker, new worker]
            output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            kill_session(process)
    assert process.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert re.search(r"SoftwareMismatch: Dask worker \S+ runs mechclaims 9\.9\.9", output), output
    assert len({pid for *_, pid in calls(toy_project)}) == 1  # nothing measured on the other


def test_ctrl_c_closes_the_local_cluster_and_marks_the_report_incomplete(toy_project):
    process, output = interrupted(toy_project, "--dask-workers", "2")
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    workers = {pid for *_, pid in calls(toy_project)}
    wait_until(lambda: not any(is_running(pid) for pid in workers), timeout=30)
    assert results(toy_project)["complete"] is False


def test_ctrl_c_cancels_the_measurements_on_a_running_cluster(toy_project):
    with dask_cluster(toy_project, TOY_SLEEP_S="2") as cluster:
        process, output = interrupted(toy_project, "--dask-scheduler", cluster.address)
        wait_until(lambda: cluster.n_tasks() == 0, timeout=30)
        assert cluster.n_workers() == 2
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    assert len(calls(toy_project)) < N_MEASUREMENTS
    assert results(toy_project)["complete"] is False


def test_a_terminal_shows_measurements_done_running_and_waiting_at_the_end_of_the_line(
    toy_project,
):
    output = run_in_terminal(toy_project, "--dask-workers", "2", TOY_SLEEP_S="1")
    assert re.search(r"\x1b\[K \[dask: \d+ done, \d+ running, \d+ waiting\]", output), output
    screen = terminal_screen(output)
    assert "[dask:" not in screen  # erased each time, pytest's line carried on
    assert re.search(r"^test_toy_claim\.py \.{10} +\[100%\]$", screen, re.M), screen


def set_up_as_the_root_conftest():
    """A question for a worker (a function defined here is sent by value, not by name): has it
    mechclaims' plugin, and one thread in each BLAS library it has loaded?"""

    def answer(dask_worker) -> bool:
        from threadpoolctl import threadpool_info

        blas = [library for library in threadpool_info() if library["user_api"] == "blas"]
        return "mechclaims-measurements" in dask_worker.plugins and all(
            library["num_threads"] == 1 for library in blas
        )

    return answer


def other_mechclaims_version(directory: Path) -> str:
    """A folder that, first on a worker's PYTHONPATH, makes it report mechclaims 9.9.9."""
    metadata = directory / "other" / "mechclaims-9.9.9.dist-info" / "METADATA"
    metadata.parent.mkdir(parents=True)
    metadata.write_text("Metadata-Version: 2.1\nName: mechclaims\nVersion: 9.9.9\n")
    return str(directory / "other")


def interrupted(project: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """A run of slow measurements, sent SIGINT (Ctrl-C) once it measures; and its output."""
    process = start(pytest_command(*args), project, toy_env(project, TOY_SLEEP_S="2"),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_until(lambda: calls(project))
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        kill_session(process)
    return process, output


def is_running(pid: int) -> bool:
    import psutil  # a dependency of distributed

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_in_terminal(project: Path, *args: str, **switches: str) -> str:
    """What a pytest run writes to its stdout, a terminal (a pseudo-terminal). (Its stderr, where
    Dask logs, e.g. that its event loop was slow, is not shown.)"""
    controller, terminal = pty.openpty()
    process = start(pytest_command(*args), project, toy_env(project, **switches),
                    stdin=terminal, stdout=terminal, stderr=subprocess.DEVNULL)  # fmt: skip
    os.close(terminal)
    chunks = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if select.select([controller], [], [], 1)[0]:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal is closed: the run has ended
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        process.wait(timeout=30)
    finally:
        os.close(controller)
        kill_session(process)
    return b"".join(chunks).decode()


def terminal_screen(output: str) -> str:
    """The text a terminal shows for `output`: carriage return, backspace and erase-to-end-of-
    line applied, colours dropped."""
    lines, line, column = [], "", 0
    for token in re.findall(r"\x1b\[[0-9;]*[A-Za-z]|.|\n", output.replace("\r\n", "\n")):
        if token == "\n":
            lines.append(line)
            line, column = "", 0
        elif token == "\r":
            column = 0
        elif token == "\b":
            column = max(column - 1, 0)
        elif token == "\x1b[K":
            line = line[:column]
        elif not token.startswith("\x1b"):
            line = line[:column].ljust(column) + token + line[column + 1 :]
            column += 1
    return "\n".join([*lines, line])
