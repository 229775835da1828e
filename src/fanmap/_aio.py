"""Calls of ``async def`` functions: many coroutines in one event loop per worker.

```
worker (process, thread, Dask worker, the caller for "serial")
  one event loop, for the worker's whole life
    chunk ──► call_chunk_async ──► a task per item ──► fn(*args) awaited,
                                                        cancelled past ``timeout``
          ◄── (results, errors by position), as call_chunk gives them
```

Like `call_chunk`, it decides nothing: each call is made once and each failure is
reported by position. A call past the run's ``timeout`` is cancelled and fails with
`TaskTimeoutError`; the loop and its other calls go on. A call that blocks the loop
itself cannot be cancelled from in here: the pool sees its chunk overdue by more than
`GRACE` and stops the worker.

`LoopThread` is an event loop running in a thread of its own: the caller's loop for the
serial backend, a Dask worker's. (A worker process runs its loop in its main thread:
see `_aworker`; a thread of the thread backend runs its own.)
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, TypeVar

# asyncio is imported in the functions that use it: a plain map never loads it.
from ._args import call_args
from ._calls import Calls, Ran, Times, explained
from ._errors import TaskTimeoutError, WorkerInitError
from ._perworker import PerWorker, made_here

__all__ = [
    "GRACE",
    "LoopThread",
    "call_chunk_async",
    "chunk_with_values",
    "is_async_function",
    "loop_thread",
    "timed_chunk",
]

T = TypeVar("T")

#: Seconds past a call's timeout after which its worker is taken to be blocked (a
#: synchronous call inside a coroutine holds the loop) and is stopped.
GRACE: Final = 1.0


def is_async_function(fn: Any) -> bool:
    """Whether calling ``fn`` makes a coroutine (``async def``, also behind partials and
    fanmap's own wrappers)."""
    inner: Any = fn
    for _ in range(32):
        if isinstance(inner, functools.partial):
            inner = inner.func
            continue
        plain = getattr(inner, "__fanmap_call__", None)
        if plain is None or plain is inner:
            break
        inner = plain
    if inspect.iscoroutinefunction(inner):
        return True
    # An object whose __call__ is async.
    return not inspect.isfunction(inner) and inspect.iscoroutinefunction(type(inner).__call__)


async def _one(calls: Calls, item: Any) -> tuple[bool, Any]:
    """One call: ``(True, result)`` or ``(False, exception)``."""
    import asyncio

    try:
        args, kwargs = call_args(calls.mode, item, calls.kwargs)
        if calls.timeout is None:
            return True, await calls.fn(*args, **kwargs)
        async with asyncio.timeout(calls.timeout) as deadline:
            return True, await calls.fn(*args, **kwargs)
    except TimeoutError as exc:
        if calls.timeout is not None and deadline.expired():
            error = TaskTimeoutError(
                f"the call ran longer than the timeout of {calls.timeout:g}s and was cancelled; "
                f"its worker and its other calls went on"
            )
            # The cause shows where the coroutine was when it was cancelled.
            cancelled = exc.__cause__ or exc.__context__
            error.__cause__ = explained(calls, item, cancelled) if cancelled is not None else None
            return False, error
        return False, explained(calls, item, exc)
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # fanmap cancels the chunk (the map stopped): not this call's outcome
        return False, explained(calls, item, exc)  # the call's own: something it awaited was cancelled
    except (Exception, SystemExit) as exc:
        return False, explained(calls, item, exc)


async def _timed(calls: Calls, item: Any) -> tuple[bool, Any, float, float]:
    begun = time.perf_counter()
    ok, value = await _one(calls, item)
    return ok, value, begun, time.perf_counter() - begun


async def call_chunk_async(calls: Calls, items: Sequence[Any]) -> Ran:
    """Call the async function on every item of a chunk, all at once; see `call_chunk`.

    Every item runs (``stop_on_error`` does not apply: the calls run together). With
    ``calls.timed`` each coroutine's seconds and start come back too.
    """
    import asyncio

    times: Times | None = None
    if calls.timed:
        timed = await asyncio.gather(*(_timed(calls, item) for item in items))
        outcomes = [(ok, value) for ok, value, _, _ in timed]
        times = [seconds for _, _, _, seconds in timed], [begun for _, _, begun, _ in timed]
    elif len(items) == 1:
        outcomes = [await _one(calls, items[0])]
    else:
        outcomes = await asyncio.gather(*(_one(calls, item) for item in items))
    results: list[Any] = []
    errors: dict[int, BaseException] | None = None
    for pos, (ok, value) in enumerate(outcomes):
        if ok:
            results.append(value)
        else:
            results.append(None)
            if errors is None:
                errors = {}
            errors[pos] = value
    return results, errors, times


async def chunk_with_values(
    calls: Calls, per_worker: PerWorker | None, items: Sequence[Any], scope: str
) -> Ran:
    """`call_chunk_async` with this worker's per-worker values (made first if need be)."""
    ran, _, _ = await timed_chunk(calls, per_worker, items, scope)
    return ran


async def timed_chunk(
    calls: Calls, per_worker: PerWorker | None, items: Sequence[Any], scope: str
) -> tuple[Ran, float, float]:
    """`chunk_with_values`, with the seconds of its calls and of the per-worker factories
    this chunk made (chunks that only waited for them count none: the time is counted once)."""
    setup = 0.0
    if per_worker is not None:
        made = made_here(scope)
        mine = made.is_new(per_worker)
        began = time.perf_counter()
        try:
            values = await made.avalues_for(per_worker)
        except WorkerInitError as exc:
            failed: Ran = [None] * len(items), dict.fromkeys(range(len(items)), exc), None
            return failed, 0.0, time.perf_counter() - began if mine else 0.0
        if mine:
            setup = time.perf_counter() - began
        if per_worker.inject:
            calls = calls.with_keywords(values)
    begun = time.perf_counter()
    ran = await call_chunk_async(calls, items)
    return ran, time.perf_counter() - begun, setup


class LoopThread:
    """An event loop that runs for good in a daemon thread of its own."""

    def __init__(self, name: str, setup: Callable[[], None] | None = None) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            import asyncio

            asyncio.set_event_loop(self.loop)
            if setup is not None:
                setup()
            ready.set()
            try:
                self.loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.close()

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()
        ready.wait()

    def start(self, coro: Coroutine[Any, Any, T]) -> Any:
        """Schedule ``coro`` in the loop; return its `concurrent.futures.Future`."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` in the loop and wait for its result (from another thread)."""
        result: T = self.start(coro).result(timeout)
        return result


_loops: dict[str, LoopThread] = {}
_loops_lock = threading.Lock()


def loop_thread(name: str, setup: Callable[[], None] | None = None) -> LoopThread:
    """This process's loop of that name, started on first use."""
    with _loops_lock:
        found = _loops.get(name)
        if found is None or not found.thread.is_alive():
            found = _loops[name] = LoopThread(f"fanmap-{name}", setup)
        return found


def _forget_after_fork() -> None:
    # A forked child has none of its parent's threads: the loops are not running there.
    global _loops_lock
    _loops.clear()
    _loops_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
