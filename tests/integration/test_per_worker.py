"""@per_worker: made once per worker, kept across maps, torn down when a worker stops,
and a clear WorkerInitError when a factory fails or hangs. Counted through files."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

import fanmap
from fanmap import SharedStateError, Value, WorkerInitError, parallel, per_worker, shared_state
from tests import funcs


def lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


def make(tmp_path: Path, **options: Any) -> tuple[Any, Path, Path]:
    loads, conns = tmp_path / "loads", tmp_path / "conns"
    fn = parallel(
        per_worker(
            model=functools.partial(funcs.record_load, str(loads)),
            db=functools.partial(funcs.record_connection, str(conns)),
        )(funcs.with_values),
        **options,
    )
    return fn, loads, conns


def test_each_factory_runs_once_per_worker_across_maps(tmp_path: Path, start_method: Any) -> None:
    # max_tasks_per_worker: a pool of this test's own
    fn, loads, conns = make(tmp_path, workers=2, start_method=start_method, max_tasks_per_worker=10**7)
    pids: set[int] = set()
    for _ in range(3):
        out = fn.map(range(20))
        assert [o[0] for o in out] == list(range(20))
        pids |= {o[3] for o in out}
        assert all(o[1] == o[3] and o[2] == f"conn-{o[3]}" for o in out)  # made in that worker
    assert sorted(lines(loads)) == sorted(f"load {p}" for p in pids)
    assert sorted(lines(conns)) == sorted(f"open {p}" for p in pids)
    fanmap.shutdown()
    assert sorted(line for line in lines(conns) if line.startswith("close")) == sorted(
        f"close {p}" for p in pids
    )


@pytest.mark.parametrize("backend", ["thread", "serial"])
def test_threads_make_their_own_and_serial_makes_one_in_the_caller(tmp_path: Path, backend: str) -> None:
    fn, loads, conns = make(tmp_path, workers=3, backend=backend)
    for _ in range(3):
        fn.map(range(30))
    made = lines(loads)
    assert 1 <= len(made) <= (3 if backend == "thread" else 1)
    assert len(set(made)) == 1  # threads share the process id
    fanmap.shutdown()
    assert len([line for line in lines(conns) if line.startswith("close")]) == len(made)


def test_a_plain_call_and_options_copies_share_the_values(tmp_path: Path) -> None:
    fn, loads, _ = make(tmp_path, workers=1, backend="serial")
    fn(1)
    fn.options(ordered=False)(2)
    fn.options(ordered=False).map([3])
    assert len(lines(loads)) == 1
    fanmap.shutdown()


def test_recycling_tears_down_and_makes_again(tmp_path: Path) -> None:
    fn, loads, conns = make(tmp_path, workers=1, max_tasks_per_worker=5, chunksize=5)
    fn.map(range(15))
    fanmap.shutdown()
    opened = [line for line in lines(conns) if line.startswith("open")]
    closed = [line for line in lines(conns) if line.startswith("close")]
    assert len(opened) == 3  # three workers in turn, each recycled after 5 calls
    assert len(closed) == 3
    assert len(lines(loads)) == 3


def test_a_failing_factory_stops_the_map_whatever_the_policy(tmp_path: Path, start_method: Any) -> None:
    starts = tmp_path / "starts"
    fn = parallel(
        per_worker(model=functools.partial(funcs.failing_factory, str(starts)))(funcs.with_model),
        workers=2,
        start_method=start_method,
        on_error="return",
        retries=3,
        max_tasks_per_worker=10**7 + 1,
    )
    with pytest.raises(WorkerInitError, match=r"factory model=failing_factory raised ValueError") as info:
        fn.map(range(10))
    cause = info.value.__cause__
    assert isinstance(cause, ValueError)
    assert cause.__traceback__ is not None
    frames = []
    tb: Any = cause.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "failing_factory" in frames  # the worker's real frames
    assert any("no error policy applies" in note for note in info.value.__notes__)
    assert 1 <= len(lines(starts)) <= 2  # once per worker at most: no respawn loop
    with pytest.raises(WorkerInitError):
        fn.map(range(4))  # the next map tries again
    assert len(lines(starts)) <= 4


def test_a_hanging_factory_is_stopped_by_its_own_timeout(start_method: Any) -> None:
    fn = parallel(
        per_worker(model=functools.partial(funcs.sleeping_factory, 60.0), timeout=1.0)(funcs.with_model),
        workers=1,
        start_method=start_method,
        max_tasks_per_worker=10**7 + 2,
    )
    with pytest.raises(
        WorkerInitError, match=r"model=sleeping_factory did not finish within the timeout of 1s"
    ):
        fn.map([1])


def test_a_hanging_factory_is_stopped_by_its_own_timeout_in_a_thread() -> None:
    # A thread cannot be stopped: it is abandoned, and the map fails at the timeout.
    fn = parallel(
        per_worker(model=functools.partial(funcs.sleeping_factory, 3.0), timeout=0.3)(funcs.with_model),
        workers=1,
        backend="thread",
        max_tasks_per_worker=10**7 + 4,
    )
    with pytest.raises(WorkerInitError, match=r"did not finish within the timeout of 0.3s"):
        fn.map([1])


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_factory_time_does_not_count_against_the_calls_timeout(backend: Any) -> None:
    fn = parallel(
        per_worker(model=functools.partial(funcs.sleeping_factory, 1.5))(funcs.slow_with_model),
        workers=1,
        timeout=1.0,
        backend=backend,
        max_tasks_per_worker=10**7 + 3,
    )
    assert fn.map([0.1]) == [0.1]


def test_mistakes_are_refused_before_any_work() -> None:
    with pytest.raises(TypeError, match="takes a factory"):
        per_worker(model=3)  # type: ignore[arg-type]
    with pytest.raises(SharedStateError, match="no parameter 'modle' to receive the per-worker value"):
        per_worker(modle=lambda: 1)(funcs.with_model)
    counter = Value("i", 0)
    with pytest.raises(SharedStateError, match="given by @shared_state already"):
        per_worker(model=lambda: 1)(shared_state(model=counter)(funcs.with_model))
    with pytest.raises(SharedStateError, match="given by @per_worker already"):
        shared_state(model=counter)(per_worker(model=lambda: 1)(funcs.with_model))
    fn = parallel(per_worker(model=lambda: 1)(funcs.with_model), backend="serial")
    with pytest.raises(SharedStateError, match="made in each worker by @per_worker"):
        fn.map([1], model=2)

    async def make() -> int:
        return 1

    with pytest.raises(TypeError, match=r"async factories.*is a plain function"):
        per_worker(model=make)(funcs.with_model)
    with pytest.raises(TypeError, match=r"async factories.*is a plain function"):
        per_worker(model=make)(parallel(funcs.with_model))


def test_decorators_stack_in_any_order(tmp_path: Path) -> None:
    counter = Value("i", 0)
    load = functools.partial(funcs.record_load, str(tmp_path / "loads"))

    def both(x: int, *, model: int, hits: Value[int]) -> int:
        hits.add(1)
        return model

    orders = [
        parallel(per_worker(model=load)(shared_state(hits=counter)(both)), backend="thread", workers=2),
        parallel(shared_state(hits=counter)(per_worker(model=load)(both)), backend="thread", workers=2),
        per_worker(model=load)(parallel(shared_state(hits=counter)(both), backend="thread", workers=2)),
        shared_state(hits=counter)(per_worker(model=load)(parallel(both, backend="thread", workers=2))),
    ]
    for fn in orders:
        assert len(set(fn.map(range(10)))) == 1
    assert counter.value == 40
