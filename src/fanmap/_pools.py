"""Warm pools: kept between runs, shared by runs with the same settings, closed at exit.

A run *leases* a pool for its whole duration; a pool serves one run at a time. Two
runs that overlap (a pipeline, or threads) get two pools. Idle process workers exit
by themselves after a while, and the pool starts new ones the next time it is used.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.util
import os
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._backends import Backend, Pool
    from ._config import Options

__all__ = ["IDLE_TIMEOUT", "lease", "on_shutdown", "shutdown"]

#: Seconds an idle worker process waits for work before it exits.
IDLE_TIMEOUT: Final = 300.0
#: Idle pools kept per setting; a further one is closed when its run ends.
_KEEP: Final = 2

_lock = threading.Lock()
_idle: dict[Hashable, list[Pool]] = {}
_every: weakref.WeakSet[Pool] = weakref.WeakSet()
_on_shutdown: list[Callable[[], None]] = []


@contextlib.contextmanager
def lease(backend: Backend, options: Options) -> Iterator[Pool]:
    """Lend a warm pool for one run, or open one; take it back afterwards.

    A run interrupted by Ctrl-C (or another ``BaseException`` that is not an
    ``Exception``, except a generator being closed) closes its pool instead.
    """
    key = backend.pool_key(options)
    pool = None
    while pool is None:
        with _lock:
            idle = _idle.get(key)
            if not idle:
                break
            pool = idle.pop()
        if not pool.usable:  # its workers' client closed, or another is current
            _close(pool)
            pool = None
    if pool is None:
        pool = backend.open_pool(options)
        with _lock:
            _every.add(pool)
    try:
        yield pool
    except BaseException as exc:
        if not isinstance(exc, Exception | GeneratorExit):
            pool.close()
            raise
        _give_back(key, pool)
        raise
    else:
        _give_back(key, pool)


def _give_back(key: Hashable, pool: Pool) -> None:
    if pool.usable:
        with _lock:
            idle = _idle.setdefault(key, [])
            if len(idle) < _KEEP:
                idle.append(pool)
                return
    _close(pool)


def _close(pool: Pool) -> None:
    """Close a pool; one that fails to close is dropped all the same (never reused)."""
    try:
        pool.close()
    except Exception as exc:  # a worker someone else stopped and reaped, ...
        import warnings

        warnings.warn(f"fanmap: a pool did not close cleanly ({exc!r}); it was dropped", stacklevel=2)


def shutdown() -> None:
    """Stop every warm pool now: their workers exit, and the next map starts new ones.

    Pools also stop at interpreter exit and after an idle spell; call this in tests,
    in a notebook, or in a long-lived service that wants its workers gone now. The
    Manager process behind shared `Dict`, `List` and `Queue` objects stops too.

    Examples:
        >>> import fanmap
        >>> double = fanmap.parallel(lambda x: 2 * x, workers=2)
        >>> double.map([1, 2])
        [2, 4]
        >>> fanmap.shutdown()
        >>> double.map([3])
        [6]
    """
    with _lock:
        pools = list(_every)
        _idle.clear()
        _every.clear()
    for pool in pools:
        _close(pool)
    for hook in list(_on_shutdown):
        hook()
    from ._mainmod import forget_sent_values

    forget_sent_values()


def close_tagged(tag: object) -> None:
    """Close the idle pools opened for ``tag`` (an Executor's own), now."""
    with _lock:
        found = []
        for key, idle in _idle.items():
            if isinstance(key, tuple) and key and key[-1] is tag:
                found.extend(idle)
                idle.clear()
    for pool in found:
        _close(pool)


def on_shutdown(hook: Callable[[], None]) -> None:
    """Run ``hook`` whenever fanmap shuts its pools down (`shutdown`, and at exit)."""
    _on_shutdown.append(hook)


def _forget_after_fork() -> None:
    # The child must not touch the parent's workers: forget them without closing.
    global _lock
    _lock = threading.Lock()
    _idle.clear()
    _every.clear()


# multiprocessing joins its non-daemonic children at exit; importing its util module
# first registers that handler before ours, so ours (run last-in, first-out) stops the
# workers before it waits for them.
_ = multiprocessing.util
atexit.register(shutdown)
os.register_at_fork(after_in_child=_forget_after_fork)
