"""The Dask backend on a real LocalCluster: clients, worker loss, cancellation, limits."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fanmap import (
    BackendUnavailableError,
    DaskBackend,
    Failure,
    SharedStateError,
    TaskTimeoutError,
    Value,
    WorkerCrashedError,
    _pools,
    parallel,
    shared_state,
)
from fanmap._backends._dask import DaskPool
from tests import funcs

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """One cluster for the module; a lost worker fails its task at once (no Dask retries)."""
    import dask

    settings = {
        "distributed.scheduler.allowed-failures": 0,
        "distributed.scheduler.worker-saturation": 1.0,  # one task on a worker at a time
    }
    with dask.config.set(settings):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
        )
        client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        _pools.shutdown()
        client.close()
        cluster.close()


def pools_on(client: Any) -> list[DaskPool]:
    return [p for p in list(_pools._every) if isinstance(p, DaskPool) and p._client is client]


def test_an_existing_client_is_used_and_left_running(client: Any) -> None:
    with distributed.Client(client.scheduler.address) as current:  # the default client here
        assert parallel(funcs.square, backend="dask").map(range(20)) == [x * x for x in range(20)]
        assert pools_on(current)
        _pools.shutdown()
        assert current.status == "running"
        assert len(current.scheduler_info()["workers"]) == 2


def test_a_given_client_is_used_and_left_running(client: Any) -> None:
    pf = parallel(funcs.add, backend=DaskBackend(client))
    assert pf.map(range(10), b=1) == list(range(1, 11))
    assert pools_on(client)
    _pools.shutdown()
    assert client.status == "running"


def test_an_address_connects_and_never_shuts_the_cluster_down(client: Any) -> None:
    backend = DaskBackend(address=client.scheduler.address)
    assert parallel(funcs.square, backend=backend).map([3, 4]) == [9, 16]
    _pools.shutdown()
    assert len(client.scheduler_info()["workers"]) == 2
    with pytest.raises(TypeError, match="a client or an address, not both"):
        DaskBackend(client, address="tcp://x:1")


def test_a_lost_worker_fails_only_its_item(client: Any) -> None:
    # This cluster fails a task as soon as its worker dies. Dask fails every task the
    # dying worker held, so the culprit is the last item: nothing can wait behind it. It
    # exits a second late: a Dask worker reports finished tasks in batches, and a worker
    # that dies at once can take the report of its previous task with it.
    pf = parallel(funcs.exit_late_on, backend=DaskBackend(client), chunksize=1, on_error="return")
    out = pf.map(range(6), bad=5, code=1)
    assert isinstance(out[5], Failure)
    assert isinstance(out[5].exception, WorkerCrashedError)
    assert "Dask task was lost" in str(out[5].exception)
    assert out[:5] == [0, 1, 2, 3, 4]
    client.wait_for_workers(2, timeout=60)


def test_outstanding_tasks_are_cancelled_when_the_map_fails(client: Any) -> None:
    pf = parallel(funcs.sleep_on, backend=DaskBackend(client), chunksize=1)
    with pytest.raises(funcs.CustomError):
        parallel(_fail_first, backend=DaskBackend(client), chunksize=1).map(range(20))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(client.processing().values()):
        time.sleep(0.1)
    assert not any(client.processing().values()), "tasks of the failed map still run"
    assert pf.map(range(3), bad=-1) == [0, 1, 2]


def _fail_first(x: int) -> int:
    if x == 0:
        raise funcs.CustomError("the first item fails")
    time.sleep(2)
    return x


def test_closing_an_imap_cancels_its_tasks(client: Any) -> None:
    it = parallel(funcs.sleep_for, backend=DaskBackend(client), chunksize=1).imap([0.0] + [1.0] * 10)
    assert next(it) == 0.0
    it.close()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(client.processing().values()):
        time.sleep(0.1)
    assert not any(client.processing().values())


def test_timeout_fails_the_item(client: Any) -> None:
    # On Dask a timeout counts from submission: first let earlier tests' cancelled calls
    # (which Dask cannot stop) finish, so that both worker threads are free.
    parallel(funcs.square, backend=DaskBackend(client), chunksize=1).map(range(8))
    pf = parallel(funcs.sleep_on, backend=DaskBackend(client), timeout=1.0, on_error="return")
    out = pf.map(range(3), bad=1, seconds=3)
    assert isinstance(out[1], Failure)
    assert isinstance(out[1].exception, TaskTimeoutError)
    assert [out[0], out[2]] == [0, 2]


def test_a_parallel_function_inside_a_task_runs_serially(client: Any) -> None:
    assert parallel(funcs.nested_map, backend=DaskBackend(client)).map([3, 2]) == [[0, 1, 4], [0, 1]]


def test_shared_state_is_refused_before_any_work(client: Any) -> None:
    counter = Value("i", 0)
    pf = parallel(shared_state(counter=counter)(funcs.bump_many), backend=DaskBackend(client))
    with pytest.raises(
        SharedStateError, match=r"dask backend cannot share memory.*\"process\", \"thread\" or \"serial\""
    ):
        pf.map([1])
    assert counter.value == 0


def test_worker_tracebacks_and_notes(client: Any) -> None:
    with pytest.raises(funcs.CustomError, match="bad item 3") as info:
        parallel(funcs.fail_on, backend=DaskBackend(client)).map(range(6))
    assert "item 3 (3,)" in "\n".join(info.value.__notes__)
    import traceback

    assert "fail_on" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]


def test_without_distributed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'fanmap\[dask\]'") as info:
        parallel(funcs.square, backend=DaskBackend()).map([1])
    assert isinstance(info.value, ImportError)


def test_fanmap_does_not_import_distributed_until_asked() -> None:
    import subprocess

    code = "import sys, fanmap; fanmap.pmap(abs, [-1], backend='thread'); print('distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
