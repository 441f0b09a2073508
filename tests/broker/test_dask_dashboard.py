"""The LocalCluster of --dask-workers keeps to this machine: every socket it listens on, its
dashboard's too (Dask's default listens on every interface), is bound to 127.0.0.1, as the
sockets of this process and its children show (psutil, which Dask installs); --dask-dashboard
moves the dashboard or turns it off (`none`), and a malformed choice is a usage error."""

from __future__ import annotations

import importlib.util
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from toy_claim_project import run_pytest, write_toy_project

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
         "where it starts (dask scheduler --dashboard-address ADDRESS, or --no-dashboard)"),
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
