"""Worker log records reach the caller's handlers, in order, once, under every start method."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fanmap import Failure, parallel
from tests import funcs


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[Collect]:
    handler = Collect()
    funcs.app_log.addHandler(handler)
    funcs.app_log.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        funcs.app_log.removeHandler(handler)
        funcs.app_log.setLevel(logging.NOTSET)


def test_records_arrive_complete_and_in_order_per_worker(collected: Collect, start_method: Any) -> None:
    pf = parallel(funcs.log_steps, workers=2, start_method=start_method, chunksize=3)
    assert pf.map(range(30), steps=4) == list(range(30))
    records = collected.records
    assert len(records) == 30 * 4  # every INFO record, and no DEBUG one (the caller's level)
    assert {r.processName for r in records} <= {"fanmap-worker-0", "fanmap-worker-1"}
    by_item: dict[int, list[int]] = {}
    for r in records:
        item, step = (int(w) for w in r.getMessage().split()[1::2])
        by_item.setdefault(item, []).append(step)
    assert by_item == {i: [0, 1, 2, 3] for i in range(30)}  # each item's steps in order
    for name in {r.processName for r in records}:
        times = [r.created for r in records if r.processName == name]
        assert times == sorted(times)  # each worker's records in the order emitted


def test_records_logged_before_a_crash_are_not_lost(collected: Collect, start_method: Any) -> None:
    pf = parallel(funcs.log_then_exit, workers=2, start_method=start_method, on_error="return", chunksize=1)
    out = pf.map(range(5))
    assert isinstance(out[2], Failure)
    messages = sorted(r.getMessage() for r in collected.records)
    assert messages == [f"item {i} says goodbye" for i in range(5)]


def test_exceptions_in_records_keep_their_traceback_text(collected: Collect) -> None:
    parallel(funcs.log_exception, workers=1).map([5])
    [record] = collected.records
    assert record.exc_text is not None
    assert "KeyError: 5" in record.exc_text
    assert "log_exception" in record.exc_text


def test_no_duplicate_lines_under_fork(tmp_path: Path) -> None:
    # A handler inherited by fork would write from the worker too, if it were kept.
    path = tmp_path / "app.log"
    handler = logging.FileHandler(path)
    funcs.app_log.addHandler(handler)
    funcs.app_log.setLevel(logging.INFO)
    try:
        # a pool of its own, started while the file handler is installed
        parallel(funcs.log_steps, workers=2, start_method="fork", max_tasks_per_worker=10**6 + 7).map(
            range(10)
        )
    finally:
        funcs.app_log.removeHandler(handler)
        funcs.app_log.setLevel(logging.NOTSET)
        handler.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 30
    assert len(set(lines)) == 30


def test_thread_and_serial_backends_log_as_usual(collected: Collect) -> None:
    for backend in ("thread", "serial"):
        collected.records.clear()
        parallel(funcs.log_steps, workers=2, backend=backend).map(range(4), steps=1)
        assert sorted(r.getMessage() for r in collected.records) == [f"item {i} step 0" for i in range(4)]
