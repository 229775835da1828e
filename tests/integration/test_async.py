"""Async functions (processes x coroutines) and maps awaited from asyncio code.

Concurrency is proven with barriers (a call waits until k calls are in flight), never
with durations; the bounds below only say "it did not hang".
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import os
import time
from pathlib import Path
from typing import Any

import pytest

from fanmap import (
    Failure,
    TaskTimeoutError,
    Value,
    WorkerCrashedError,
    WorkerInitError,
    _pools,
    parallel,
    per_worker,
    pmap,
    shared_state,
)
from tests import afuncs, funcs
from tests.conftest import START_METHODS, alive


def _token(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name}-{os.getpid()}"


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_k_calls_are_in_flight_at_once_in_one_worker(backend: Any, request: pytest.FixtureRequest) -> None:
    k = 8
    pf = parallel(afuncs.in_worker_barrier, backend=backend, workers=1, concurrency=k)
    out = pf.map(range(3 * k), token=_token(request), k=k)
    assert [x for x, _ in out] == list(range(3 * k))


@pytest.mark.parametrize("start_method", START_METHODS)
def test_a_small_map_is_spread_over_every_worker(start_method: Any, tmp_path: Path) -> None:
    pf = parallel(afuncs.files_barrier, workers=4, concurrency=16, start_method=start_method)
    pids = pf.map(range(20), folder=str(tmp_path), n=20)  # all 20 in flight at once
    assert sorted(collections.Counter(pids).values()) == [5, 5, 5, 5]


def test_the_thread_backend_spreads_too(tmp_path: Path) -> None:
    pf = parallel(afuncs.files_barrier, backend="thread", workers=4, concurrency=16)
    assert pf.map(range(20), folder=str(tmp_path), n=20) == [os.getpid()] * 20
    assert len(list(tmp_path.glob("in-*"))) == 20


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_a_late_call_is_cancelled_and_only_it_fails(backend: Any) -> None:
    pf = parallel(afuncs.slow_on, backend=backend, workers=1, concurrency=8, timeout=0.5, on_error="return")
    out = pf.map(range(8), bad=3)
    assert isinstance(out[3], Failure)
    assert isinstance(out[3].exception, TaskTimeoutError)
    assert "was cancelled" in str(out[3].exception)
    others = [o for i, o in enumerate(out) if i != 3]
    assert len(set(others)) == 1  # one worker served them all, and it was not replaced
    assert pf.map(range(4), bad=-1) == [others[0]] * 4  # the same worker goes on


@pytest.mark.parametrize("start_method", START_METHODS)
def test_a_killed_worker_fails_exactly_its_calls_in_flight(start_method: Any, tmp_path: Path) -> None:
    pf = parallel(
        afuncs.kill_after_barrier, workers=2, concurrency=10, on_error="return", start_method=start_method
    )
    out = pf.map(range(20), folder=str(tmp_path), n=20, bad=7)
    failed = [i for i, o in enumerate(out) if isinstance(o, Failure)]
    assert len(failed) == 10
    assert 7 in failed
    for i in failed:
        failure = out[i]
        assert isinstance(failure, Failure)
        error = failure.exception
        assert isinstance(error, WorkerCrashedError)
        assert "SIGKILL" in str(error)
    survivors = {o for o in out if not isinstance(o, Failure)}
    assert len(survivors) == 1  # the other worker's ten calls all succeeded


def test_retries_run_a_failed_call_again(tmp_path: Path) -> None:
    pf = parallel(afuncs.fails_once, workers=2, concurrency=4, retries=1)
    assert pf.map(range(6), folder=str(tmp_path)) == list(range(6))


def test_with_retries_calls_lost_beside_the_culprit_run_again_alone_and_succeed(tmp_path: Path) -> None:
    pf = parallel(afuncs.kill_after_barrier, workers=2, concurrency=4, retries=1, on_error="return")
    out = pf.map(range(8), folder=str(tmp_path), n=8, bad=1)
    # Item 1 kills its worker beside three other calls; each runs again alone: item 1
    # kills a worker again and fails, the three others succeed.
    failed = [i for i, o in enumerate(out) if isinstance(o, Failure)]
    assert failed == [1]
    failure = out[1]
    assert isinstance(failure, Failure)
    assert "tried 2 times" in "".join(failure.exception.__notes__)
    assert "other call" not in str(failure.exception)  # the second time it ran alone


def test_a_crash_names_the_other_calls_in_flight(tmp_path: Path) -> None:
    pf = parallel(afuncs.kill_after_barrier, workers=1, concurrency=3, on_error="return")
    out = pf.map(range(3), folder=str(tmp_path), n=3, bad=0)
    assert all(isinstance(o, Failure) for o in out)
    first = out[0]
    assert isinstance(first, Failure)
    message = str(first.exception)
    assert "while running item 0 (0,) and 2 other calls in flight (items 1, 2)" in message
    assert "any of them may have caused it" in message


def test_a_timeout_names_its_item_and_where_the_coroutine_was() -> None:
    pf = parallel(afuncs.slow_on, workers=1, timeout=0.5)
    with pytest.raises(TaskTimeoutError, match=r"^item 2 \(2,\): the call ran longer") as info:
        pf.map(range(4), bad=2)
    cause = info.value.__cause__
    assert isinstance(cause, asyncio.CancelledError)
    frames = []
    tb = cause.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[0] == "slow_on"  # fanmap's own frames are left out


def test_a_plain_call_makes_its_async_per_worker_values_and_closes_them(tmp_path: Path) -> None:
    session = functools.partial(afuncs.open_session, str(tmp_path))
    pf = parallel(per_worker(session=session)(afuncs.with_session), workers=1)
    for x in (1, 2):  # two event loops, one after the other
        assert asyncio.run(pf(x))[::2] == (x, True)  # type: ignore[call-arg]  # session is given
    assert len(list(tmp_path.glob("open-*"))) == len(list(tmp_path.glob("close-*"))) == 2


def test_a_call_that_blocks_the_loop_stops_its_worker() -> None:
    pf = parallel(afuncs.blocks_loop_on, workers=1, concurrency=4, timeout=0.5, on_error="return")
    out = pf.map(range(4), bad=0)
    assert isinstance(out[0], Failure)
    assert isinstance(out[0].exception, TaskTimeoutError)
    assert "blocks its event loop" in str(out[0].exception)
    for o in out[1:]:  # in flight in the same loop, late as well: they went down with it
        assert isinstance(o, Failure)
        assert isinstance(o.exception, TaskTimeoutError | WorkerCrashedError)
    assert len(set(pf.map(range(3), bad=-1))) == 1  # a new worker took over


def test_real_tracebacks_show_the_coroutines_frames() -> None:
    pf = parallel(afuncs.raises_inside, workers=1)
    with pytest.raises(KeyError) as info:
        pf.map([1, 2])
    text = "".join(info.value.__notes__) + "\n".join(str(e) for e in info.traceback)
    assert "raised by item 1 (1,)" in text or "raised by item 0 (1,)" in text
    names = [entry.name for entry in info.traceback]
    assert "raises_inside" in names
    assert "_deeper" in names


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_shared_state_and_progress_work(backend: Any) -> None:
    hits = Value("i", 0)
    seen: list[tuple[int, int | None]] = []
    pf = parallel(
        shared_state(hits=hits)(afuncs.bump),
        backend=backend,
        workers=2,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert pf.map(range(30)) == list(range(30))
    assert hits.value == 30
    assert seen[-1] == (30, 30)


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_async_per_worker_factories_run_in_the_workers_loop(backend: Any, tmp_path: Path) -> None:
    session = functools.partial(afuncs.open_session, str(tmp_path))
    pf = parallel(per_worker(session=session)(afuncs.with_session), backend=backend, workers=2, concurrency=4)
    out = pf.map(range(12))
    assert [x for x, _, _ in out] == list(range(12))
    assert all(same_loop for _, _, same_loop in out)
    _pools.shutdown()  # workers stop: the generators resume after their yield
    opened = sorted(p.name[5:] for p in tmp_path.glob("open-*"))
    closed = sorted(p.name[6:] for p in tmp_path.glob("close-*"))
    assert opened == closed
    assert 1 <= len(opened) <= 2


def test_a_failing_async_factory_fails_the_map_with_worker_init_error() -> None:
    async def broken() -> int:
        raise OSError("no route")

    async def use(x: int, *, db: int) -> int:
        return x + db

    pf = parallel(per_worker(db=broken)(use), backend="thread", workers=2)
    with pytest.raises(WorkerInitError, match="raised OSError: no route"):
        pf.map(range(4))


def test_mistakes_are_refused_before_any_work() -> None:
    with pytest.raises(TypeError, match="concurrency=4 was given to abs, a plain function"):
        parallel(abs, concurrency=4)
    with pytest.raises(TypeError, match="a plain function"):
        parallel(abs).options(concurrency=4)
    with pytest.raises(ValueError, match="concurrency"):
        parallel(afuncs.double, concurrency=0)
    coroutine = parallel(afuncs.double)(21)  # a plain call: the coroutine, as undecorated
    assert asyncio.run(coroutine) == 42

    async def inside() -> None:
        parallel(afuncs.double).map([1])

    with pytest.raises(RuntimeError, match=r"await double.amap\(...\)"):
        asyncio.run(inside())


def test_a_plain_functions_map_is_not_refused_in_a_loop() -> None:
    async def inside() -> list[int]:
        return parallel(funcs.negate, backend="thread", workers=2).map([1, 2])

    assert asyncio.run(inside()) == [-1, -2]


def test_dask_runs_async_functions_concurrently(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        from fanmap import DaskBackend

        pf = parallel(
            afuncs.slow_on, backend=DaskBackend(client), concurrency=8, timeout=1.0, on_error="return"
        )
        out = pf.map(range(10), bad=4)
        assert isinstance(out[4], Failure)
        assert isinstance(out[4].exception, TaskTimeoutError)
        assert len([o for o in out if not isinstance(o, Failure)]) == 9
        # A chunk's calls run together in the Dask worker's loop: five wait for each other.
        k = 5
        barrier = parallel(afuncs.in_worker_barrier, backend=DaskBackend(client), concurrency=k)
        out = barrier.map(range(2 * k), token=str(tmp_path), k=k)
        assert [x for x, _ in out] == list(range(2 * k))
        _pools.shutdown()


# -- maps awaited from async code ---------------------------------------------------


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_amap_aimap_and_asubmit_for_plain_and_async_functions(backend: Any) -> None:
    async def main() -> None:
        fns: list[Any] = [afuncs.double, funcs.negate]
        for fn in fns:
            pf = parallel(fn, backend=backend, workers=2)
            expected = [2 * x for x in range(10)] if fn is afuncs.double else [-x for x in range(10)]
            assert await pf.amap(range(10)) == expected
            assert [r async for r in pf.aimap(range(10))] == expected
            assert sorted([r async for r in pf.aimap_unordered(range(10))]) == sorted(expected)
            assert await pf.asubmit(3) == expected[3]

    asyncio.run(main())


def test_aimap_reads_an_async_iterable_lazily() -> None:
    produced = 0

    async def numbers() -> Any:
        nonlocal produced
        for i in range(100_000):
            produced += 1
            yield i

    async def main() -> list[int]:
        pf = parallel(afuncs.double, backend="thread", workers=2)
        out = []
        async with contextlib.aclosing(pf.aimap(numbers())) as results:
            async for r in results:
                out.append(r)
                if len(out) == 5:
                    break
        return out

    assert asyncio.run(main()) == [0, 2, 4, 6, 8]
    assert produced < 5_000, f"read {produced} items ahead for 5 results"
    assert asyncio.run(parallel(afuncs.double, workers=2).amap(_arange(50))) == [2 * x for x in range(50)]


async def _arange(n: int) -> Any:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


def test_the_loop_keeps_running_while_amap_waits(tmp_path: Path) -> None:
    # The calls can only finish once a coroutine of the caller's loop has ticked ten
    # times and written the file they wait for: a blocked loop would hang here.
    path = str(tmp_path / "ticked")

    async def ticker() -> None:
        for _ in range(10):
            await asyncio.sleep(0.01)
        Path(path).write_text("")

    async def main() -> list[int]:
        tick = asyncio.ensure_future(ticker())
        out = await parallel(afuncs.plain_wait_for_file, workers=2).amap(range(4), path=path)
        await tick
        return out

    assert asyncio.run(asyncio.wait_for(main(), 120)) == [0, 1, 2, 3]


@pytest.mark.parametrize("start_method", START_METHODS)
def test_cancelling_amap_stops_queued_and_running_calls(start_method: Any, tmp_path: Path) -> None:
    started = Value("i", 0)
    pf = parallel(
        shared_state(started=started)(afuncs.counted_forever),
        workers=1,
        concurrency=2,
        start_method=start_method,
    )

    async def main() -> None:
        task = asyncio.ensure_future(pf.amap(range(100), folder=str(tmp_path)))
        while started.value < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(main(), 120))
    assert started.value == 2  # queued items never started
    pids = [int(p.name) for p in tmp_path.iterdir()]
    assert pids
    assert not any(alive(pid) for pid in pids)


def test_leaving_aimap_early_stops_its_calls(tmp_path: Path) -> None:
    started = Value("i", 0)
    pf = parallel(shared_state(started=started)(afuncs.counted_forever), backend="thread", workers=2)

    async def main() -> None:
        results = pf.aimap(range(100), folder=str(tmp_path))
        task = asyncio.ensure_future(results.__anext__())
        while started.value < 2 * 16:  # two threads, sixteen calls each
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await results.aclose()

    asyncio.run(asyncio.wait_for(main(), 120))
    assert started.value == 32


def test_asubmit_of_a_plain_function_in_a_process() -> None:
    async def main() -> list[int]:
        pf = parallel(funcs.negate, workers=2)
        return list(await asyncio.gather(*(pf.asubmit(i) for i in range(5))))

    assert asyncio.run(main()) == [0, -1, -2, -3, -4]


def test_pmap_of_an_async_function() -> None:
    assert pmap(afuncs.double, range(5), workers=2) == [0, 2, 4, 6, 8]


def test_a_checkpointed_async_map_resumes_with_what_is_left(tmp_path: Path) -> None:
    folder = tmp_path / "calls"
    folder.mkdir()
    run = tmp_path / "run.sqlite"
    pf = parallel(afuncs.logged_fails_on, workers=2, concurrency=4, on_error="return", checkpoint=run)
    first = pf.map(range(12), folder=str(folder), bad=5)
    assert isinstance(first[5], Failure)
    assert len(list(folder.glob("call-*"))) == 12
    (folder / "fix").write_text("")
    assert pf.map(range(12), folder=str(folder), bad=5) == [2 * x for x in range(12)]
    assert len(list(folder.glob("call-5-*"))) == 2  # only the failed item ran again
    assert len(list(folder.glob("call-*"))) == 13


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_every_map_of_plain_code_works_for_an_async_function(backend: Any) -> None:
    pf = parallel(afuncs.add_later, backend=backend, workers=2, concurrency=4)
    assert pf.starmap([(1, 2), (3, 4)]) == [3, 7]
    assert list(pf.imap(range(5), range(5))) == [0, 2, 4, 6, 8]
    assert sorted(pf.imap_unordered(range(5), range(5))) == [0, 2, 4, 6, 8]
    assert pf.submit(20, 22).result(timeout=60) == 42
    assert pmap(afuncs.add_later, [1], [1], backend=backend, workers=2) == [2]


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_a_call_that_raises_cancelled_error_fails_alone(backend: Any) -> None:
    pf = parallel(afuncs.awaits_a_cancelled_future, backend=backend, workers=2, on_error="return")
    out = pf.map(range(4))
    assert [o for i, o in enumerate(out) if i != 2] == [0, 1, 3]
    failure = out[2]
    assert isinstance(failure, Failure)
    assert isinstance(failure.exception, asyncio.CancelledError)


def test_cancelling_amap_on_threads_starts_nothing_queued() -> None:
    started = Value("i", 0)
    pf = parallel(shared_state(started=started)(afuncs.counted_nap), backend="thread", workers=2)

    async def main() -> int:
        task = asyncio.ensure_future(pf.amap(range(40)))
        while started.value < 3:  # the first calls are back: each thread holds two chunks
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return started.value

    at_cancel = asyncio.run(asyncio.wait_for(main(), 120))
    time.sleep(1.5)  # the calls running at the cancel end; no queued one may start after them
    assert started.value == at_cancel
