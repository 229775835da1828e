"""The public face: map, starmap, imap, submit, options, pmap, on every backend."""

from __future__ import annotations

import itertools
import os
import pickle
import time
from collections.abc import Iterator
from typing import Any

import pytest

import fanmap
from fanmap import Args, Failure, ParallelFunction, _pools, parallel, pmap
from tests import funcs


def test_call_runs_the_plain_function_in_the_caller() -> None:
    pf = parallel(funcs.pid)
    assert pf() == os.getpid()
    assert pf.__name__ == "pid"
    assert pf.__doc__ == funcs.pid.__doc__


def test_bare_and_with_options_decorator() -> None:
    bare = parallel(funcs.square)
    configured = parallel(workers=2, backend="thread")(funcs.square)
    assert isinstance(bare, ParallelFunction)
    assert isinstance(configured, ParallelFunction)
    assert configured.map([1, 2, 3]) == [1, 4, 9]


def test_map_matches_builtin_map(backend: Any) -> None:
    pf = parallel(funcs.square, workers=2, backend=backend)
    assert pf.map(range(1000)) == list(map(funcs.square, range(1000)))
    assert pf.map(list(range(50))) == [x * x for x in range(50)]
    assert pf.map(x for x in range(7)) == [x * x for x in range(7)]


def test_several_iterables_zip_to_the_shortest(backend: Any) -> None:
    pf = parallel(funcs.add, workers=2, backend=backend)
    assert pf.map([1, 2, 3], [10, 20]) == [11, 22]
    assert pf.map(range(5), iter(range(100))) == [0, 2, 4, 6, 8]
    assert parallel(pow, backend=backend, workers=2).map([2, 3], [5, 2]) == [32, 9]


def test_map_keywords_reach_every_call(backend: Any) -> None:
    pf = parallel(funcs.add, workers=2, backend=backend)
    assert pf.map([1, 2, 3], b=10, c=100) == [111, 112, 113]


def test_starmap_with_tuples_and_args(backend: Any) -> None:
    pf = parallel(funcs.add, workers=2, backend=backend)
    calls: list[tuple[int, ...] | Args] = [(1, 2), Args(3, b=4), Args(5, c=6), (7,)]
    assert pf.starmap(calls) == [3, 7, 11, 7]
    assert pf.starmap([Args(1, c=1), (1,)], c=5) == [2, 6]  # Args keywords win


def test_unordered_map_is_the_same_multiset(backend: Any) -> None:
    pf = parallel(funcs.square, workers=2, backend=backend, ordered=False)
    out = pf.map(range(500))
    assert sorted(out) == [x * x for x in range(500)]


def test_empty_input_starts_no_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any) -> None:
        raise AssertionError("a pool was leased for empty input")

    monkeypatch.setattr(_pools, "lease", refuse)
    pf = parallel(funcs.square)
    assert pf.map([]) == []
    assert pf.map(iter(())) == []
    assert parallel(funcs.add).map([1, 2], []) == []
    assert list(pf.imap([])) == []
    assert pf.starmap([]) == []


def test_imap_is_lazy_over_an_endless_generator(backend: Any) -> None:
    pulled = 0

    def endless() -> Iterator[int]:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield i

    pf = parallel(funcs.square, workers=2, backend=backend)
    it = pf.imap(endless())
    assert list(itertools.islice(it, 100)) == [x * x for x in range(100)]
    it.close()  # type: ignore[attr-defined]
    # bounded read-ahead: a few chunks per worker, each of at most 1,024 items
    assert pulled <= 100 + 16 * 1024


def test_imap_unordered_gives_every_result(backend: Any) -> None:
    pf = parallel(funcs.square, workers=2, backend=backend)
    assert sorted(pf.imap_unordered(range(300))) == [x * x for x in range(300)]


def test_breaking_out_of_imap_lets_the_next_map_run(backend: Any) -> None:
    pf = parallel(funcs.sleep_for, workers=2, backend=backend)
    for value in pf.imap([0.0] * 3 + [0.5] * 20):
        assert value == 0.0
        break
    assert parallel(funcs.square, workers=2, backend=backend).map(range(10)) == [x * x for x in range(10)]


def test_pipeline_of_two_imaps(backend: Any) -> None:
    first = parallel(funcs.square, workers=2, backend=backend)
    second = parallel(funcs.add, workers=2, backend=backend)
    out = list(second.imap(first.imap(iter(range(200))), b=1))
    assert out == [x * x + 1 for x in range(200)]


def test_submit_returns_futures(backend: Any) -> None:
    pf = parallel(funcs.add, workers=2, backend=backend)
    futures = [pf.submit(i, b=i) for i in range(20)]
    assert [f.result(timeout=60) for f in futures] == [2 * i for i in range(20)]


def test_submit_after_the_submitter_went_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from fanmap import _submit

    monkeypatch.setattr(_submit, "_SUBMIT_IDLE", 0.05)
    pf = parallel(funcs.add, workers=2, backend="thread")
    for burst in range(5):
        futures = [pf.submit(burst, b=i) for i in range(10)]
        assert [f.result(timeout=30) for f in futures] == [burst + i for i in range(10)]
        time.sleep(0.03 * burst)  # sometimes before, sometimes after the idle spell ends


def test_submit_numbers_each_run_of_its_thread_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force the submit thread's run to end after every batch it takes, with calls still
    # queued: the thread starts another run, whose items are numbered from 0 again.
    from fanmap import _submit

    original = _submit._FutureSource.take

    def one_batch_per_run(self: Any, count: int, block: bool) -> Any:
        if getattr(self, "took_once", False):
            return None
        self.took_once = True
        return original(self, 3, block)

    monkeypatch.setattr(_submit._FutureSource, "take", one_batch_per_run)
    pf = parallel(funcs.add, workers=2, backend="thread")
    first = pf.submit(0, b=0)
    futures = [pf.submit(1, b=i) for i in range(9)]
    assert first.result(timeout=30) == 0
    assert [f.result(timeout=30) for f in futures] == [1 + i for i in range(9)]


def test_submit_failure_sets_only_that_future(backend: Any) -> None:
    pf = parallel(funcs.fail_on, workers=2, backend=backend)
    good, bad = pf.submit(1), pf.submit(3)
    assert good.result(timeout=60) == 1
    with pytest.raises(funcs.CustomError, match="bad item 3"):
        bad.result(timeout=60)


def test_options_returns_a_new_function_and_keeps_the_original() -> None:
    pf = parallel(funcs.square, backend="serial")
    other = pf.options(ordered=False, workers=3)
    assert other is not pf
    assert other._options == {"backend": "serial", "ordered": False, "workers": 3}
    assert pf._options == {"backend": "serial"}
    assert other.map([2]) == [4]


def test_pmap_one_call(backend: Any) -> None:
    assert pmap(funcs.square, range(10), backend=backend, workers=2) == [x * x for x in range(10)]
    assert pmap(pow, [2, 3], [5, 2], workers=2, ordered=False, backend=backend) in ([32, 9], [9, 32])
    assert pmap(funcs.psquare, [3], backend=backend) == [9]


def test_lambdas_and_closures_travel_by_value() -> None:
    offset = 10
    assert pmap(lambda x: x + offset, range(5), workers=2) == [10, 11, 12, 13, 14]


def test_decorated_module_function_pickles_by_reference() -> None:
    blob = pickle.dumps(funcs.psquare)
    assert b"by_name" in blob
    assert len(blob) < 200
    assert pickle.loads(blob) is funcs.psquare


def test_pickling_by_value_leaves_live_options_behind() -> None:
    pf = parallel(funcs.square, workers=3, backend="thread", progress=lambda d, t: None)
    clone = pickle.loads(pickle.dumps(pf.options(ordered=False)))
    assert clone._options == {"workers": 3, "backend": "thread", "ordered": False}


def test_non_module_function_pickles_by_value() -> None:
    pf = parallel(funcs.square).options(workers=1)
    clone = pickle.loads(pickle.dumps(pf))
    assert clone(4) == 16
    assert clone._options == {"workers": 1}


def test_nested_map_in_a_worker_runs_serially() -> None:
    outer = parallel(funcs.nested_map, workers=2)
    assert outer.map([3, 4]) == [[0, 1, 4], [0, 1, 4, 9]]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda pf: pf.map(5), "the argument of map\\(\\) must be iterable, not int"),
        (lambda pf: pf.map([1], 5), "argument 2 of map\\(\\) must be iterable"),
        (lambda pf: pf.starmap(None), "the argument of starmap\\(\\) must be iterable"),
        (lambda pf: pf.imap(3.5), "must be iterable, not float"),
        (lambda pf: pf.map(), "needs at least one iterable"),
    ],
)
def test_non_iterable_input_is_a_type_error(call: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call(parallel(funcs.square))


def test_on_error_return_and_skip(backend: Any) -> None:
    pf = parallel(funcs.fail_on, workers=2, backend=backend)
    returned = pf.options(on_error="return").map(range(6))
    failure = returned[3]
    assert isinstance(failure, Failure)
    assert isinstance(failure.exception, funcs.CustomError)
    assert (failure.index, failure.args) == (3, (3,))
    assert returned[:3] + returned[4:] == [0, 1, 2, 4, 5]
    assert pf.options(on_error="skip").map(range(6)) == [0, 1, 2, 4, 5]
    assert list(pf.options(on_error="skip").imap(range(6))) == [0, 1, 2, 4, 5]


def test_retries_for_raised_exceptions(backend: Any, tmp_path: Any) -> None:
    path = str(tmp_path / "count")
    pf = parallel(funcs.flaky, workers=1, backend=backend, retries=2)
    assert pf.map([path], failures=2) == ["ok"]
    os.remove(path)
    with pytest.raises(ConnectionError, match="attempt 3 failed"):
        pf.options(retries=2).map([path], failures=3)


def test_retry_on_limits_what_is_retried(backend: Any, tmp_path: Any) -> None:
    path = str(tmp_path / "count")
    pf = parallel(funcs.flaky, workers=1, backend=backend, retries=3, retry_on=ValueError)
    with pytest.raises(ConnectionError, match="attempt 1 failed"):
        pf.map([path], failures=1)


def test_progress_callable_counts_items(backend: Any) -> None:
    seen: list[tuple[int, int | None]] = []
    pf = parallel(funcs.square, workers=2, backend=backend, progress=lambda d, t: seen.append((d, t)))
    pf.map(range(1000))
    assert seen[-1] == (1000, 1000)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    mapped: list[tuple[int, int | None]] = []
    pf.options(progress=lambda d, t: mapped.append((d, t))).map(x for x in range(10))
    assert mapped[-1] == (10, 10)  # map reads a generator first, so it knows the total
    streamed: list[tuple[int, int | None]] = []
    list(pf.options(progress=lambda d, t: streamed.append((d, t))).imap(x for x in range(10)))
    assert streamed[-1] == (10, None)  # imap never does


def test_repr_names_function_and_options() -> None:
    assert repr(parallel(funcs.square, workers=2)) == "<parallel square workers=2>"


def test_public_names_match_all() -> None:
    exported = {name for name in dir(fanmap) if not name.startswith("_")}
    modules = {"config"} - set(fanmap.__all__)
    assert exported - modules - {"annotations"} == set(fanmap.__all__)


def test_thread_timeout_abandons_the_slow_call() -> None:
    pf = parallel(funcs.sleep_on, workers=2, backend="thread", timeout=0.5, on_error="return")
    out = pf.map(range(4), bad=1, seconds=3)
    assert isinstance(out[1], Failure)
    assert isinstance(out[1].exception, fanmap.TaskTimeoutError)
    assert "abandoned" in str(out[1].exception)
    assert [out[0], out[2], out[3]] == [0, 2, 3]


def _gatherings(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The caller's pauses to let many threads' results gather (one entry each)."""
    import threading
    import time

    from fanmap._backends import _thread

    pauses: list[float] = []
    sleep, caller = time.sleep, threading.current_thread()

    def counted(seconds: float) -> None:
        if seconds == _thread._GATHER and threading.current_thread() is caller:
            pauses.append(seconds)
        sleep(seconds)

    monkeypatch.setattr(time, "sleep", counted)
    return pauses


def test_threads_on_fast_one_item_chunks_never_wait_for_the_caller_to_gather(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A timeout puts every call in a chunk of its own; 4 threads finish their queued
    # chunks in microseconds, so a pause to gather results would leave them idle.
    pauses = _gatherings(monkeypatch)
    pf = parallel(funcs.square, workers=4, backend="thread", timeout=30)
    assert pf.map(range(3000)) == [x * x for x in range(3000)]
    assert pauses == []


def test_hundreds_of_threads_on_slow_calls_let_results_gather(monkeypatch: pytest.MonkeyPatch) -> None:
    # 64 threads end 20 ms calls together, round after round, with a chunk queued each:
    # the caller gathers what ends rather than wake for every chunk.
    pauses = _gatherings(monkeypatch)
    pf = parallel(funcs.sleep_for, workers=64, backend="thread")
    assert pf.map([0.02] * 640) == [0.02] * 640
    assert pauses


_started: list[int] = []


def _note_start(x: int) -> int:
    _started.append(x)  # list.append is atomic under the GIL
    time.sleep(0.01)
    return x


def test_hundreds_of_threads_start_their_first_calls_while_the_caller_hands_out_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The caller wakes 256 threads with a chunk each, then queues 256 more: holding the
    # GIL all along, it would let no call start before it waits. It lets the GIL go
    # every few threads it wakes, so calls start while it goes on.
    from fanmap._backends._thread import ThreadPool

    started_by_submit: list[int] = []
    submit = ThreadPool.submit

    def counted(self: ThreadPool, chunk: Any) -> int | None:
        started_by_submit.append(len(_started))
        return submit(self, chunk)

    monkeypatch.setattr(ThreadPool, "submit", counted)
    _started.clear()
    pf = parallel(_note_start, workers=256, backend="thread")
    assert pf.map(range(600)) == list(range(600))
    assert started_by_submit[255] > 0, started_by_submit[:256]
    fanmap.shutdown()


def test_an_abandoned_imap_gives_its_pool_back() -> None:
    import gc

    from fanmap._backends import get_backend

    # max_tasks_per_worker gives this test a pool key of its own
    pf = parallel(funcs.square, workers=2, max_tasks_per_worker=10**6 + 11)
    key = get_backend("process").pool_key(pf._resolve())
    it = pf.imap(range(10_000))
    next(it)
    assert not _pools._idle.get(key)  # leased by the imap
    del it  # closed by the garbage collector: GeneratorExit
    gc.collect()
    [pool] = _pools._idle[key]  # given back warm, not closed
    assert pool.usable
    assert pf.map([3]) == [9]
