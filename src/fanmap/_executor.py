"""`Executor`: a `concurrent.futures.Executor` with fanmap behind it.

```
ex.submit(fn, *args, **kwargs) ──► one submit thread (the function `_apply` over
ex.map(fn, xs, ...)                (fn, args) items) ──► the engine ──► the executor's
                                   own pool (never shared with plain maps)
```

Every call goes through one run of the engine, so ``max_workers`` bounds the workers
however many functions are submitted. The stdlib's contract holds (`submit`'s
signature, lazy `map` with ``timeout``, ``chunksize`` and ``buffersize``, `shutdown`
with ``cancel_futures``); where fanmap is deliberately better, the difference is
documented: a worker that dies fails only its own future, and the executor goes on.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar, Unpack

from . import _pools
from ._api import ParallelFunction
from ._config import OptionsDict, validate
from ._perworker import PerWorker

__all__ = ["Executor"]

T = TypeVar("T")
_tags = itertools.count()
_live: weakref.WeakSet[Executor] = weakref.WeakSet()


def _apply(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def _apply_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    return [fn(*args) for args in chunk]


class _Tag:
    """Marks an executor's pools; hashable and unique."""

    __slots__ = ("number",)

    def __init__(self) -> None:
        self.number = next(_tags)

    def __repr__(self) -> str:
        return f"<executor {self.number}>"


class _Shared:
    """What an executor and its `options` views share: shutdown, pending calls, runs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.shutdown = False
        self.pending: set[Future[Any]] = set()
        self.functions: list[ParallelFunction[..., Any]] = []


class Executor(concurrent.futures.Executor):
    """A `concurrent.futures.Executor` that runs calls on fanmap's workers.

    A drop-in for `ProcessPoolExecutor` (or, with ``backend="thread"``,
    `ThreadPoolExecutor`): the same constructor, `submit`, `map`, `shutdown` and
    ``with`` block, real `Future` objects for `as_completed`, `wait`,
    ``asyncio.wrap_future`` and ``loop.run_in_executor``. Behind it: a worker that dies
    fails only its own future (`WorkerCrashedError`, also a ``BrokenProcessPool``) and
    the executor goes on; tracebacks are the worker's real ones; lambdas and closures
    can be submitted; ``timeout`` and ``retries`` apply per call.

    Args:
        max_workers: The number of workers (default: the usable CPUs).
        mp_context: A `multiprocessing` context: its start method is used.
        initializer: Called once in each worker before its first call.
        initargs: Arguments for ``initializer``.
        max_tasks_per_child: Replace a worker after this many calls.
        **options: fanmap's options (``backend``, ``timeout``, ``retries``, ``retry_on``,
            ``start_method``, ...). ``on_error`` does not apply: each future holds its
            own exception.

    Raises:
        ValueError: ``max_workers`` is 0 or less, or an option value is out of range.
        TypeError: ``on_error``, an unknown option, or an initializer that is not callable.

    Examples:
        >>> from fanmap import Executor
        >>> with Executor(max_workers=2, backend="thread") as ex:
        ...     future = ex.submit(pow, 2, 10)
        ...     print(future.result(), list(ex.map(abs, [-1, -2])))
        1024 [1, 2]
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        **options: Unpack[OptionsDict],
    ) -> None:
        given: dict[str, Any] = dict(options)
        if "on_error" in given:
            raise TypeError(
                "on_error does not apply to an Executor: each future holds its own result or "
                "exception (use fanmap's map with on_error= to collect failures in a list)"
            )
        if max_workers is not None:
            if max_workers <= 0:
                raise ValueError("max_workers must be greater than 0")
            given["workers"] = max_workers
        if mp_context is not None:
            given["start_method"] = mp_context.get_start_method()
        if max_tasks_per_child is not None:
            given["max_tasks_per_worker"] = max_tasks_per_child
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        # One call per message by default, as the standard library sends them: calls
        # submitted together may differ wildly in length, and a quick one must not wait
        # behind a slow one in the same batch. (chunksize= batches them.)
        given.setdefault("chunksize", 1)
        checked = validate(given)
        self._per_worker = None
        if initializer is not None:
            init = functools.partial(initializer, *initargs)
            self._per_worker = PerWorker({"initializer": init}, None, inject=False)
        self._tag = _Tag()
        self._shared = _Shared()
        self._pid = os.getpid()
        self._options = checked
        self._function = self._make(checked)
        self._shared.functions.append(self._function)
        _live.add(self)

    def _make(self, options: dict[str, Any]) -> ParallelFunction[..., Any]:
        function: ParallelFunction[..., Any] = ParallelFunction(
            _apply, dict(options), per_worker=self._per_worker
        )
        function._pool_tag = self._tag
        return function

    def options(self, **options: Unpack[OptionsDict]) -> Executor:
        """Return a view of this executor whose calls use other options (``timeout=5``).

        The view shares this executor's shutdown and its pending futures; its calls run
        in a pool of their own of the same size, opened when first used.
        """
        view = object.__new__(Executor)
        view.__dict__.update(self.__dict__)
        view._options = {**self._options, **validate(options)}
        if "on_error" in view._options:
            raise TypeError("on_error does not apply to an Executor: each future holds its own exception")
        view._function = view._make(view._options)
        with self._shared.lock:
            self._shared.functions.append(view._function)
        return view

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``; return its `Future`.

        Raises:
            RuntimeError: The executor was shut down.
        """
        shared = self._shared
        with shared.lock:
            if shared.shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: Future[T] = self._function.submit(fn, *args, **kwargs)
            shared.pending.add(future)
        future.add_done_callback(shared.pending.discard)
        return future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[T]:
        """Like the builtin ``map``, calls in parallel; an iterator over the results, in order.

        As in the standard library: the calls are submitted now (with ``buffersize``,
        only that many ahead of the results consumed), ``timeout`` counts from this call
        and is raised by ``__next__`` as `TimeoutError`, and ``chunksize`` items go to a
        worker as one task. An exception a call raised is raised when its result is
        reached; the calls still pending are then cancelled.
        """
        if buffersize is not None and (
            isinstance(buffersize, bool) or not isinstance(buffersize, int) or buffersize < 1
        ):
            raise ValueError("buffersize must be None or > 0")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end = None if timeout is None else time.monotonic() + timeout
        if chunksize == 1:
            tasks: Iterator[tuple[Callable[..., Any], tuple[Any, ...]]] = (
                (fn, args) for args in zip(*iterables, strict=False)
            )
        else:
            chunks = iter(functools.partial(_take, zip(*iterables, strict=False), chunksize), [])
            tasks = ((_apply_chunk, (fn, chunk)) for chunk in chunks)
        futures: deque[Future[Any]] = deque()
        for task in itertools.islice(tasks, buffersize):
            futures.append(self.submit(task[0], *task[1]))
        return _results(self, futures, tasks, end, chunksize > 1, buffersize is not None)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; with ``cancel_futures``, cancel those not started yet.

        With ``wait=True`` return once every pending call has finished and the workers
        have stopped; with ``wait=False`` return at once: the pending calls still finish.
        """
        with self._shared.lock:
            self._shared.shutdown = True
            pending = list(self._shared.pending)
        if cancel_futures:
            for future in pending:
                future.cancel()
        if wait:
            self._finish(pending)
        else:
            threading.Thread(target=self._finish, args=(pending,), daemon=True).start()

    def _finish(self, pending: list[Future[Any]]) -> None:
        concurrent.futures.wait(pending)
        for function in list(self._shared.functions):  # this executor's and its views'
            function._stop_submitter()
        _pools.close_tagged(self._tag)


def _take(items: Iterator[tuple[Any, ...]], count: int) -> list[tuple[Any, ...]]:
    return list(itertools.islice(items, count))


def _results(
    executor: Executor,
    futures: deque[Future[Any]],
    tasks: Iterator[tuple[Callable[..., Any], tuple[Any, ...]]],
    end: float | None,
    chunked: bool,
    buffered: bool,
) -> Iterator[Any]:
    try:
        while futures:
            future = futures.popleft()
            remaining = None if end is None else end - time.monotonic()
            try:
                result = future.result(remaining)
            except concurrent.futures.TimeoutError:
                raise TimeoutError("the next result of map() was not ready in time") from None
            if buffered:
                for task in itertools.islice(tasks, 1):
                    futures.append(executor.submit(task[0], *task[1]))
            if chunked:
                yield from result
            else:
                yield result
    finally:
        for future in futures:
            future.cancel()


def _finish_pending_work() -> None:
    # As the standard library's executors do: work submitted before the interpreter
    # exits is finished first, when the main thread ends (before exit handlers run, and
    # while new processes may still be started: Python 3.12 forbids it later).
    for executor in list(_live):
        if executor._pid != os.getpid():
            continue  # a forked worker inherited it: not this process's work
        with executor._shared.lock:
            pending = list(executor._shared.pending)
        if pending:
            concurrent.futures.wait(pending)


threading._register_atexit(_finish_pending_work)  # type: ignore[attr-defined]
os.register_at_fork(after_in_child=_live.clear)  # a forked worker has no executors of its own
