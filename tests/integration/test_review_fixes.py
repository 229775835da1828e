"""Defects found by review, each shown by a test that failed before its fix."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from fanmap import CheckpointError, Executor, parallel, per_worker
from tests import funcs


def test_a_log_record_that_cannot_be_rebuilt_does_not_shift_results(caplog: pytest.LogCaptureFixture) -> None:
    fn = parallel(funcs.log_unreadable_then_return, workers=1, chunksize=1, max_tasks_per_worker=10**7 + 21)
    with caplog.at_level("WARNING"):
        assert fn.map(range(4)) == [0, 10, 20, 30]
        assert fn.map([7]) == [70]  # nothing left over from the map before
    assert any("could not be read here" in r.getMessage() for r in caplog.records)


def test_submit_works_again_after_its_options_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    fn = parallel(funcs.square, backend="thread", workers=1)
    monkeypatch.setenv("FANMAP_WORKERS", "0")
    with pytest.raises(ValueError, match="FANMAP_WORKERS"):
        fn.submit(2).result(timeout=30)
    monkeypatch.delenv("FANMAP_WORKERS")
    assert fn.submit(3).result(timeout=30) == 9


def test_a_foreign_database_is_not_touched(tmp_path: Path) -> None:
    db = tmp_path / "app.sqlite"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(CheckpointError):
        parallel(funcs.square, backend="serial", checkpoint=db).map([1])
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL


def test_a_factory_asked_for_by_many_threads_at_once_runs_once(tmp_path: Path) -> None:
    made = tmp_path / "made"
    fn = parallel(
        per_worker(model=functools.partial(funcs.counting_factory, str(made)))(funcs.with_model),
        backend="serial",
    )
    threads = [threading.Thread(target=fn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made.read_text().count("made") == 1


def test_executor_views_share_the_shutdown() -> None:
    ex = Executor(max_workers=1, backend="thread")
    view = ex.options(timeout=5.0)
    assert view.submit(funcs.square, 2).result(timeout=30) == 4
    ex.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        view.submit(funcs.square, 3)


def test_checkpoint_results_of_module_classes_are_stored_by_reference(tmp_path: Path) -> None:
    ck = tmp_path / "ck.sqlite"
    fn: Any = parallel(funcs.identity, backend="serial", checkpoint=ck)
    first = fn.map([funcs.Offset(1)])
    again = fn.map([funcs.Offset(1)])
    assert type(again[0]) is funcs.Offset
    assert type(first[0]) is funcs.Offset
