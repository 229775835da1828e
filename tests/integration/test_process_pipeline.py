"""The process backend keeps its workers fed: the caller hands a worker its next chunk
before it unpickles the results that worker sent back."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import fanmap
from fanmap import Failure, SerializationError, parallel
from fanmap._args import CallMode
from fanmap._backends._process import ProcessPool
from fanmap._calls import Calls
from fanmap._chunk import Chunk, Done, RunSpec
from fanmap._config import resolve
from tests import afuncs, funcs


def test_the_next_chunk_is_sent_before_the_last_results_are_unpickled(tmp_path: Path) -> None:
    # One worker, one call per chunk: rebuilding result i in the caller waits for call
    # i + 1 to start in the worker, which it can only do if the caller sent it first.
    last = 5
    run = parallel(funcs.start_and_mark, backend="process", workers=1, chunksize=1)
    results: list[Any] = run.map(range(last + 1), folder=str(tmp_path), last=last)
    assert results == [(i, True) for i in range(last + 1)]  # rebuilt by funcs.rebuild_marker


def test_results_that_cannot_be_rebuilt_fail_their_items_only() -> None:
    run = parallel(funcs.return_unpickles_badly, backend="process", workers=1, chunksize=1)
    out = run.options(on_error="return").map(range(3))
    assert out[0] == 0
    assert out[2] == 2
    assert isinstance(out[1], Failure)
    assert isinstance(out[1].exception, SerializationError)
    assert "the results of item 1 came back from worker" in str(out[1].exception)
    with pytest.raises(SerializationError, match="cannot be rebuilt here"):
        run.map(range(3))


def test_a_new_pool_starts_a_worker_only_when_a_chunk_needs_one() -> None:
    # A fork or spawn takes a while: the first chunk goes to the first worker before
    # the second starts, and a short map starts no more workers than it has chunks.
    pool = ProcessPool(resolve({"workers": 3, "backend": "process"}))

    def started() -> int:
        return sum(w is not None for w in pool._slots)

    try:
        pool.begin(RunSpec(Calls(funcs.square, CallMode.ONE, {}), funcs.square, None))
        assert started() == 0
        assert pool.room(1) == 3  # the ones not started yet count
        pool.submit(Chunk(0, [2]))
        assert started() == 1
        assert pool.room(1) == 2  # asking starts nothing
        assert started() == 1
        pool.submit(Chunk(1, [3]))  # the first is busy: the second starts for it
        assert started() == 2
        got: dict[int, Any] = {}
        deadline = time.monotonic() + 60
        while len(got) < 2 and time.monotonic() < deadline:
            for event in pool.wait(1.0):
                assert isinstance(event, Done)
                event.decode()
                got[event.chunk.start] = event.results
        assert got == {0: [4], 1: [9]}
        assert started() == 2  # waiting starts nothing either
        pool.submit(Chunk(2, [4]))  # a free worker takes it: none starts
        assert started() == 2
        pool.end(abort=True)
    finally:
        pool.close()


def test_an_ordered_imap_whose_retries_fill_the_window_still_ends() -> None:
    # The blocks waiting in the orderer for retried items filled the read-ahead window,
    # and the retries (read already) waited for the window: the map spun forever.
    run = parallel(funcs.fail_odd, workers=2, chunksize=20)
    out = list(run.options(on_error="skip", retries=1).imap(range(200)))
    assert out == list(range(0, 200, 2))


def test_results_back_before_a_failure_are_handed_out_before_it_is_raised() -> None:
    run = parallel(funcs.fail_on, workers=1, chunksize=1)
    got: list[int] = []

    def consume() -> None:
        for value in run.imap(range(6), bad=2):
            got.append(value)
            if value == 0:
                time.sleep(0.3)  # items 1 and 2 come back meanwhile, together

    with pytest.raises(funcs.CustomError):
        consume()
    assert got == [0, 1]


def test_an_async_result_that_cannot_be_rebuilt_fails_its_item_only() -> None:
    # It used to hang the map: the whole reply could not be read, and its chunk was lost.
    run = parallel(afuncs.return_unpickles_badly, backend="process", workers=1)
    out = run.options(on_error="return").map(range(3))
    assert out[0] == 0
    assert out[2] == 2
    assert isinstance(out[1], Failure)
    assert isinstance(out[1].exception, SerializationError)


def test_prints_of_a_process_the_function_forked_never_land_inside_a_reply(
    capfd: pytest.CaptureFixture[str],
) -> None:
    run = parallel(funcs.fork_chatter, workers=2, chunksize=1)
    for _ in range(3):
        assert run.map(range(400), seconds=0.5) == list(range(400))
    assert "child line 0" in capfd.readouterr().out


def test_a_worker_thread_that_prints_without_pause_does_not_hold_up_the_map(tmp_path: Path) -> None:
    # The caller read a worker's messages until there were none, which never happened
    # while the worker sent them faster than the caller could hand them on.
    flag = tmp_path / "stop"
    run = parallel(funcs.print_until, workers=2, chunksize=2)
    began = time.monotonic()
    try:
        assert run.map(range(2000), flag=str(flag)) == list(range(2000))
        # It did not wait for the chatter to end (after a minute): the caller reads its
        # log records and prints as they come, and the chunks' replies between them.
        assert time.monotonic() - began < 45
    finally:
        flag.touch()
        fanmap.shutdown()  # the worker and its thread go


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_script_s_one_item_map_starts_one_worker(tmp_path: Path, method: str) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        "import multiprocessing\n"
        "from fanmap import parallel\n"
        "def double(x):\n"
        "    return 2 * x\n"
        f"run = parallel(double, workers=4, start_method={method!r})\n"
        "print(run.map([1]), len(multiprocessing.active_children()))\n"
        "print(len(run.map(range(100))), len(multiprocessing.active_children()))\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    first, second = proc.stdout.split("\n")[:2]
    assert first.startswith("[2] ")
    assert second.startswith("100 ")
    # multiprocessing's own helper (spawn's resource tracker) is not a child it lists.
    assert int(first.split()[1]) == 1
    assert int(second.split()[1]) == 4


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_a_timeout_longer_than_a_poll_can_wait_is_taken(backend: Any) -> None:
    # poll() waits at most 2**31 - 1 ms (about 24.8 days), a thread's queue about 1e10 s:
    # a longer timeout (or an endless one) must not make the wait fail.
    for timeout in (1e7, 1e12, float("inf")):
        pf = parallel(funcs.square, workers=2, timeout=timeout, backend=backend)
        assert pf.map(range(4)) == [0, 1, 4, 9]
