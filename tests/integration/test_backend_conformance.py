"""What every backend's pool must do, checked the same way for each.

A new backend is checked by adding one line to BACKENDS: its name, whether its workers
can crash apart from the caller, and whether it enforces ``timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest

from fanmap._args import CallMode
from fanmap._backends import Pool, get_backend
from fanmap._calls import Calls
from fanmap._chunk import Chunk, Done, Event, Lost, RunSpec
from fanmap._config import resolve
from tests import funcs
from tests.conftest import HAS_DASK


class Traits(NamedTuple):
    name: str
    crashes_alone: bool  # a call that kills its worker is reported as that chunk's crash
    enforces_timeout: bool


BACKENDS = [
    Traits("process", crashes_alone=True, enforces_timeout=True),
    Traits("thread", crashes_alone=False, enforces_timeout=True),  # a crash ends the process
    Traits("serial", crashes_alone=False, enforces_timeout=False),
]
if HAS_DASK:  # a lost Dask worker is tested on a real cluster in test_dask.py
    BACKENDS.append(Traits("dask", crashes_alone=False, enforces_timeout=True))


@pytest.fixture(scope="module", params=BACKENDS, ids=lambda t: t.name)
def opened(request: pytest.FixtureRequest) -> Iterator[tuple[Traits, Pool]]:
    traits: Traits = request.param
    backend = get_backend(traits.name)
    pool = backend.open_pool(resolve({"workers": 2, "backend": traits.name}))
    yield traits, pool
    pool.close()


def spec(fn: Any, mode: CallMode = CallMode.ONE, timeout: float | None = None, **kwargs: Any) -> RunSpec:
    return RunSpec(Calls(fn, mode, kwargs), fn, timeout)


def drive(pool: Pool, run: RunSpec, chunks: list[Chunk]) -> list[Event]:
    """Run chunks through the pool as the engine would; return the events by chunk start."""
    pool.begin(run)
    events: list[Event] = []
    queued = list(chunks)
    waiting = 0
    deadline = time.monotonic() + 120
    while queued or waiting:
        while queued and pool.room(2) > 0:
            pool.submit(queued.pop(0))
            waiting += 1
        for event in pool.wait(0.5):
            if isinstance(event, Done):
                assert event.ran >= 0, "a Done says how many items ran"
                event.decode()  # a process worker's results arrive still pickled
                assert event.encoded is None
                assert event.ran == len(event.results)
            events.append(event)
            waiting -= 1
        assert time.monotonic() < deadline, "the pool never reported some chunks"
    pool.end(abort=False)
    return sorted(events, key=lambda e: e.chunk.start)


def test_a_chunk_comes_back_whole_and_in_order(opened: tuple[Traits, Pool]) -> None:
    _, pool = opened
    events = drive(pool, spec(funcs.add, c=100), [Chunk(0, [1, 2, 3]), Chunk(3, [4, 5])])
    assert [type(e) for e in events] == [Done, Done]
    done = [e for e in events if isinstance(e, Done)]
    assert done[0].results == [101, 102, 103]
    assert done[1].results == [104, 105]
    assert all(d.errors is None and d.elapsed >= 0 and d.worker for d in done)


def test_every_mode_of_calling(opened: tuple[Traits, Pool]) -> None:
    _, pool = opened
    [star] = drive(pool, spec(funcs.add, CallMode.STAR), [Chunk(0, [(1, 2), (3, 4)])])
    assert isinstance(star, Done)
    assert star.results == [3, 7]


def test_failures_are_reported_by_position_with_their_own_type(opened: tuple[Traits, Pool]) -> None:
    _, pool = opened
    [event] = drive(pool, spec(funcs.fail_on, bad=2), [Chunk(0, [1, 2, 3, 2])])
    assert isinstance(event, Done)
    assert event.errors is not None
    assert sorted(event.errors) == [1, 3]
    assert isinstance(event.errors[1], funcs.CustomError)
    assert event.results[0] == 1
    assert event.results[2] == 3


def test_stop_on_error_ends_a_chunk_at_its_first_failure(opened: tuple[Traits, Pool]) -> None:
    _, pool = opened
    run = RunSpec(Calls(funcs.fail_on, CallMode.ONE, {"bad": 2}, stop_on_error=True), funcs.fail_on, None)
    [event] = drive(pool, run, [Chunk(0, [1, 2, 3])])
    assert isinstance(event, Done)
    assert len(event.results) == 2


def test_the_pool_serves_run_after_run_even_after_an_abort(opened: tuple[Traits, Pool]) -> None:
    _, pool = opened
    pool.begin(spec(funcs.square))
    pool.submit(Chunk(0, [1]))
    pool.end(abort=True)
    assert pool.usable
    [event] = drive(pool, spec(funcs.square), [Chunk(0, [7])])
    assert isinstance(event, Done)
    assert event.results == [49]


def test_an_abort_gives_back_every_chunk_slot(opened: tuple[Traits, Pool]) -> None:
    # Chunks finished, taken, running or queued when a map is left: none stays counted.
    traits, pool = opened
    if traits.name == "process":
        pytest.skip("its workers that hold chunks are stopped, and start again as chunks come")
    full = pool.room(1)
    pool.begin(spec(funcs.sleep_for))
    sent = 0
    while pool.room(2) > 0:
        pool.submit(Chunk(sent, [0.05]))
        sent += 1
    time.sleep(0.2)  # threads finish chunks and take queued ones, unread by the caller
    pool.end(abort=True)
    assert pool.room(1) == full
    [event] = drive(pool, spec(funcs.square), [Chunk(0, [7])])
    assert isinstance(event, Done)


def test_a_queued_chunk_is_timed_from_when_it_starts(opened: tuple[Traits, Pool]) -> None:
    # 6 calls of 1 s on 2 workers, queued 2 per worker: the later ones wait about 1 s
    # before they start, so timing them from submission (2 s) would pass the 1.6 s limit.
    # (Before the test below: a Dask worker cannot stop the call that test abandons.)
    traits, pool = opened
    if not traits.enforces_timeout:
        pytest.skip(f"the {traits.name} backend does not enforce timeout")
    events = drive(pool, spec(funcs.sleep_for, timeout=1.6), [Chunk(i, [1.0]) for i in range(6)])
    assert [type(e) for e in events] == [Done] * 6


def test_a_call_past_the_timeout_is_reported(opened: tuple[Traits, Pool]) -> None:
    traits, pool = opened
    if not traits.enforces_timeout:
        pytest.skip(f"the {traits.name} backend does not enforce timeout")
    events = drive(
        pool, spec(funcs.sleep_on, timeout=0.5, bad=2, seconds=30.0), [Chunk(0, [1]), Chunk(1, [2])]
    )
    assert isinstance(events[0], Done)
    assert isinstance(events[1], Lost)
    assert events[1].kind == "timeout"


def test_a_crash_fails_only_its_chunk(opened: tuple[Traits, Pool]) -> None:
    traits, pool = opened
    if not traits.crashes_alone:
        pytest.skip(f"the {traits.name} backend has no worker a call can kill on its own")
    events = drive(pool, spec(funcs.kill_self_on, bad=2), [Chunk(0, [1]), Chunk(1, [2]), Chunk(2, [3])])
    assert [type(e) for e in events] == [Done, Lost, Done]
    lost = events[1]
    assert isinstance(lost, Lost)
    assert lost.kind == "crash"
    assert lost.exitcode == -9
