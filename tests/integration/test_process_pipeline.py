"""The process backend keeps its workers fed: the caller hands a worker its next chunk
before it unpickles the results that worker sent back."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fanmap import Failure, SerializationError, parallel
from fanmap._args import CallMode
from fanmap._backends._process import ProcessPool
from fanmap._calls import Calls
from fanmap._chunk import Chunk, Done, RunSpec
from fanmap._config import resolve
from tests import funcs


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


def test_a_new_pool_starts_one_worker_then_the_rest_as_chunks_need_them() -> None:
    # A fork or spawn takes a while: the first chunk goes to the first worker before
    # the second starts, and every worker is up once the engine waits.
    pool = ProcessPool(resolve({"workers": 3, "backend": "process"}))
    try:
        pool.begin(RunSpec(Calls(funcs.square, CallMode.ONE, {}), funcs.square, None))
        assert sum(w is not None for w in pool._slots) == 1
        assert pool.room(1) == 3  # the ones not started yet count
        pool.submit(Chunk(0, [2]))
        assert sum(w is not None for w in pool._slots) == 1
        pool.submit(Chunk(1, [3]))  # the first is busy: the second starts for it
        assert sum(w is not None for w in pool._slots) == 2
        events = pool.wait(None)  # starts the third, and returns at once for it
        assert sum(w is not None for w in pool._slots) == 3
        got: dict[int, Any] = {}
        deadline = time.monotonic() + 60
        while len(got) < 2 and time.monotonic() < deadline:
            for event in events:
                assert isinstance(event, Done)
                event.decode()
                got[event.chunk.start] = event.results
            events = pool.wait(1.0)
        assert got == {0: [4], 1: [9]}
        pool.end(abort=False)
    finally:
        pool.close()
