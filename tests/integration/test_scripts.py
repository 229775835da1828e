"""Every script in tests/scripts/ and examples/, run as ``python script.py`` under each start method.

Each run gets a fresh working directory and a mark in its environment; after it exits,
no process carrying the mark may be left (workers inherit the environment).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import alive

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "tests" / "scripts"


def _marked(mark: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if mark.encode() in environ:
            found.append(int(entry.name))
    return found


def run_script(
    path: Path, start_method: str, tmp_path: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a script as a user would; fail if it hangs or leaves a process behind."""
    workdir = tmp_path / "run"
    workdir.mkdir(exist_ok=True)
    shutil.copy(path, workdir / path.name)
    mark = f"fanmap-test-{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "FANMAP_START_METHOD": start_method,
        "FANMAP_TEST_MARK": mark,
        "PYTHONWARNINGS": "error::ResourceWarning",
    }
    try:
        proc = subprocess.run(
            [sys.executable, path.name],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        for pid in _marked(mark):
            os.kill(pid, 9)
        pytest.fail(f"{path.name} hung for {timeout}s under {start_method}: {exc.stdout!r} {exc.stderr!r}")
    deadline = time.monotonic() + 10
    left = _marked(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _marked(mark)
    for pid in left:
        os.kill(pid, 9)
    assert not left, f"{path.name} left processes behind under {start_method}: {left}"
    return proc


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return proc.stdout


def test_traceback_shows_the_scripts_file_line_and_source(start_method: Any, tmp_path: Path) -> None:
    proc = run_script(SCRIPTS / "traceback_in_script.py", start_method, tmp_path)
    assert proc.returncode == 1
    err = proc.stderr
    assert "<dynamic-code>" not in err
    frame = re.search(r'File "([^"]*traceback_in_script\.py)", line 9, in parse\n(.*)\n(.*)\n', err)
    assert frame is not None, err
    assert frame.group(2).strip() == "return table[text] * 10"
    # the markers sit under `table[text]`, as they would for a local call
    source, markers = frame.group(2), frame.group(3)
    start = source.index("table[text]")
    assert markers.index("~") == start or markers.index("^") == start, (source, markers)
    assert markers.rstrip().endswith("^")
    assert len(markers.rstrip()) <= source.index(" * 10")
    assert "KeyError: 'two'" in err
    assert "fanmap: raised by item 1 ('two',)" in err


def test_a_lazy_global_loads_once_per_worker(start_method: Any, tmp_path: Path) -> None:
    out = _ok(run_script(SCRIPTS / "lazy_global.py", start_method, tmp_path))
    assert out.splitlines() == ["[0, 3, 6, 9]", "loads per worker: [1, 1]"]


def test_chunk_sizes_are_as_the_performance_guide_describes(start_method: Any, tmp_path: Path) -> None:
    lines = _ok(run_script(SCRIPTS / "chunk_sizes.py", start_method, tmp_path)).splitlines()
    map_chunks, imap_chunks = int(lines[0].split()[-1]), int(lines[1].split()[-1])
    assert map_chunks < 100  # 3 ms calls: up to about 50 ms a chunk (10 ms: ~150 chunks)
    assert imap_chunks > 100  # about 10 ms a chunk
    assert lines[2] == "[2, 4] [6]"
    largest = int(lines[3].split()[-1])
    assert 64 <= largest <= (512 * 1024) // 2000  # by memory: not 10 ms of calls (thousands)
    inf_slow, inf_fast = map(int, lines[4].split()[-2:])
    # batched: a timeout would send the 40 and the 2,000 calls one at a time
    assert inf_slow < 40
    assert inf_fast < 100


def test_a_script_without_the_main_guard_runs_its_top_level_once(start_method: Any, tmp_path: Path) -> None:
    out = _ok(run_script(SCRIPTS / "unguarded.py", start_method, tmp_path))
    assert out.splitlines() == ["top level ran", "[0, 1, 4, 9, 16, 25]"]


def test_a_shared_array_reaches_workers_without_a_copy(start_method: Any, tmp_path: Path) -> None:
    out = _ok(run_script(SCRIPTS / "shared_array.py", start_method, tmp_path))
    assert out.splitlines() == [
        "placed: 1",
        "(500000.0, False)",
        "(5100.0, False)",
        "strided views: read-only, no copy",
        "left: []",
        "raised: item 1 fails",
        "placed: 1",
        "left after a map that raised: []",
    ]


def test_the_lock_idiom_is_exact_and_does_not_hang(start_method: Any, tmp_path: Path) -> None:
    out = _ok(run_script(SCRIPTS / "lock_idiom.py", start_method, tmp_path, timeout=60))
    assert out.splitlines() == ["300 [100, 100, 100]", "600 [200, 200, 200]"]


def test_classes_of_the_script_cross_both_ways(start_method: Any, tmp_path: Path) -> None:
    out = _ok(run_script(SCRIPTS / "classes_in_script.py", start_method, tmp_path))
    assert out.splitlines() == [
        "[Point(x=2, y=1), Point(x=4, y=3)] True",
        "caught TooFar 500 is too far",
    ]


def test_a_pipeline_left_early_reads_little_ahead(start_method: Any, tmp_path: Path) -> None:
    out = _ok(run_script(SCRIPTS / "pipeline_break.py", start_method, tmp_path))
    assert out.splitlines() == ["last 2000", "read ahead within the documented bound: True"]


def test_prints_in_workers_reach_the_callers_output(start_method: Any, tmp_path: Path) -> None:
    proc = run_script(SCRIPTS / "prints_from_workers.py", start_method, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "result [0, 1, 2, 3, 4, 5]"
    assert sorted(lines[:-1]) == [f"item {i}" for i in range(6)]
    assert sorted(proc.stderr.splitlines()) == [f"err {i}" for i in range(6)]


def test_workers_is_public_and_shutdown_stops_pools(start_method: Any, tmp_path: Path) -> None:
    out = _ok(run_script(SCRIPTS / "workers_from_options.py", start_method, tmp_path))
    assert out.splitlines() == ["workers 3", "new workers after shutdown: True"]


@pytest.mark.slow
def test_the_demo_runs_as_a_script(start_method: Any, tmp_path: Path) -> None:
    proc = run_script(ROOT / "examples" / "demo.py", start_method, tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "primes below 1,000,000: 78498" in out
    assert 'demo.py", line ' in out
    assert "<dynamic-code>" not in out
    assert "return round(float(text.strip" in out
    assert "Failure at item 1: ValueError" in out


def test_per_worker_values_are_made_once_and_closed_once(start_method: Any, tmp_path: Path) -> None:
    out = _ok(run_script(SCRIPTS / "per_worker_model.py", start_method, tmp_path))
    assert out.splitlines() == [
        "[0, 3, 6, 9]",
        "loaded once per worker: True",
        "closed once per worker: True",
    ]


def test_busy_workers_die_with_their_killed_caller(start_method: Any, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    shutil.copy(SCRIPTS / "busy_orphans.py", tmp_path / "busy_orphans.py")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "FANMAP_START_METHOD": start_method}
    proc = subprocess.Popen([sys.executable, "busy_orphans.py", str(marks)], cwd=tmp_path, env=env)
    deadline = time.monotonic() + 60
    while len(list(marks.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p.name) for p in marks.iterdir()]
    assert len(pids) == 2, "the workers never started"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 3
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids), f"busy workers outlived their killed caller ({start_method})"


def test_async_functions_of_a_script_run_as_processes_x_coroutines(start_method: Any, tmp_path: Path) -> None:
    proc = run_script(SCRIPTS / "async_in_script.py", start_method, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == [
        "late: [0, 10, 20, 30, 40, 'TaskTimeoutError', 60, 70]",
        "crashed: 3 True",
        "amap: [10, 20, 30]",
    ]
    frame = re.search(r'File "([^"]*async_in_script\.py)", line (\d+), in parse\n(.*)\n', proc.stderr)
    assert frame is not None, proc.stderr
    assert frame.group(3).strip() == "return table[text] * 10"
    assert "KeyError: 'two'" in proc.stderr
    assert "fanmap: raised by item 1 ('two',)" in proc.stderr


def test_the_async_crawler_example_runs_as_a_script(start_method: Any, tmp_path: Path) -> None:
    out = _ok(run_script(ROOT / "examples" / "crawler.py", start_method, tmp_path))
    lines = out.splitlines()
    assert lines[0] == "map: 200 pages, 28690 bytes; the first: [('/page/0', 142), ('/page/1', 142)]"
    assert lines[2:] == ["amap: 50 pages, the first /page/0", "aimap: ['/page/0', '/page/1', '/page/2']"]


def test_the_insights_example_names_the_slow_item(start_method: Any, tmp_path: Path) -> None:
    out = _ok(run_script(ROOT / "examples" / "where_the_time_goes.py", start_method, tmp_path))
    assert out.startswith("score: 400 items in ")
    assert "  slowest   item 123 (123,): " in out
    advice = next(line for line in out.splitlines() if line.startswith("  advice"))
    assert "(item 123)" in advice
    trace = json.loads((tmp_path / "run" / "trace.json").read_text())
    names = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert len(names) == 2
