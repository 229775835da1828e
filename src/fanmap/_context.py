"""Where this code runs: in the caller, or inside a fanmap worker or task.

A parallel function called inside a worker (a nested map) runs serially there, rather
than failing with "daemonic processes are not allowed to have children" or starting
pools in every worker.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["in_worker", "mark_worker", "task_scope"]

_in_worker = False
_task = threading.local()


def mark_worker() -> None:
    """Note that this process is a fanmap worker: maps run here serially."""
    global _in_worker
    _in_worker = True


def in_worker() -> bool:
    """Return True inside a fanmap worker process, or a task fanmap runs on a cluster."""
    return _in_worker or getattr(_task, "running", False)


def mark_task_thread() -> None:
    """Mark this thread for good as running fanmap tasks (a Dask worker's event loop)."""
    _task.running = True


@contextlib.contextmanager
def task_scope() -> Iterator[None]:
    """Mark this thread as running a fanmap task (a Dask task may run in a thread of
    the caller's own process, which must not turn serial as a whole)."""
    previous = getattr(_task, "running", False)
    _task.running = True
    try:
        yield
    finally:
        _task.running = previous
