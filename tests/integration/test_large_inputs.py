"""Large inputs: map keywords sent once, NumPy arrays through shared memory, no leaks."""

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

from fanmap import Failure, WorkerCrashedError, parallel
from tests import funcs

np = pytest.importorskip("numpy")
ROOT = Path(__file__).resolve().parents[2]


def fanmap_segments(pid: int | None = None) -> list[str]:
    """The segments of this process (or of ``pid``): another test run, or a script, may
    have its own meanwhile."""
    prefix = f"fanmap_{os.getpid() if pid is None else pid}_"
    return [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]


def test_map_keywords_are_pickled_once_per_map_not_per_call() -> None:
    before = funcs.CountsPickles.pickled
    pf = parallel(funcs.uses, workers=2, chunksize=1)
    assert pf.map(range(50), thing=funcs.CountsPickles()) == list(range(50))
    assert funcs.CountsPickles.pickled - before == 1


def test_a_200_mb_array_given_to_16_calls_is_not_copied(start_method: Any) -> None:
    big = np.ones(25_000_000)  # 200 MB
    pf = parallel(funcs.inspect_array, workers=2, start_method=start_method)
    for out in (pf.map(range(16), arr=big), pf.map(range(16), [big] * 16)):
        assert [o[0] for o in out] == [25_000_000.0] * 16
        assert not any(o[2] for o in out), "workers got a writeable copy, not the shared view"
        # Each worker's private memory (what a copy would land in) stays far below one
        # copy; pickling the array into every call would cost 16 copies.
        assert max(o[1] for o in out) < 100, "a worker holds a private copy of the array"
    assert fanmap_segments() == []


def test_small_arrays_travel_in_the_message() -> None:
    pf = parallel(funcs.inspect_array, workers=1)
    [(total, _, writeable)] = pf.map([0], arr=np.ones(10))
    assert total == 10.0
    assert writeable  # unpickled from the message: the worker's own copy


def test_segments_are_freed_after_a_failure_and_a_crash() -> None:
    big = np.arange(1_000_000, dtype=np.float64)  # 8 MB
    with pytest.raises(funcs.CustomError):
        parallel(funcs.inspect_array_then_fail, workers=2).map(range(8), arr=big)
    assert fanmap_segments() == []
    out = parallel(funcs.inspect_array_then_crash, workers=2, on_error="return").map(range(8), arr=big)
    assert isinstance(out[3], Failure)
    assert isinstance(out[3].exception, WorkerCrashedError)
    assert [out[i] for i in (0, 1, 2, 4)] == [0.0, 1.0, 2.0, 4.0]
    assert fanmap_segments() == []


INTERRUPTED = """
    import os, sys, time
    import numpy as np
    from fanmap import parallel

    def slow(i, arr):
        time.sleep(30)
        return float(arr[i])

    if __name__ == "__main__":
        big = np.ones(1_000_000)
        print("ready", flush=True)
        parallel(slow, workers=2, start_method=sys.argv[1]).map(range(4), arr=big)
"""


def test_segments_are_freed_after_ctrl_c(tmp_path: Path, start_method: Any) -> None:
    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent(INTERRUPTED))
    proc = subprocess.Popen(
        [sys.executable, str(script), start_method],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not fanmap_segments(proc.pid):
            time.sleep(0.05)
        assert fanmap_segments(proc.pid), "the array never reached shared memory"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the interrupted program hung")
    finally:  # a failed assertion must not leave the program running
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "KeyboardInterrupt" in err
    assert fanmap_segments(proc.pid) == []


def test_writing_to_a_shared_array_in_a_worker_says_to_copy_it() -> None:
    with pytest.raises(ValueError, match="read-only") as caught:
        parallel(funcs.double_in_place, workers=2).map([0], arr=np.ones(300_000))
    assert any("copy one (a.copy())" in note for note in caught.value.__notes__)
