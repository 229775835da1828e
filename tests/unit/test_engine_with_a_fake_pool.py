"""The engine driven by a fake pool, without processes: ordering, the window, retries,
the error policies and crash attribution are the engine's decisions alone."""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import pytest

from fanmap import Args, Failure, SerializationError, TaskTimeoutError, WorkerCrashedError
from fanmap._args import CallMode
from fanmap._calls import Calls, call_chunk
from fanmap._chunk import Chunk, Done, Event, Lost, RunSpec
from fanmap._config import Options, resolve
from fanmap._engine import execute
from fanmap._sources import Source

Outcome = Callable[[Calls, Chunk], Event]


def ran(calls: Calls, chunk: Chunk) -> Event:
    results, errors, _ = call_chunk(calls, chunk.items)
    return Done(chunk, results, errors, 0.001, "fake worker")


class FakePool:
    """Runs chunks in the caller when asked; completes them in the order it is told."""

    target_seconds = None

    chunks_together = False
    queue_shared = False
    usable = False  # never kept warm: every test gets a fresh one

    def __init__(self, workers: int, outcome: Outcome, lifo: bool) -> None:
        self.workers = workers
        self.outcome = outcome
        self.lifo = lifo
        self.pending: list[Chunk] = []
        self.submitted: list[Chunk] = []
        self.most_pending = 0
        self.calls: Calls | None = None
        self.aborted: bool | None = None

    def begin(self, spec: RunSpec) -> None:
        self.calls = spec.calls

    def room(self, depth: int) -> int:
        return self.workers * depth - len(self.pending)

    def limit(self) -> int | None:
        return None

    def submit(self, chunk: Chunk) -> int | None:
        self.pending.append(chunk)
        self.submitted.append(chunk)
        self.most_pending = max(self.most_pending, len(self.pending))
        return None

    def wait(self, timeout: float | None) -> list[Event]:
        if not self.pending:
            return []
        chunk = self.pending.pop() if self.lifo else self.pending.pop(0)
        assert self.calls is not None
        return [self.outcome(self.calls, chunk)]

    def end(self, *, abort: bool) -> None:
        self.aborted = abort

    def close(self) -> None:
        pass


class FakeBackend:
    name = "fake"
    shares_memory = True

    def __init__(self, pool: FakePool) -> None:
        self.pool = pool

    def pool_key(self, options: Options) -> Hashable:
        return ("fake", id(self))

    def open_pool(self, options: Options) -> FakePool:
        return self.pool


def run(
    monkeypatch: pytest.MonkeyPatch,
    fn: Callable[..., Any],
    items: Any,
    *,
    outcome: Outcome = ran,
    lifo: bool = False,
    window: int | None = None,
    mode: CallMode = CallMode.ONE,
    kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[list[Any], FakePool]:
    pool = FakePool(2, outcome, lifo)
    monkeypatch.setattr("fanmap._engine.get_backend", lambda _: FakeBackend(pool))
    out: list[Any] = []
    for _, values in execute(
        fn, fn, mode, Source(items), kwargs or {}, resolve(options), window=window, label="f"
    ):
        out.extend(values)
    return out, pool


def square(x: int) -> int:
    return x * x


def test_results_come_in_input_order_whatever_order_chunks_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    out, pool = run(monkeypatch, square, list(range(50)), lifo=True, chunksize=3)
    assert out == [x * x for x in range(50)]
    assert pool.aborted is False


def test_unordered_results_come_as_chunks_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = run(monkeypatch, square, list(range(50)), lifo=True, chunksize=3, ordered=False)
    assert sorted(out) == [x * x for x in range(50)]
    assert out != sorted(out)


def test_a_lazy_run_keeps_a_bounded_window_over_endless_input(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = FakePool(2, ran, lifo=True)
    monkeypatch.setattr("fanmap._engine.get_backend", lambda _: FakeBackend(pool))
    pulled = itertools.count()

    def source() -> Iterator[int]:
        for i in itertools.count():
            next(pulled)
            yield i

    blocks = execute(square, square, CallMode.ONE, Source(source()), {}, resolve({"chunksize": 5}), window=4)
    got: list[int] = []
    for _, values in blocks:
        got.extend(values)
        if len(got) >= 100:
            break
    blocks.close()  # type: ignore[attr-defined]
    assert got[:100] == [x * x for x in range(100)]
    assert pool.most_pending <= 4  # in flight and waiting for their turn, together
    assert next(pulled) <= 100 + 4 * 5 + 5
    assert pool.aborted is True  # leaving early stops what is queued


def flaky_counter() -> Callable[[int], int]:
    tries: dict[int, int] = {}

    def flaky(x: int) -> int:
        tries[x] = tries.get(x, 0) + 1
        if x % 3 == 0 and tries[x] <= 2:
            raise ValueError(f"try {tries[x]} of {x}")
        return x

    return flaky


def test_raised_exceptions_are_retried_by_the_engine_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    out, pool = run(monkeypatch, flaky_counter(), list(range(10)), chunksize=4, retries=2)
    assert out == list(range(10))
    runs = [x for chunk in pool.submitted for x in chunk.items]
    assert {x: runs.count(x) for x in range(10)} == {x: 3 if x % 3 == 0 else 1 for x in range(10)}
    again = [c for c in pool.submitted if c.items[0] % 3 == 0 and runs.count(c.items[0]) == 3]
    assert all(len(c.items) == 1 for c in again if c is not pool.submitted[0])  # tried alone
    assert pool.calls is not None
    assert pool.calls.stop_on_error is False


def test_retries_run_out_and_retry_on_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = run(monkeypatch, flaky_counter(), [3], retries=1, on_error="return")
    assert isinstance(out[0], Failure)
    assert str(out[0].exception) == "try 2 of 3"
    out, pool = run(monkeypatch, flaky_counter(), [3], retries=5, retry_on=KeyError, on_error="return")
    assert isinstance(out[0], Failure)
    assert len(pool.submitted) == 1  # a ValueError is not a KeyError: not tried again


def fails_on_two(x: int, scale: int = 1) -> int:
    if x == 2:
        raise ValueError("two")
    return x * scale


def test_the_error_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = run(monkeypatch, fails_on_two, [1, 2, 3], kwargs={"scale": 10}, on_error="return")
    assert out[0] == 10
    assert out[2] == 30
    failure = out[1]
    assert isinstance(failure, Failure)
    assert (failure.index, failure.args, failure.kwargs) == (1, (2,), {"scale": 10})
    assert run(monkeypatch, fails_on_two, [1, 2, 3], on_error="skip")[0] == [1, 3]
    with pytest.raises(ValueError, match="two") as info:
        run(monkeypatch, fails_on_two, [1, 2, 3], chunksize=3)
    assert info.value.__notes__ == ["fanmap: raised by item 1 (2,) in fake worker"]


def test_fail_fast_asks_workers_to_stop_at_the_first_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        run(monkeypatch, fails_on_two, [1, 2, 3])
    # ...and only then: with retries a later failure must not cut the chunk short
    _, pool = run(monkeypatch, fails_on_two, [1, 3], retries=1)
    assert pool.calls is not None
    assert pool.calls.stop_on_error is False


def test_a_chunk_stopped_short_has_the_rest_run_again(monkeypatch: pytest.MonkeyPatch) -> None:
    def stops_at_first_failure(calls: Calls, chunk: Chunk) -> Event:
        results, errors, _ = call_chunk(Calls(calls.fn, calls.mode, calls.kwargs, True), chunk.items)
        return Done(chunk, results, errors, 0.001, "fake worker")

    out, _ = run(
        monkeypatch,
        fails_on_two,
        list(range(6)),
        outcome=stops_at_first_failure,
        chunksize=6,
        on_error="return",
    )
    assert [o if not isinstance(o, Failure) else "F" for o in out] == [0, 1, "F", 3, 4, 5]


def crash_on(culprit: int, kind: str = "crash") -> Outcome:
    def outcome(calls: Calls, chunk: Chunk) -> Event:
        if culprit in chunk.items:
            return Lost(chunk, kind, "worker 0 (pid 1) was killed by SIGKILL", -9, "worker 0")
        return ran(calls, chunk)

    return outcome


def test_a_crash_is_blamed_on_the_item_that_caused_it(monkeypatch: pytest.MonkeyPatch) -> None:
    out, pool = run(monkeypatch, square, list(range(8)), outcome=crash_on(5), chunksize=4, on_error="return")
    assert [o for i, o in enumerate(out) if i != 5] == [x * x for x in range(8) if x != 5]
    failure = out[5]
    assert isinstance(failure, Failure)
    assert isinstance(failure.exception, WorkerCrashedError)
    assert failure.exception.exitcode == -9
    assert "while running item 5 (5,)" in str(failure.exception)
    # chunks: [0] (the first chunk measures a call), [1..4], [5..7]: the lost batch is
    # run again item by item, with no try counted
    singles = sorted(c.start for c in pool.submitted[1:] if len(c.items) == 1)
    assert singles == [5, 6, 7]


def test_crashes_and_timeouts_follow_retries_and_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    out, pool = run(monkeypatch, square, [5], outcome=crash_on(5, "timeout"), retries=2, on_error="return")
    assert isinstance(out[0], Failure)
    assert isinstance(out[0].exception, TaskTimeoutError)
    assert len(pool.submitted) == 3
    with pytest.raises(WorkerCrashedError) as info:
        run(monkeypatch, square, [5], outcome=crash_on(5))
    assert 'use on_error="return" or "skip"' in info.value.__notes__[0]


def test_chunks_queued_behind_a_lost_one_run_again_without_a_try(monkeypatch: pytest.MonkeyPatch) -> None:
    lost_once: list[int] = []

    def outcome(calls: Calls, chunk: Chunk) -> Event:
        if chunk.start == 2 and not lost_once:
            lost_once.append(1)
            return Lost(chunk, "unstarted", "queued behind a crash", None, "worker 0")
        return ran(calls, chunk)

    out, _ = run(monkeypatch, square, list(range(6)), outcome=outcome, chunksize=2, retries=0)
    assert out == [x * x for x in range(6)]


def test_starmap_items_and_args(monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = run(
        monkeypatch, fails_on_two, [(1,), Args(3, scale=2), 5], mode=CallMode.ARGS, on_error="return"
    )
    assert out[:2] == [1, 6]
    assert isinstance(out[2], Failure)
    assert "tuple of arguments" in str(out[2].exception)


class PicklingPool(FakePool):
    """Reports every pending chunk at once, its results still pickled, as a process pool
    does; the chunk holding ``bad`` comes back with results that cannot be unpickled."""

    def __init__(self, bad: int) -> None:
        super().__init__(2, ran, lifo=False)
        self.bad = bad

    def wait(self, timeout: float | None) -> list[Event]:
        assert self.calls is not None
        events: list[Event] = []
        for chunk in self.pending:
            done = ran(self.calls, chunk)
            assert isinstance(done, Done)
            encoded = b"not a pickle" if self.bad in chunk.items else pickle.dumps(done.results)
            done.results, done.encoded = [], encoded
            events.append(done)
        self.pending.clear()
        return events


def test_results_back_before_ones_that_cannot_be_unpickled_are_handed_on_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = PicklingPool(bad=3)
    monkeypatch.setattr("fanmap._engine.get_backend", lambda _: FakeBackend(pool))
    got: list[int] = []
    options = resolve({"chunksize": 1})

    def consume() -> None:
        for _, values in execute(
            square, square, CallMode.ONE, Source(list(range(8))), {}, options, window=None
        ):
            got.extend(values)

    with pytest.raises(SerializationError, match="the results of item 3 came back"):
        consume()
    assert got == [0, 1, 4]  # item 2 came back with item 3, before it in the input
