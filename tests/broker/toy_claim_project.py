"""A toy claim project, pytest runs of it in processes of their own, and Dask clusters of real
`dask scheduler` and `dask worker` processes on 127.0.0.1.

The toy claim has one measurement, `activation_scale`, asked for by a per-seed test and a
cross-seed test on two presets and four seeds: eight measurements. Environment variables make
it slow (TOY_SLEEP_S), raise on a seed (TOY_FAIL_SEED) or kill its Dask worker the first time
it measures a seed (TOY_KILL_SEED); every call leaves a file in TOY_CALLS named
`<seed>-<d_model>-<pid>-<unique>`. Every process a test starts runs in a session of its own,
killed as a whole when the test is done. A run can be stopped half-way (`stopped_half_way`), and
what the measurement cache holds read back (`stored`); `scratch_package` copies mechclaims's
source into a package of its own, to be imported instead of the installed one (PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 240
CLUSTER_TIMEOUT_S = 60
N_MEASUREMENTS = 8  # 2 presets x 4 seeds
BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

PYPROJECT = """\
[tool.pytest.ini_options]
claims_registry = "registry.toml"
model_presets = ["tiny-mha", "gpt2-style"]
model_seeds = "0:4"
evidence_dir = "report"
"""

REGISTRY = """\
[claims.activation-scale]
seed_sentence = "the MLP neurons of block 0 are active"
[claims.activation-scale.thresholds]
n_sequences = { value = 50, why = "enough for a mean" }
min_scale = { value = 0.0, why = "any activity" }
required_rate = { value = 0.5, why = "most seeds" }
[claims.activation-scale.verdicts.controlled]
tiny-mha = { verdict = "supported", why = "active on 4/4 seeds" }
gpt2-style = { verdict = "supported", why = "active on 4/4 seeds" }
"""

MEASURES = '''\
"""The toy claim's measurement and declaration, with switches to make the measurement slow,
fail or kill its worker."""

import os
import signal
import time
import uuid
from pathlib import Path

import numpy as np

from mechclaims.interp.claims.declaration import Claim, Reading, at_least

HOOK = "blocks.0.mlp.hook_post"


def activation_scale(source, seed, thresholds):
    cfg = source.cfg
    calls = Path(os.environ["TOY_CALLS"])
    (calls / f"{seed}-{cfg.d_model}-{os.getpid()}-{uuid.uuid4().hex}").touch()
    time.sleep(float(os.environ.get("TOY_SLEEP_S", "0")))
    if seed == int(os.environ.get("TOY_FAIL_SEED", "-1")):
        raise ValueError(f"seed {seed} cannot be measured")
    if seed == int(os.environ.get("TOY_KILL_SEED", "-1")) and first_time(calls / "killed"):
        os.kill(os.getpid(), signal.SIGKILL)
    model = source.model(seed)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, cfg.vocab_size, (thresholds["n_sequences"], 4))
    _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    acts = cache[HOOK]
    return {"scale": float(np.abs(acts).mean()), "per_neuron": acts.mean(axis=(0, 1))}


def first_time(marker):
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


CLAIM = Claim(
    "activation-scale",
    "Block 0's MLP neurons are active.",
    {"controlled": Reading(activation_scale, statistic="scale", threshold="min_scale",
                           holds=at_least("scale", "min_scale"), hidden=("per_neuron",))},
)
'''

TESTS = """\
import numpy as np
import pytest

from toy_measures import CLAIM, activation_scale


@pytest.mark.claim(f"{CLAIM.id}/controlled", statement=CLAIM.statement)
def test_each_seed(read_seed, thresholds):
    assert read_seed()["scale"] > thresholds["min_scale"]


@pytest.mark.claim(f"{CLAIM.id}/controlled", statement=CLAIM.statement, decides=True)
def test_across_seeds(evidence, judge, read_seeds, thresholds):
    results = read_seeds()
    evidence.record(median_neuron=float(np.median([r["per_neuron"] for r in results])))
    judge(CLAIM.id, "controlled", CLAIM.readings["controlled"].seeds_hold(results, thresholds))
"""


def write_toy_project(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in (("pyproject.toml", PYPROJECT), ("registry.toml", REGISTRY),
                       ("toy_measures.py", MEASURES), ("test_toy_claim.py", TESTS)):  # fmt: skip
        (directory / name).write_text(text)
    (directory / "calls").mkdir()
    return directory


@dataclass
class Run:
    returncode: int
    output: str  # stdout and stderr
    project: Path
    pid: int  # of the pytest process

    def report(self) -> dict[str, bytes]:
        """Every file of the evidence report but run.json, by its path in the report."""
        directory = self.project / "report"
        return {str(path.relative_to(directory)): path.read_bytes()
                for path in sorted(directory.rglob("*"))
                if path.is_file() and path.name != "run.json"}  # fmt: skip


def results(project: Path) -> dict:
    """The run's results.json."""
    return json.loads((project / "report" / "results.json").read_text())


def calls(project: Path) -> list[tuple[int, int, int]]:
    """(seed, d_model, pid) of every call of the toy measurement, in no particular order."""
    return [tuple(int(part) for part in path.name.split("-")[:3])
            for path in (project / "calls").iterdir() if path.name != "killed"]  # fmt: skip


def toy_env(project: Path, **switches: str) -> dict[str, str]:
    return {**os.environ, "TOY_CALLS": str(project / "calls"), "COLUMNS": "100", **switches}


def start(command: list[str], project: Path, env: dict[str, str], **kwargs) -> subprocess.Popen:
    """A process in a session of its own (so that everything it starts can be killed)."""
    return subprocess.Popen(command, cwd=project, env=env, start_new_session=True, **kwargs)


def kill_session(process: subprocess.Popen) -> None:
    """Kill the process and whatever it started that is still alive."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def pytest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]


def run_pytest(project: Path, *args: str, **switches: str) -> Run:
    """pytest with `args` in the project, the toy measurement's `switches` set."""
    process = start(pytest_command(*args), project, toy_env(project, **switches),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        kill_session(process)
    return Run(process.returncode, output, project, process.pid)


def stopped_half_way(project: Path, cache: Path, signal_number: int, at: int, *args: str) -> None:
    """A run of the toy project with the measurement cache `cache`, each measurement taking
    0.5 s, sent `signal_number` (its whole session, as a terminal's Ctrl-C reaches every
    process) once the cache holds `at` entries."""
    command = pytest_command(f"--measure-cache={cache}", *args)
    process = start(command, project, toy_env(project, TOY_SLEEP_S="0.5"),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until(lambda: len(stored(cache)) >= at)
        os.killpg(process.pid, signal_number)
        process.wait(timeout=RUN_TIMEOUT_S)
    finally:
        kill_session(process)


def stored(cache: Path) -> set[tuple[int, int]]:
    """(seed, d_model) of every measurement the cache holds, from its entries' identities."""
    found = set()
    for path in cache.glob("*.npz"):
        with np.load(path) as entry:
            identity = json.loads(entry["identity"].tobytes())
        found.add((identity["seed"], int(re.search(r"d_model=(\d+)", identity["source"])[1])))
    return found


def package_dirs() -> dict[str, Path]:
    """The folders pyproject.toml installs as mechclaims's packages, by package."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {package: ROOT / folder for package, folder in setuptools["package-dir"].items()}


def scratch_package(root: Path) -> Path:
    """A copy of mechclaims's source laid out as the one package `root`/mechclaims, nothing
    installed: on PYTHONPATH it is imported instead of the installed one."""
    for package, folder in package_dirs().items():
        target = root.joinpath(*package.split("."))
        shutil.copytree(folder, target, ignore=shutil.ignore_patterns("__pycache__", "golden"))
    return root / "mechclaims"


@contextmanager
def dask_cluster(project: Path, n_workers: int = 2, **switches: str) -> Iterator[Cluster]:
    """A scheduler on 127.0.0.1 (without a dashboard) and `n_workers` single-threaded workers,
    all listening on 127.0.0.1 only, run in the project, which is on their PYTHONPATH: as on
    the machines of a cluster. The workers run without a nanny, which would limit their BLAS
    threads (as mechclaims must)."""
    env = {name: value for name, value in toy_env(project, **switches).items()
           if name not in BLAS_THREADS}  # fmt: skip
    cluster = Cluster(project, env)
    scheduler_file = project / "scheduler.json"
    try:
        # --no-dashboard alone would leave the scheduler's other HTTP pages on 0.0.0.0:8787.
        cluster.start(["scheduler", "--port", "0", "--no-dashboard", "--dashboard-address",
                       "127.0.0.1:0", "--scheduler-file", str(scheduler_file)])  # fmt: skip
        wait_until(
            lambda: scheduler_file.exists() and scheduler_file.read_text().rstrip().endswith("}")
        )
        cluster.address = json.loads(scheduler_file.read_text())["address"]
        cluster.add_workers(n_workers)
        yield cluster
    finally:
        for process in cluster.processes:
            kill_session(process)


@dataclass
class Cluster:
    project: Path
    env: dict[str, str]
    address: str = ""
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start(self, dask_command: list[str], pythonpath: str = "") -> None:
        """Start `dask <dask_command>` on 127.0.0.1 with `pythonpath`, then the project, on its
        PYTHONPATH."""
        path = os.pathsep.join(filter(None, [pythonpath, str(self.project)]))
        command = [sys.executable, "-m", "dask", *dask_command, "--host", "127.0.0.1"]
        env = {**self.env, "PYTHONPATH": path}
        self.processes.append(start(command, self.project, env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL))  # fmt: skip

    def add_workers(self, n_workers: int, pythonpath: str = "") -> None:
        """Start `n_workers` more workers and wait until the scheduler has them."""
        expected = self.n_workers() + n_workers
        for _ in range(n_workers):
            self.start(["worker", self.address, "--nthreads", "1", "--no-nanny",
                        "--no-dashboard", "--dashboard-address", "127.0.0.1:0"],
                       pythonpath)  # fmt: skip
        wait_until(lambda: self.n_workers() >= expected)

    def n_workers(self) -> int:
        return self.ask_scheduler(lambda dask_scheduler: len(dask_scheduler.workers))

    def n_tasks(self) -> int:
        return self.ask_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))

    def ask_scheduler(self, question: Callable):
        with self.client() as client:
            return client.run_on_scheduler(question)

    def ask_workers(self, question: Callable) -> dict:
        with self.client() as client:
            return client.run(question)

    def client(self):
        from distributed import Client  # only the cluster tests need Dask

        return Client(self.address, timeout=CLUSTER_TIMEOUT_S)


def wait_until(condition: Callable[[], object], timeout: float = CLUSTER_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        time.sleep(0.2)
