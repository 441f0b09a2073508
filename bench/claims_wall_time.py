"""Wall time of the claims run three ways: serially, under pytest-xdist, on a local Dask cluster.

Run: `pip install -e ".[test,dask]" && python -m bench.claims_wall_time [pytest options]`
(not part of any test run; extra options, e.g. `--seeds 0:5`, go to all three runs).

    serial        pytest claims/                      every measurement in the pytest process
    xdist         pytest claims/ -n 2                 each xdist worker measures what its tests
                                                      need: cross-seed tests measure again
    dask          pytest claims/ --dask-workers 2     each measurement once, on two workers

Each run writes its evidence report to a temporary folder. The script prints the three wall
times, with the CPU time of every process each run started (the claims' verdicts may fail a
run: its time still counts), and whether each report is byte-identical to the serial one,
run.json aside. On a 2-core machine, measure when it is idle.
"""

from __future__ import annotations

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


def main(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        reports = {name: Path(scratch) / str(index) for index, name in enumerate(RUNS)}
        times = {}
        for name, options in RUNS.items():
            times[name], cpu, code = run_claims([*options, *extra], reports[name])
            print(f"{name:<24} {times[name]:7.1f} s wall {cpu:7.1f} s CPU   (exit code {code})",
                  flush=True)  # fmt: skip
        serial = report_files(reports["serial"])
        for name in list(RUNS)[1:]:
            same = report_files(reports[name]) == serial
            print(f"{name}: report {'byte-identical to' if same else 'DIFFERS from'} serial")
        print(f"dask / xdist: {times['dask --dask-workers 2'] / times['xdist -n 2']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
