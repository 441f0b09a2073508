"""Wall time of the claims run three ways: serially, under pytest-xdist, on a local Dask cluster;
and with the measurement cache: cold, warm, and after one threshold changed.

Run: `pip install -e ".[test,dask]" && python -m bench.claims_wall_time [--rounds N] [--cache]
[pytest options]` (not part of any test run; pytest options, e.g. `--seeds 0:5`, go to every
run).

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

With `--cache`, three serial runs share a new pytest cache directory (measurements and figures):

    cold        nothing cached: everything measured, drawn and stored; the cache's own time (its
                reads, writes and keys, timed inside the run by `CACHE_TIMER`) beside the wall
    warm        nothing changed: every measurement and figure read
    threshold   a registry copy with one threshold changed (--threshold CLAIM.NAME=VALUE,
                default selectivity.seed_std=0.55): only that claim is measured and drawn again;
                its share of the cold run (its module's test durations) is what it may cost

Each run prints its wall time and run.json's counts; at the end, whether the warm report is
byte-identical to the cold one (run.json aside). The code must not change meanwhile (run it on a
copy of the repository if others edit it): a change is a miss, and is measured again.
"""

from __future__ import annotations

import argparse
import json
import os
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


REGISTRY = Path("claims") / "registry.toml"
DEFAULT_THRESHOLD = "selectivity.seed_std=0.55"
# A pytest plugin (`-p cache_timer`) that times the caches' own work in the run: keys, reads,
# writes; it writes the seconds to the file CACHE_TIMER names.
CACHE_TIMER = """
import atexit, os, time
from mechclaims.evidence import figure_cache
from mechclaims.fixtures import measure_cache

spent = [0.0]


def timed(function):
    def run(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started
    return run


for owner, names in ((measure_cache.MeasurementCache, ("holds", "load", "save")),
                     (figure_cache.FigureCache, ("read", "write")),
                     (figure_cache, ("figure_identity",))):
    for name in names:
        setattr(owner, name, timed(getattr(owner, name)))
atexit.register(lambda: open(os.environ["CACHE_TIMER"], "w").write(str(spent[0])))
"""


def run_claims(options: list[str], report: Path, cache: bool = False,
               env: dict[str, str] | None = None) -> tuple[float, float, int]:  # fmt: skip
    """Wall time, CPU time (of pytest and every process it started) and exit code of
    `pytest claims/` with `options`, reporting to `report`; without pytest's cache directory
    (and so without the caches) unless `cache`."""
    command = [sys.executable, "-m", "pytest", "claims", "-q",
               *([] if cache else ["-p", "no:cacheprovider"]), "--evidence-dir", str(report),
               *options]  # fmt: skip
    cpu_before = children_cpu_s()
    started = time.perf_counter()
    finished = subprocess.run(command, stdout=subprocess.DEVNULL, check=False, env=env)
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


def cached_runs(threshold: str, pytest_options: list[str]) -> None:
    """Cold, warm and after one threshold changed, serially, with a new cache (the docstring)."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "cache_timer.py").write_text(CACHE_TIMER)
        timer = scratch / "cache_seconds"
        path = os.pathsep.join(filter(None, [str(scratch), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "CACHE_TIMER": str(timer), "PYTHONPATH": path}
        options = ["-p", "cache_timer", "-o", f"cache_dir={scratch / 'cache'}", *pytest_options]
        changed = changed_registry(scratch / "registry.toml", threshold)
        runs = {"cold": options, "warm": options,
                "threshold": [*options, f"--claims-registry={changed}"]}  # fmt: skip
        wall = {}
        for name, run_options in runs.items():
            seconds, cpu, code = run_claims(run_options, scratch / name, cache=True, env=env)
            wall[name] = seconds
            run = json.loads((scratch / name / "run.json").read_text())
            own = float(timer.read_text())
            print(f"{name:<10} {seconds:7.1f} s wall {cpu:7.1f} s CPU  (exit code {code}); "
                  f"measurements {run['measurements']['from_cache']} from the cache, "
                  f"{run['measurements']['computed']} computed; figures "
                  f"{run['figures']['reused']} reused, {run['figures']['drawn']} drawn; the "
                  f"caches' own time {own:.2f} s ({own / seconds:.1%})", flush=True)  # fmt: skip
        identity = "byte-identical to" if report_files(scratch / "warm") == report_files(
            scratch / "cold") else "DIFFERENT from"  # fmt: skip
        print(f"warm report {identity} the cold one")
        share = claim_share(scratch / "cold", threshold.partition(".")[0])
        print(
            f"threshold run {wall['threshold']:.1f} s; the claim's share of the cold run "
            f"{share:.1f} s, + 20 s = {share + 20:.1f} s"
        )


def changed_registry(path: Path, threshold: str) -> Path:
    """A copy of the registry with `threshold` (CLAIM.NAME=VALUE) set: the line
    `NAME = { value = ...` of [claims.CLAIM.thresholds]."""
    name, _, value = threshold.partition("=")
    claim, _, key = name.partition(".")
    text = REGISTRY.read_text()
    section = text.index(f"[claims.{claim}.thresholds]")
    start = text.index(f"\n{key} = {{ value = ", section) + 1
    old = text[start : text.index(",", start)]
    path.write_text(text[:start] + f"{key} = {{ value = {value}" + text[start + len(old) :])
    return path


def claim_share(report: Path, claim: str) -> float:
    """The seconds the tests of `claim`'s readings took in a report (results.json's tests of
    `claim/...`, run.json's durations)."""
    results = json.loads((report / "results.json").read_text())
    durations = json.loads((report / "run.json").read_text())["test_durations_s"]
    return sum(durations[test["nodeid"]] for entry in results["claims"]
               if entry["claim"].partition("/")[0] == claim for test in entry["tests"])  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="how many times to run each way")
    parser.add_argument("--cache", action="store_true", help="cold, warm and threshold runs")
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD, metavar="CLAIM.NAME=VALUE",
                        help="the threshold the --cache run changes")  # fmt: skip
    arguments, rest = parser.parse_known_args()
    if arguments.cache:
        cached_runs(arguments.threshold, rest)
    else:
        main(arguments.rounds, rest)
