"""Whole programs in a subprocess: Ctrl-C, functions of __main__, start methods."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import alive, children

ROOT = Path(__file__).resolve().parents[2]


def _run_script(tmp_path: Path, body: str, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )


LONG_MAP = """
    import os, sys, time
    from fanmap import parallel

    @parallel(workers=2, start_method=sys.argv[1])
    def slow(x):
        time.sleep(30)
        return x

    if __name__ == "__main__":
        print("ready", os.getpid(), flush=True)
        try:
            slow.map(range(8))
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise
"""


def _communicate(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """Wait for the program; kill it (failing the test) if it hangs."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the program hung for {timeout}s; it printed:\n{out}\n{err}")


def _descendants(pid: int) -> list[int]:
    out, todo = [], children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def test_ctrl_c_stops_every_worker(tmp_path: Path, start_method: Any) -> None:
    proc = _run_script(tmp_path, LONG_MAP, start_method)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("ready")
    # wait until both workers run a call
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline:
        helpers = {p for p in children(proc.pid) if not _is_worker(p)}
        workers = [p for p in _descendants(proc.pid) if p not in helpers]
        if len(workers) >= 2:
            break
        time.sleep(0.05)
    assert len(workers) >= 2, "the workers did not start"
    time.sleep(0.3)
    # Looked at again once settled: a helper caught between its fork and its exec (the
    # resource tracker, under spawn) still shows the program's command line.
    helpers = {p for p in children(proc.pid) if not _is_worker(p)}
    workers = [p for p in _descendants(proc.pid) if p not in helpers]
    assert len(workers) >= 2, "the workers did not start"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = _communicate(proc, 30)
    took = time.monotonic() - sent
    assert proc.returncode != 0
    assert "interrupted" in out
    assert "KeyboardInterrupt" in err
    assert took < 20, f"the interrupted program took {took:.1f}s to exit"
    for pid in workers:
        assert not alive(pid), f"worker {pid} outlived the interrupted program"


def _is_worker(pid: int) -> bool:
    cmdline = _cmdline(pid)
    return bool(cmdline) and b"forkserver" not in cmdline and b"resource_tracker" not in cmdline


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


MAIN_FUNCTIONS = """
    import sys
    from fanmap import parallel, pmap

    def cube(x):
        return x ** 3

    @parallel(workers=2, start_method=sys.argv[1])
    def square(x):
        return x * x

    if __name__ == "__main__":
        method = sys.argv[1]
        offset = 100
        print(square.map(range(5)))
        print(pmap(cube, range(4), workers=2, start_method=method))
        print(pmap(lambda x: x + offset, range(3), workers=2, start_method=method))
        print(square.options(ordered=False).map([3]))
"""


def test_functions_of_main_work_under_every_start_method(tmp_path: Path, start_method: Any) -> None:
    proc = _run_script(tmp_path, MAIN_FUNCTIONS, start_method)
    out, err = _communicate(proc, 120)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["[0, 1, 4, 9, 16]", "[0, 1, 8, 27]", "[100, 101, 102]", "[9]"]


NO_FILE = """
import sys
from fanmap import pmap
offset = 7
print(pmap(lambda x: x + offset, range(3), workers=2, start_method=sys.argv[1]))
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_code_with_no_file_works_through_cloudpickle(method: str) -> None:
    # As in a notebook: __main__ has no file the workers could import.
    proc = subprocess.run(
        [sys.executable, "-c", NO_FILE, method],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[7, 8, 9]"


ORPHAN = """
    import os, sys, time
    from fanmap import parallel

    @parallel(workers=2, start_method=sys.argv[1])
    def pid(x):
        return os.getpid()

    if __name__ == "__main__":
        print(*set(pid.map(range(4))), flush=True)
        os.kill(os.getpid(), 9)
"""


def test_workers_exit_when_the_caller_is_killed(tmp_path: Path, start_method: Any) -> None:
    proc = _run_script(tmp_path, ORPHAN, start_method)
    out, _ = _communicate(proc, 60)
    pids = [int(p) for p in out.split()]
    assert pids
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(alive(p) for p in pids), "workers outlived their killed caller"
