"""Real worker processes failing in every way, under every start method."""

from __future__ import annotations

import os
import pickle
import signal
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from fanmap import (
    Failure,
    RemoteError,
    SerializationError,
    TaskTimeoutError,
    WorkerCrashedError,
    parallel,
)
from tests import funcs
from tests.conftest import alive


def frames(exc: BaseException) -> list[str]:
    return [f.name for f in traceback.extract_tb(exc.__traceback__)]


def test_worker_exception_keeps_type_frames_and_note(start_method: Any) -> None:
    pf = parallel(funcs.fail_on, workers=2, start_method=start_method)
    with pytest.raises(funcs.CustomError, match="bad item 3") as info:
        pf.map(range(10))
    assert "fail_on" in frames(info.value)  # the worker's own frame
    note = "\n".join(info.value.__notes__)
    assert "item 3 (3,)" in note
    assert "worker" in note
    assert "pid" in note


def test_chained_causes_survive(start_method: Any) -> None:
    pf = parallel(funcs.chained, workers=2, start_method=start_method)
    with pytest.raises(ValueError, match="wrapped 1") as info:
        pf.map([1])
    cause = info.value.__cause__
    assert isinstance(cause, KeyError)
    assert "chained" in frames(cause)
    assert info.value.__suppress_context__


def test_suppressed_context_stays_suppressed() -> None:
    pf = parallel(funcs.implicit_context, workers=1)
    with pytest.raises(RuntimeError) as info:
        pf.map([1])
    assert info.value.__cause__ is None
    assert isinstance(info.value.__context__, OSError)
    assert info.value.__suppress_context__
    assert "During handling" not in "".join(traceback.format_exception(info.value))


def test_an_exception_whose_init_takes_other_arguments_comes_back_as_itself(start_method: Any) -> None:
    pf = parallel(funcs.raise_unrebuildable, workers=1, start_method=start_method)
    with pytest.raises(funcs.NeedsTwoArgs, match="5/2") as info:
        pf.map([5])
    assert info.value.args == ("5/2",)
    assert "raise_unrebuildable" in "".join(traceback.format_exception(info.value))


def test_exception_that_cannot_travel_is_a_remote_error(start_method: Any) -> None:
    pf = parallel(funcs.raise_unpicklable, workers=1, start_method=start_method)
    with pytest.raises(RemoteError) as info:
        pf.map([5])
    err = info.value
    assert err.type_name.startswith("tests.funcs.")
    assert "Traceback" in err.remote_traceback
    assert pickle.loads(pickle.dumps(err)).type_name == err.type_name


@pytest.mark.parametrize("code", [0, 3])
def test_os_exit_mid_item_is_a_crash(code: int, start_method: Any) -> None:
    pf = parallel(funcs.exit_on, workers=2, start_method=start_method)
    with pytest.raises(WorkerCrashedError, match=f"exited with code {code}") as info:
        pf.map(range(5), code=code)
    assert info.value.exitcode == code
    assert "item 2 (2,)" in str(info.value)
    assert pf.map(range(5), bad=-1) == list(range(5))  # the pool works on


def test_sigkill_mid_item_under_return_keeps_every_other_result(start_method: Any) -> None:
    pf = parallel(funcs.kill_self_on, workers=2, start_method=start_method, on_error="return")
    out = pf.map(range(40), bad=7)
    assert isinstance(out[7], Failure)
    assert isinstance(out[7].exception, WorkerCrashedError)
    assert "SIGKILL" in str(out[7].exception)
    assert out[:7] + out[8:] == [x for x in range(40) if x != 7]


def test_segfault_is_a_crash_and_the_map_goes_on(start_method: Any) -> None:
    pf = parallel(funcs.segfault_on, workers=2, start_method=start_method, on_error="skip")
    assert pf.map(range(10), bad=4) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    with pytest.raises(WorkerCrashedError, match="SIGSEGV") as info:
        pf.options(on_error="raise").map(range(3), bad=1)
    assert info.value.exitcode == -signal.SIGSEGV


def test_crash_is_retried(tmp_path: Path, start_method: Any) -> None:
    pf = parallel(funcs.crash_once, workers=1, start_method=start_method, retries=1)
    assert pf.map([str(tmp_path / "flag")]) == ["ok"]


def test_timeout_stops_only_the_slow_call(start_method: Any) -> None:
    pf = parallel(funcs.sleep_on, workers=2, start_method=start_method, timeout=1.0, on_error="return")
    began = time.monotonic()
    out = pf.map(range(6), bad=2, seconds=120)
    assert time.monotonic() - began < 60  # it did not wait for the 120 s call
    assert isinstance(out[2], Failure)
    assert isinstance(out[2].exception, TaskTimeoutError)
    assert isinstance(out[2].exception, TimeoutError)
    assert "timeout of 1s" in str(out[2].exception)
    assert out[:2] + out[3:] == [0, 1, 3, 4, 5]


def test_timeout_also_stops_the_workers_children(tmp_path: Path, start_method: Any) -> None:
    path = tmp_path / "grandchild"
    pf = parallel(funcs.spawn_grandchild_and_hang, workers=1, start_method=start_method, timeout=2.0)
    with pytest.raises(TaskTimeoutError):
        pf.map([str(path)])
    grandchild = int(path.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive(grandchild):
        time.sleep(0.05)
    assert not alive(grandchild), "the timed-out worker's child is still running"


def test_unpicklable_argument_names_item_and_position(start_method: Any) -> None:
    pf = parallel(funcs.add, workers=1, start_method=start_method)
    gen = (i for i in range(3))
    with pytest.raises(SerializationError, match=r"argument b of item 1 \(a generator object") as info:
        pf.map([1, 2, 3], [0, gen, 0])  # type: ignore[list-item]
    assert 'backend="thread"' in str(info.value)
    assert info.value.__context__ is None  # no pickler internals chained onto it
    out = pf.options(on_error="return").map([1, 2, 3], [0, gen, 0])  # type: ignore[list-item]
    assert out[0] == 1
    assert out[2] == 3
    assert isinstance(out[1], Failure)


def test_unpicklable_keyword_names_the_keyword() -> None:
    import threading

    pf = parallel(funcs.add, workers=1)
    with pytest.raises(SerializationError, match=r"keyword argument c= given to the map \(a lock object"):
        pf.map([1], c=threading.Lock())


def test_unpicklable_result_names_the_item(start_method: Any) -> None:
    pf = parallel(funcs.return_lambda_on, workers=1, start_method=start_method, on_error="return")
    out = pf.map(range(4))
    assert isinstance(out[2], Failure)
    assert isinstance(out[2].exception, SerializationError)
    assert "cannot pickle the result (a lock object" in str(out[2].exception)
    assert [out[0], out[1], out[3]] == [0, 1, 3]


def test_unpicklable_function() -> None:
    import threading

    lock = threading.Lock()

    def uses_lock(x: int) -> int:
        with lock:
            return x

    with pytest.raises(SerializationError, match=r"cannot pickle the function .*uses_lock"):
        parallel(uses_lock, workers=1).map([1])
    assert parallel(uses_lock, backend="thread").map([1]) == [1]


def test_max_tasks_per_worker_recycles_workers(start_method: Any) -> None:
    pf = parallel(funcs.pid, workers=1, start_method=start_method, max_tasks_per_worker=2)
    pids = pf.map(range(6))
    assert len(set(pids)) == 3
    assert [pids.count(p) for p in dict.fromkeys(pids)] == [2, 2, 2]


def test_no_worker_runs_more_than_max_tasks(start_method: Any) -> None:
    pf = parallel(funcs.pid, workers=2, start_method=start_method, max_tasks_per_worker=3)
    pids = pf.map(range(20))
    counts = [pids.count(p) for p in set(pids)]
    assert max(counts) <= 3
    assert len(counts) >= 7


def test_raise_stops_the_map_promptly() -> None:
    pf = parallel(funcs.sleep_on, workers=2)
    began = time.monotonic()
    with pytest.raises(funcs.CustomError):
        parallel(funcs.fail_on, workers=2).map(range(100))
    # a long call already running is stopped, not waited for
    with pytest.raises(funcs.CustomError):
        parallel(_fail_after_a_sleep_started, workers=2).map([0, 1])
    assert time.monotonic() - began < 60
    assert pf.map(range(3), bad=-1) == [0, 1, 2]


def _fail_after_a_sleep_started(x: int) -> int:
    if x == 0:
        time.sleep(120)
    time.sleep(0.2)
    raise funcs.CustomError("second call fails while the first sleeps")


def test_workers_ignore_sigint_and_lead_their_own_group() -> None:
    pf = parallel(_signal_setup, workers=1)
    [(handler, pgid, pid)] = pf.map([0])
    assert handler == signal.SIG_IGN
    assert pgid == pid != os.getpid()


def _signal_setup(_: int) -> tuple[object, int, int]:
    return signal.getsignal(signal.SIGINT), os.getpgid(0), os.getpid()


def test_idle_workers_exit_by_themselves_and_come_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from fanmap import _pools

    monkeypatch.setattr(_pools, "IDLE_TIMEOUT", 0.5)
    # max_tasks_per_worker gives this test a pool of its own
    pf = parallel(funcs.pid, workers=1, max_tasks_per_worker=10**6)
    [worker] = pf.map([0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive(worker):
        time.sleep(0.1)
    assert not alive(worker), "an idle worker did not exit"
    [again] = pf.map([0])
    assert again != worker


def test_a_segfault_shows_the_python_stack_on_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    # a pool of its own (max_tasks_per_worker), started while stderr is captured
    pf = parallel(funcs.segfault_on, workers=1, on_error="return", max_tasks_per_worker=10**6 + 1)
    pf.map([1, 2, 3], bad=2)
    err = capfd.readouterr().err
    assert "Fatal Python error: Segmentation fault" in err
    assert "segfault_on" in err
