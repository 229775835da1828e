"""Resumable maps: results recorded in a SQLite file, a rerun computes only what is left.
Counted through side-effect files and real kills, never through timing."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import fanmap
from fanmap import Checkpoint, CheckpointError, Failure, SerializationError, parallel
from tests import funcs

ROOT = Path(__file__).resolve().parents[2]


def calls(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_a_rerun_computes_only_what_is_left_and_changed(tmp_path: Path, backend: Any) -> None:
    noted = tmp_path / "calls"
    ck = tmp_path / "ck.sqlite"
    # chunksize=5: records of [0], [1..5], [6..10], ... (the first chunk holds one item)
    fn = parallel(funcs.noted_triple, backend=backend, workers=2, chunksize=5, checkpoint=str(ck))
    assert fn.map(range(20), path=str(noted)) == [3 * x for x in range(20)]
    assert sorted(calls(noted)) == list(range(20))
    assert Checkpoint(ck).done == 20
    assert Checkpoint(ck).function == "tests.funcs.noted_triple"
    noted.unlink()
    assert fn.map(range(20), path=str(noted)) == [3 * x for x in range(20)]
    assert calls(noted) == []  # every result came from the file
    changed = [*range(10), 99, *range(11, 25)]
    assert fn.map(changed, path=str(noted)) == [3 * x for x in changed]
    # the changed item (index 10) and the new ones; a record holds a block of items, so
    # the changed item's block ([6..10]) is computed again with it, and nothing else
    assert sorted(calls(noted)) == [6, 7, 8, 9, *range(20, 25), 99]
    noted.unlink()
    assert fn.map(
        changed,
        path=str(noted),
    ) == [3 * x for x in changed]
    assert calls(noted) == []


def test_keywords_are_part_of_what_a_record_stands_for(tmp_path: Path) -> None:
    noted = tmp_path / "calls"
    fn = parallel(funcs.noted_triple, backend="thread", workers=2, checkpoint=tmp_path / "ck.sqlite")
    fn.map(range(5), path=str(noted))
    other = tmp_path / "other"
    fn.map(range(5), path=str(other))  # other keywords: computed again
    assert sorted(calls(other)) == list(range(5))


@pytest.mark.parametrize("ordered", [True, False])
def test_generators_imap_and_order(tmp_path: Path, ordered: bool) -> None:
    noted = tmp_path / "calls"
    fn = parallel(funcs.noted_triple, workers=2, ordered=ordered, checkpoint=tmp_path / "ck.sqlite")
    first = fn.map((x for x in range(30)), path=str(noted))
    assert sorted(first) == [3 * x for x in range(30)]
    noted.unlink()
    again = list(fn.imap((x for x in range(30)), path=str(noted)))
    assert again == [3 * x for x in range(30)]  # imap is ordered
    assert calls(noted) == []
    assert sorted(fn.imap_unordered(iter(range(30)), path=str(noted))) == [3 * x for x in range(30)]


def test_failed_items_are_not_recorded_and_are_tried_again(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    fn = parallel(funcs.fails_on_odd_once, workers=2, on_error="return", checkpoint=tmp_path / "ck.sqlite")
    first = fn.map(range(10), path=str(seen))
    assert [x for x in first if isinstance(x, Failure)] != []
    assert Checkpoint(tmp_path / "ck.sqlite").done == 5
    assert fn.map(range(10), path=str(seen)) == list(range(10))
    assert Checkpoint(tmp_path / "ck.sqlite").done == 10


def test_another_functions_file_is_refused(tmp_path: Path) -> None:
    ck = tmp_path / "ck.sqlite"
    parallel(funcs.square, backend="serial", checkpoint=ck).map([1, 2])
    with pytest.raises(
        CheckpointError, match=r"records the results of tests.funcs.square, not of tests.funcs.add"
    ):
        parallel(funcs.add, backend="serial", checkpoint=ck).map([1, 2])


def test_a_file_that_is_not_a_checkpoint_is_refused_and_left_alone(tmp_path: Path) -> None:
    junk = tmp_path / "notes.sqlite"
    junk.write_bytes(b"these are my notes, not a database" * 100)
    before = junk.read_bytes()
    with pytest.raises(CheckpointError, match="is not a fanmap checkpoint"):
        parallel(funcs.square, backend="serial", checkpoint=junk).map([1])
    assert junk.read_bytes() == before
    other_db = tmp_path / "other.sqlite"
    with contextlib.closing(sqlite3.connect(other_db)) as conn, conn:
        conn.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(CheckpointError, match="is not a fanmap checkpoint"):
        parallel(funcs.square, backend="serial", checkpoint=other_db).map([1])


def test_a_result_that_cannot_be_stored_fails_alone(tmp_path: Path) -> None:
    fn = parallel(
        funcs.return_lock_on, backend="thread", on_error="return", checkpoint=tmp_path / "ck.sqlite"
    )
    out = fn.map(range(5))
    assert isinstance(out[2], Failure)
    assert isinstance(out[2].exception, SerializationError)
    assert "cannot store the result of item 2" in str(out[2].exception)
    assert Checkpoint(tmp_path / "ck.sqlite").done == 4


def test_config_refuses_a_checkpoint_for_every_map() -> None:
    with (
        pytest.raises(TypeError, match="a checkpoint file belongs to one map"),
        fanmap.config(checkpoint="x.sqlite"),
    ):
        pass


def test_checkpoint_files_can_be_removed(tmp_path: Path) -> None:
    ck = tmp_path / "ck.sqlite"
    parallel(funcs.square, backend="serial", checkpoint=ck).map([1, 2, 3])
    info = Checkpoint(ck)
    assert info.exists
    assert info.created is not None
    info.remove()
    assert not ck.exists()
    assert Checkpoint(ck).done == 0


def _script(tmp_path: Path, method: str, name: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "FANMAP_START_METHOD": method}
    return subprocess.Popen(
        [sys.executable, "resumable.py", name],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _effects(tmp_path: Path) -> list[tuple[str, int]]:
    path = tmp_path / "effects.txt"
    if not path.exists():
        return []
    return [(run, int(x)) for run, x in (line.split() for line in path.read_text().splitlines())]


def _recorded(path: Path) -> set[int]:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        rows = conn.execute("SELECT start, count FROM blocks").fetchall()
    return {i for start, count in rows for i in range(start, start + count)}


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_or_interrupted_map_resumes(tmp_path: Path, start_method: Any, stop: signal.Signals) -> None:
    shutil.copy(ROOT / "tests" / "scripts" / "resumable.py", tmp_path)
    first = _script(tmp_path, start_method, "first")
    deadline = time.monotonic() + 60
    while len(_effects(tmp_path)) < 400 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(stop)
    first.communicate(timeout=60)
    time.sleep(0.3)  # its workers die with it
    recorded = _recorded(tmp_path / "work.sqlite")
    assert 100 < len(recorded) < 1000
    second = _script(tmp_path, start_method, "second")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert out.strip() == "done 1000"
    effects = _effects(tmp_path)
    counts: dict[int, int] = {}
    for _, x in effects:
        counts[x] = counts.get(x, 0) + 1
    assert set(counts) == set(range(1000))
    assert max(counts.values()) <= 2  # an item ran at most twice
    assert not {x for run, x in effects if run == "second"} & recorded  # recorded ones not again
    if stop == signal.SIGINT:  # Ctrl-C commits what was done before it propagates
        first_done = {x for run, x in effects if run == "first"}
        # at most the calls in flight when it stopped (two chunks of about 10 ms per
        # worker); without the commit on Ctrl-C, up to half a second of results is missing
        assert len(first_done - recorded) <= 16
