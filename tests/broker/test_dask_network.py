"""What the Dask clusters listen on, and how a guarded one is reached.

The LocalCluster of --dask-workers keeps to this machine: every socket it listens on, its
dashboard's too (Dask's default listens on every interface), is bound to 127.0.0.1, as the
sockets of this process and its children show (psutil, which Dask installs); --dask-dashboard
moves the dashboard or turns it off (`none`), and a malformed choice is a usage error. A
scheduler that requires TLS (`dask scheduler --tls-ca-file ...`, as the README shows for a
shared cluster) is reached by --dask-scheduler tls://... with the TLS files of Dask's config
(here its environment variables), and refused without them."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from toy_claim_project import (
    BLAS_THREADS,
    N_MEASUREMENTS,
    Cluster,
    calls,
    kill_session,
    run_pytest,
    toy_env,
    wait_until,
    write_toy_project,
)

from mechclaims.fixtures.dask_dashboard import CONFIG_KEY, parse_dashboard

needs_dask = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="the Dask broker needs the extra mechclaims[dask]",
)
LOCAL = "127.0.0.1"


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:8787", "127.0.0.1:8787"),
        (":0", "127.0.0.1:0"),  # Dask's ":PORT" means every interface; ours, this machine
        ("8788", "127.0.0.1:8788"),
        ("0.0.0.0:8787", "0.0.0.0:8787"),  # every interface, when asked for by name
        ("localhost:8787", "localhost:8787"),
        ("none", None),
        ("None", None),
        (None, None),  # a Dask config value of null
        (8789, "127.0.0.1:8789"),  # a Dask config value read as a number
    ],
)
def test_a_dashboard_address_is_on_127_0_0_1_unless_a_host_is_named(text, address):
    assert parse_dashboard("--dask-dashboard", text) == address


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--dask-dashboard", "nowhere"], "",
         "ERROR: --dask-dashboard: expected HOST:PORT, :PORT or none, got 'nowhere'"),
        (["--dask-dashboard", "127.0.0.1:65536"], "",
         "ERROR: --dask-dashboard: expected HOST:PORT, :PORT or none, got '127.0.0.1:65536'"),
        ([], 'dask_dashboard = "localhost:"',
         "ERROR: ini option dask_dashboard: expected HOST:PORT, :PORT or none, got 'localhost:'"),
        (["--dask-dashboard", "none", "--dask-scheduler", "tcp://127.0.0.1:8786"], "",
         "ERROR: --dask-dashboard and --dask-scheduler: a running scheduler's dashboard is set "
         "where it starts (dask scheduler --dashboard-address HOST:PORT)"),
    ],
)  # fmt: skip
def test_a_dashboard_choice_that_cannot_be_honoured_is_a_usage_error(pytester, args, ini, message):
    # Refused before Dask is imported (see test_broker_options: an inline run must not import it).
    pyproject = write_toy_project(pytester.path) / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + ini + "\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.outlines
    assert [line for line in result.errlines if line.strip()] == [message]


def listening() -> set[tuple[str, int]]:
    """(address, port) of every TCP socket this process and its children listen on."""
    import psutil

    me = psutil.Process()
    sockets = set()
    for process in [me, *me.children(recursive=True)]:
        with suppress(psutil.Error):  # a child that ended meanwhile
            sockets |= {(c.laddr.ip, c.laddr.port) for c in process.net_connections(kind="tcp")
                        if c.status == psutil.CONN_LISTEN}  # fmt: skip
    return sockets


@contextmanager
def local_cluster(dashboard: str | None) -> Iterator[tuple[object, set[tuple[str, int]]]]:
    """A DaskExecutor.local(1) with the `dashboard` config value (None: the default), and the
    sockets it opened to listen on."""
    import dask

    from mechclaims.fixtures.dask_cluster import DaskExecutor

    before = listening()
    with dask.config.set({} if dashboard is None else {CONFIG_KEY: dashboard}):
        executor = DaskExecutor.local(1)
    try:
        yield executor, listening() - before
    finally:
        executor.shutdown()


def own_ports(executor) -> set[int]:
    """The ports of the scheduler, its HTTP server, the workers and their nannies, each
    checked to be on 127.0.0.1."""
    info = executor.client.scheduler_info()
    addresses = [info["address"], *info["workers"],
                 *(worker["nanny"] for worker in info["workers"].values())]  # fmt: skip
    assert all(address.startswith(f"tcp://{LOCAL}:") for address in addresses), addresses
    return {int(address.rsplit(":", 1)[1]) for address in addresses} | {
        info["services"]["dashboard"]
    }


@needs_dask
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")  # another test's cluster
def test_the_local_cluster_and_its_dashboard_listen_on_127_0_0_1_only():
    with local_cluster(None) as (executor, opened):
        ports = own_ports(executor)
        dashboard = executor.client.scheduler_info()["services"]["dashboard"]
        description = executor.description()
    assert opened, "the cluster opened no socket to listen on"
    assert {address for address, _ in opened} == {LOCAL}, opened
    assert ports <= {port for _, port in opened}
    assert description.endswith(f"; dashboard http://{LOCAL}:{dashboard}/status")


@needs_dask
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_without_a_dashboard_nothing_answers_at_its_address_and_all_listens_on_127_0_0_1():
    # After a cluster with a dashboard in this process: Dask's placeholder for a dashboard
    # without bokeh must not carry over (it appends itself to a list in Dask's config).
    with local_cluster("127.0.0.1:0"):
        pass
    with local_cluster("none") as (executor, opened):
        ports = own_ports(executor)
        http = executor.client.scheduler_info()["services"]["dashboard"]  # always an HTTP server
        assert executor.dashboard_link() is None
        assert "dashboard" not in executor.description()
        with pytest.raises(urllib.error.HTTPError) as status:
            urllib.request.urlopen(f"http://{LOCAL}:{http}/status", timeout=5)
        assert status.value.code == 404
    assert {address for address, _ in opened} == {LOCAL}, opened
    assert ports <= {port for _, port in opened}
    assert http != 8787  # the HTTP server that is no dashboard leaves Dask's port alone


@needs_dask
def test_dask_dashboard_none_measures_on_a_local_cluster_without_a_dashboard(toy_project):
    run = run_pytest(toy_project, "--dask-workers", "1", "--dask-dashboard", "none")
    assert run.returncode == 0, run.output
    assert "dask: measuring on a LocalCluster of 1 worker processes\n" in run.output


def certificates(directory: Path) -> dict[str, str]:
    """A certificate authority and one certificate it signed (for the scheduler, the worker and
    the client alike), made with openssl: Dask's --tls-* options by name."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
            "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=node", "-keyout", "node.key",
            "-out", "node.csr")  # fmt: skip
    openssl("x509", "-req", "-days", "1", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "node.pem")  # fmt: skip
    files = {"ca-file": "ca.pem", "cert": "node.pem", "key": "node.key"}
    return {name: str(directory / file) for name, file in files.items()}


@needs_dask
@pytest.mark.skipif(shutil.which("openssl") is None, reason="makes its certificates with openssl")
def test_a_scheduler_that_requires_tls_is_reached_with_the_tls_files_of_dasks_config(
    toy_project, tmp_path
):
    files = certificates(tmp_path)
    tls = [option for name, path in files.items() for option in (f"--tls-{name}", path)]
    client_tls = {
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": files["ca-file"],
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": files["cert"],
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": files["key"],
    }
    env = {name: value for name, value in toy_env(toy_project).items()
           if name not in BLAS_THREADS}  # fmt: skip
    cluster = Cluster(toy_project, env)
    scheduler_file = tmp_path / "scheduler.json"
    try:
        cluster.start(["scheduler", "--protocol", "tls", "--port", "0",
                       "--no-dashboard", "--dashboard-address", f"{LOCAL}:0", "--scheduler-file",
                       str(scheduler_file), *tls])  # fmt: skip
        wait_until(
            lambda: scheduler_file.exists() and scheduler_file.read_text().rstrip().endswith("}")
        )
        address = json.loads(scheduler_file.read_text())["address"]
        cluster.start(["worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                       "--dashboard-address", f"{LOCAL}:0", *tls])  # fmt: skip
        refused = run_pytest(toy_project, "--dask-scheduler", address)
        run = run_pytest(toy_project, "--dask-scheduler", address, **client_tls)
    finally:
        for process in cluster.processes:
            kill_session(process)
    assert address.startswith(f"tls://{LOCAL}:")
    assert refused.returncode == pytest.ExitCode.USAGE_ERROR, refused.output
    assert f"ERROR: --dask-scheduler {address}: TLS expects a `ssl_context`" in refused.output
    assert run.returncode == 0, run.output
    assert f"dask: measuring on the cluster at {address}" in run.output
    assert len(calls(toy_project)) == N_MEASUREMENTS
    assert run.pid not in {pid for *_, pid in calls(toy_project)}  # measured on the worker
