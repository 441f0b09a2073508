"""Wall time of the claims run three ways: serially, under pytest-xdist, on a local Dask cluster.

Run: `pip install -e ".[test,dask]" && python -m bench.claims_wall_time [--rounds N] [pytest
options]` (not part of any test run; pytest options, e.g. `--seeds 0:5`, go to every run).

    serial        pytest claims/                      every measurement in the pytest process
    xdist         pytest claims/ -n 2                 each xdist worker measures what its tests
                                                      need: cross-seed tests measure again
    dask          pytest claims/ --dask-workers 2     each measurement once, on two workers

The three runs take turns, `--rounds` times (default 1), each round in another order, so that a
change in the machine's load does not fall on one of them only. Each run prints its wall time
and the CPU time of every process it started (the claims' verdicts may fail a run: its time
still counts); at the end, each way's best wall time, and whether its reports are
byte-identical to the serial run's (run.json aside). On a 2-core machine, measure when it is
idle: a busy machine's other processes take the cores that the parallel runs would use.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = {
    "serial": [],
    "xdist -n 2": ["-n", "2"],
    "dask --dask-workers 2": ["--dask-workers", "2"],
}


def run_claims(options: list[str], report: Path) -> tuple[float, float, int]:
    """Wall time, CPU time (of pytest and every process it started) and exit code of
    `pytest claims/` with `options`, reporting to `report`."""
    command = [sys.executable, "-m", "pytest", "claims", "-q", "-p", "no:cacheprovider",
               "--evidence-dir", str(report), *options]  # fmt: skip
    cpu_before = children_cpu_s()
    started = time.perf_counter()
    finished = subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started, children_cpu_s() - cpu_before, finished.returncode


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report_files(report: Path) -> dict[str, bytes]:
    """Every file of a report but run.json, by its path in the report."""
    return {str(path.relative_to(report)): path.read_bytes()
            for path in sorted(report.rglob("*"))
            if path.is_file() and path.name != "run.json"}  # fmt: skip


def main(rounds: int, pytest_options: list[str]) -> None:
    names = list(RUNS)
    wall: dict[str, list[float]] = {name: [] for name in names}
    same: dict[str, bool] = {name: True for name in names}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(rounds):
            order = names[round_index % 3 :] + names[: round_index % 3]
            reports = {name: Path(scratch) / f"{round_index}-{index}" for index, name in
                       enumerate(order)}  # fmt: skip
            for name in order:
                seconds, cpu, code = run_claims([*RUNS[name], *pytest_options], reports[name])
                wall[name].append(seconds)
                print(f"round {round_index + 1}  {name:<22} {seconds:7.1f} s wall "
                      f"{cpu:7.1f} s CPU  (exit code {code})", flush=True)  # fmt: skip
            serial = report_files(reports["serial"])
            for name in names:
                same[name] = same[name] and report_files(reports[name]) == serial
    for name in names:
        identity = "byte-identical to serial" if same[name] else "DIFFERENT from serial"
        print(f"best {name:<22} {min(wall[name]):7.1f} s   report {identity}")
    ratio = min(wall["dask --dask-workers 2"]) / min(wall["xdist -n 2"])
    print(f"best dask / best xdist: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="how many times to run each way")
    arguments, rest = parser.parse_known_args()
    main(arguments.rounds, rest)
