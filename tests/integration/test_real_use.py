"""Programs as users write them: each test here failed before the fix it names."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import resource
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

import fanmap
from fanmap import Failure, SerializationError, WorkerCrashedError, parallel, pmap
from tests import funcs
from tests.conftest import HAS_DASK


def test_starmap_fails_only_the_item_that_is_not_a_tuple(backend: Any) -> None:
    pow_ = parallel(pow, backend=backend, workers=2)
    returned = pow_.options(on_error="return").starmap([(1, 2), 5, (2, 3)])  # type: ignore[list-item]
    assert returned[0] == 1
    assert returned[2] == 8
    failure = returned[1]
    assert isinstance(failure, Failure)
    assert failure.index == 1
    assert "tuple of arguments" in str(failure.exception)
    assert pow_.options(on_error="skip").starmap([(1, 2), 5, (2, 3)]) == [1, 8]
    with pytest.raises(TypeError, match="starmap\\(\\) takes one tuple") as info:
        pow_.starmap([(1, 2), 5, (2, 3)])
    assert any("item 1" in note for note in info.value.__notes__)


def test_an_option_given_to_map_is_refused_before_any_work() -> None:
    calls: list[int] = []

    def work(x: int) -> int:
        calls.append(x)
        return x

    with pytest.raises(
        TypeError, match=r"chunksize is an option of fanmap: set it with work\.options\(chunksize=2\)"
    ):
        parallel(work, backend="thread").map([1, 2], chunksize=2)

    def kw(x: int, **extra: Any) -> int:
        calls.append(x)
        return x

    with pytest.raises(TypeError, match=r"would get it in its \*\*kwargs"):
        parallel(kw, backend="thread").map([1], timeout=5)
    assert calls == []


def test_an_arity_mismatch_is_refused_before_any_work() -> None:
    with pytest.raises(TypeError, match=r"cannot call square\(x: 'int'\).*2 positional arguments per call"):
        parallel(funcs.square, workers=2).map([1, 2], [3, 4])  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        parallel(funcs.square, workers=2).map([1], bogus=1)
    # a parameter of the function that shares an option's name is the function's
    assert parallel(funcs.sleep_on, backend="thread").map([1], bad=9, seconds=0.0) == [1]


def test_failure_kwargs_hold_the_maps_keywords() -> None:
    out = parallel(funcs.fail_on, workers=2, on_error="return").map([1, 3], bad=3)
    assert isinstance(out[1], Failure)
    assert out[1].kwargs == {"bad": 3}
    assert out[1].args == (3,)


def test_async_generators_are_refused_and_partials_of_async_functions_run() -> None:
    async def fetch(x: int, k: int) -> int:
        return x * k

    async def pages(x: int) -> Any:
        yield x

    with pytest.raises(TypeError, match="pages is an async generator function"):
        parallel(pages)
    assert pmap(functools.partial(fetch, k=3), [1, 2], backend="thread", workers=2) == [3, 6]


def test_partials_and_callable_objects_work(backend: Any) -> None:
    assert pmap(functools.partial(funcs.scale, k=3), [1, 2], backend=backend, workers=2) == [3, 6]
    assert parallel(functools.partial(funcs.scale, k=2), backend=backend, workers=2).map([4]) == [8]
    assert pmap(funcs.Offset(10), [1, 2], backend=backend, workers=2) == [11, 12]
    assert parallel(funcs.Offset(1)).__name__ == "Offset object"
    assert parallel(functools.partial(funcs.scale, k=2)).__name__ == "partial(scale)"


def test_the_worker_count_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parallel(abs, workers=3).workers == 3
    monkeypatch.setenv("FANMAP_WORKERS", "5")
    assert parallel(abs).workers == 5
    with fanmap.config(workers=7):
        assert parallel(abs).workers == 7


def test_a_pool_whose_workers_someone_else_reaped_is_replaced(start_method: Any) -> None:
    pf = parallel(funcs.pid, workers=2, start_method=start_method)
    first = set(pf.map(range(8)))
    for pid in first:
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # forkserver: not our children
            os.waitpid(pid, 0)  # reap them ourselves, as a supervisor would
    deadline = time.monotonic() + 10  # gone, and reaped (under forkserver, by the server)
    while any(os.path.exists(f"/proc/{p}") for p in first) and time.monotonic() < deadline:
        time.sleep(0.02)
    second = set(pf.map(range(8)))
    assert second
    assert not second & first
    fanmap.shutdown()  # nothing is raised while closing


def _counting(pulled: list[int]) -> Iterator[int]:
    for i in itertools.count():
        pulled[0] += 1
        yield i


def test_imap_reads_ahead_a_bounded_number_of_items() -> None:
    pulled = [0]
    results = parallel(funcs.square, workers=2).imap(_counting(pulled))
    assert [next(results) for _ in range(100)] == [i * i for i in range(100)]
    results.close()  # type: ignore[attr-defined]
    # at most max(16, 4 x workers) chunks of at most 1024 items are read ahead
    assert pulled[0] <= 100 + 16 * 1024, pulled[0]


def test_buffersize_bounds_the_read_ahead_in_items() -> None:
    pulled = [0]
    results = parallel(funcs.square, workers=2, buffersize=10).imap(_counting(pulled))
    assert [next(results) for _ in range(50)] == [i * i for i in range(50)]
    results.close()  # type: ignore[attr-defined]
    assert pulled[0] <= 50 + 10


def test_large_items_are_read_ahead_by_bytes_not_thousands() -> None:
    pulled = [0]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def big() -> Iterator[bytes]:
        for _ in itertools.count():
            pulled[0] += 1
            yield bytes(100_000)

    results = parallel(funcs.length, workers=2).imap(big())
    assert [next(results) for _ in range(100)] == [100_000] * 100
    results.close()  # type: ignore[attr-defined]
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert pulled[0] < 1000, pulled[0]  # 64 MiB of 100 KB items: about 670
    assert grown_mb < 300, grown_mb


def test_an_unpicklable_captured_variable_is_named() -> None:
    import threading

    lock = threading.Lock()

    def uses_lock(x: int) -> int:
        with lock:
            return x

    with pytest.raises(SerializationError, match=r"it uses lock, a lock object, which cannot be pickled"):
        parallel(uses_lock, workers=1).map([1])


@pytest.mark.skipif(not HAS_DASK, reason="the dask extra is not installed")
def test_the_dask_backend_follows_a_new_client_after_the_old_one_closed() -> None:
    import distributed

    for _ in range(2):
        with (
            distributed.LocalCluster(
                n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
            ) as cluster,
            distributed.Client(cluster),
        ):
            assert pmap(funcs.square, [1, 2, 3], backend="dask") == [1, 4, 9]


def test_a_slow_first_stage_does_not_hold_back_the_second() -> None:
    pulled = [0]
    first = parallel(funcs.slow_identity, workers=2)
    second = parallel(funcs.square, workers=2)
    results = second.imap(first.imap(_counting(pulled)))
    assert [next(results) for _ in range(10)] == [i * i for i in range(10)]
    results.close()  # type: ignore[attr-defined]
    # The second stage takes what the first has ready instead of waiting for a full
    # chunk (before: 700 to 2,100 items of 10 ms each were read for ten results).
    assert pulled[0] < 300, pulled[0]


def test_messages_a_user_met(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANMAP_WORKERS", "0")
    with pytest.raises(ValueError, match="FANMAP_WORKERS: workers must be >= 1"):
        parallel(funcs.square).map([1])
    monkeypatch.delenv("FANMAP_WORKERS")
    assert parallel(abs, backend="serial", workers=3).workers == 1
    out = parallel(funcs.identity_or_fail, backend="serial", on_error="return").map([{"items": [1], "i": 5}])
    assert isinstance(out[0], Failure)
    with pytest.raises(ValueError) as info:
        parallel(funcs.identity_or_fail, backend="serial").map([{"items": [1], "i": 5}])
    assert "({'items': [1], 'i': 5},)" in info.value.__notes__[0]  # the dict as given, not sorted
    with pytest.raises(WorkerCrashedError) as crash:
        parallel(funcs.kill_self_on, workers=1, retries=2).map([2], bad=2)
    assert any("was tried 3 times" in note for note in crash.value.__notes__)
