"""The process backend keeps its workers fed: the caller hands a worker its next chunk
before it unpickles the results that worker sent back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fanmap import Failure, SerializationError, parallel
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
