"""Fixtures shared by the suite, and the check that it leaves nothing behind."""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fanmap import _pools

try:
    import distributed  # noqa: F401

    HAS_DASK = True
except ImportError:  # pragma: no cover - the dask extra is not installed
    HAS_DASK = False

LOCAL_BACKENDS = ("process", "thread", "serial")
BACKENDS = LOCAL_BACKENDS + (("dask",) if HAS_DASK else ())
START_METHODS = tuple(
    m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()
)


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def children(pid: int) -> list[int]:
    """Return the pids of the live (not zombie) children of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid and stat[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not count)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


# Semaphores this run makes are named after it, so that the leak checks count only
# the suite's own: another program on the machine may make and remove its own
# multiprocessing semaphores (``sem.mp-...``) meanwhile.
SEM_PREFIX = f"/fanmap-test-{os.environ.get('FANMAP_TEST_RUN', os.getpid())}"
multiprocessing.current_process()._config["semprefix"] = SEM_PREFIX  # type: ignore[attr-defined]


def shm_segments() -> set[str]:
    """The /dev/shm entries this run made: its semaphores and fanmap's segments."""
    try:
        names = os.listdir("/dev/shm")
    except FileNotFoundError:  # pragma: no cover - no /dev/shm on this OS
        return set()
    # fanmap's own segments are named fanmap_<pid of the caller>_...: this run's only
    return {
        n for n in names if n.startswith(("sem" + SEM_PREFIX.replace("/", "."), f"fanmap_{os.getpid()}_"))
    }


@pytest.fixture(scope="session", autouse=True)
def _leaves_nothing_behind() -> Iterator[None]:
    """Fail the run if it leaves a child process or a /dev/shm segment behind."""
    shm_before = shm_segments()
    yield
    _pools.shutdown()
    gc.collect()  # shared objects' semaphores are unlinked when they are collected
    deadline = time.monotonic() + 10
    left = stray_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = stray_processes()
    new_shm = shm_segments() - shm_before - live_shared_semaphores()
    assert not left, f"the test run left child processes behind: {left}"
    assert not new_shm, f"the test run left /dev/shm segments behind: {sorted(new_shm)}"


@pytest.fixture(autouse=True)
def _collect_between_tests() -> Iterator[None]:
    """Collect each test's garbage when it ends, at a known point.

    Locks (ours, and Dask's) left in reference cycles are otherwise finalized by
    whichever garbage collection comes next; on Python 3.13 one that starts inside a
    call to multiprocessing's resource tracker (a later test making a lock or a
    shared-memory segment) re-enters it, and the finalizer warns ("ResourceTracker
    called reentrantly", CPython gh-109629).
    """
    yield
    if sys.version_info >= (3, 13):
        gc.collect()


def live_shared_semaphores() -> set[str]:
    """Semaphores of shared objects still alive (module globals): freed at exit.

    scripts/test checks /dev/shm again after the interpreter has exited.
    """
    from fanmap._values import Locked

    names = set()
    for obj in gc.get_objects():
        if isinstance(obj, Locked) and obj._lock is not None:
            name = getattr(obj._lock, "_semlock", None)
            if name is not None and name.name:
                names.add("sem." + name.name.lstrip("/"))
    return names


def stray_processes() -> list[int]:
    """Descendants of this process, other than multiprocessing's own helpers."""
    multiprocessing.active_children()  # reaps finished children
    stray = []
    todo = children(os.getpid())
    while todo:
        pid = todo.pop()
        todo.extend(children(pid))
        if not _is_forkserver(pid):
            stray.append(pid)
    return stray


def _is_forkserver(pid: int) -> bool:
    # The forkserver (and the resource tracker) are multiprocessing's own, one per
    # interpreter, and exit with it; they are not workers fanmap left behind.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"forkserver" in cmdline or b"resource_tracker" in cmdline


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Any:
    """Every built-in backend (typed Any: tests pass it where a Literal is expected)."""
    return request.param


@pytest.fixture(params=LOCAL_BACKENDS)
def local_backend(request: pytest.FixtureRequest) -> Any:
    """Every backend that shares memory with its workers (for @shared_state)."""
    return request.param


@pytest.fixture(params=START_METHODS)
def start_method(request: pytest.FixtureRequest) -> Any:
    """Every start method this platform has (typed Any, like ``backend``)."""
    return request.param
