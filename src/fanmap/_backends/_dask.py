"""The Dask backend: chunks run as tasks on a `distributed` cluster.

```
caller (engine) ── submit(chunk) ──► Client.submit(run_chunk, ...) ──► scheduler ──► a worker
      ▲                                                                              │
      └── wait(): a queue fed by done callbacks ◄──── (results, errors, elapsed) ◄───┘
```

The map's keyword arguments are scattered once per map and passed to every task by
reference. Chunks are sized to run for about `CHUNK_SECONDS` (a task costs Dask a
millisecond or two, and more per round trip), and the engine keeps a bounded number of
them in flight, so ``imap`` over a generator stays lazy. Outstanding futures are
cancelled when the map fails or its iterator is closed.

A task's own exception is caught in the task (as in a local worker) and sent back with
its traceback; a worker lost while running a chunk (after Dask's own retries) reports
the chunk as crashed. Dask cannot stop a running task: ``timeout`` fails the item and
cancels the future, but the call may run on in the worker. With a timeout, no task is
queued behind a running one, so that its time counts from when it starts.

An ``async def`` function's chunk holds up to ``concurrency`` items, whose calls run
together in the Dask worker's own event loop (one per worker process, for its life);
``timeout`` cancels a late call there.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Hashable
from typing import Any, Final

from .. import _context
from .._aio import GRACE, chunk_with_values, loop_thread
from .._calls import Calls
from .._chunk import Chunk, Done, Event, Lost, RunSpec
from .._config import Options
from .._errors import BackendUnavailableError
from .._perworker import PerWorker, call_with_values
from .._traceback import capture, rebuild
from . import wait_timeout

__all__ = ["BACKEND", "CHUNK_SECONDS", "DaskBackend", "DaskPool"]

#: Seconds of work a chunk aims at on Dask (a task costs a millisecond or two).
CHUNK_SECONDS: Final = 0.2


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise BackendUnavailableError(
            'backend="dask" needs Dask\'s distributed scheduler, which is not installed: '
            "pip install 'fanmap[dask]'"
        ) from None
    return distributed


def run_chunk(
    calls: Calls, kwargs: dict[str, Any], per_worker: PerWorker | None, items: Any
) -> tuple[list[Any], Any, Any]:
    """The task: run a chunk on a Dask worker, as a local worker would."""
    begun = time.perf_counter()
    calls = calls.with_kwargs(kwargs)
    if calls.is_async:  # in the worker's event loop, with the calls of other tasks
        loop = loop_thread("worker-loop", _context.mark_task_thread)
        results, errors, times = loop.run(chunk_with_values(calls, per_worker, items, "process"))
    else:
        with _context.task_scope():  # a parallel function called in here runs serially
            results, errors, times = call_with_values(calls, per_worker, items, "process")
    captured = None if errors is None else {pos: capture(exc) for pos, exc in errors.items()}
    elapsed = time.perf_counter() - begun
    return results, captured, elapsed if times is None else (elapsed, times)


class DaskPool:
    """Chunks as Dask tasks, on a client that is the user's or this pool's own."""

    target_seconds = CHUNK_SECONDS

    chunks_together = False

    queue_shared = False

    def __init__(self, backend: DaskBackend, options: Options) -> None:
        distributed = _distributed()
        self._distributed = distributed
        self._own_cluster: Any = None
        self._own_client = False
        #: backend="dask" follows the current client: a pool of another one is dropped.
        self._follows_current = backend.client is None and backend.address is None
        if backend.client is not None:
            self._client = backend.client
        elif backend.address is not None:
            self._client = distributed.Client(backend.address, set_as_default=False)
            self._own_client = True
        else:
            try:
                self._client = distributed.get_client()
            except ValueError:
                self._own_cluster = distributed.LocalCluster(
                    n_workers=options.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",  # no fixed port: two clusters may run at once
                    silence_logs=50,
                )
                self._client = distributed.Client(self._own_cluster, set_as_default=False)
                self._own_client = True
        threads = self._client.nthreads()
        self.workers = max(1, sum(threads.values()) if threads else options.workers)
        self._futures: dict[Any, tuple[Chunk, float]] = {}
        # Done callbacks land here (from Dask's own thread); wait() reads them.
        self._finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._calls: Calls | None = None
        self._per_worker: PerWorker | None = None
        self._kwargs: Any = None
        self._timeout: float | None = None
        self._closed = False

    @property
    def usable(self) -> bool:
        if self._closed or self._client.status != "running":
            return False
        if self._follows_current:
            try:
                current = self._distributed.get_client()
            except ValueError:
                current = None
            # An own cluster serves only while the user has no client of their own.
            return current is None if self._own_client else current is self._client
        return True

    def begin(self, spec: RunSpec) -> None:
        # The keywords travel apart (scattered); the plain function goes with the task
        # (Dask pickles it, by reference where it can), not the decorated object.
        self._calls = spec.calls.with_kwargs({})
        self._per_worker = spec.per_worker
        # An async call is cancelled at its timeout in the worker: past it and a grace,
        # its loop is blocked.
        self._timeout = spec.timeout + GRACE if spec.timeout and spec.calls.is_async else spec.timeout
        # The map's keywords go to the cluster once, not with every task.
        # One object under a key of its own: scattering the dict itself would name the
        # data after its keys, which the next map's keywords would collide with.
        # Broadcast, so that losing one worker does not lose them for every later task.
        kwargs = spec.calls.kwargs
        self._kwargs = self._client.scatter([kwargs], hash=False, broadcast=True)[0] if kwargs else {}

    def room(self, depth: int) -> int:
        # A timeout is counted from submission, as Dask does not say when a task starts:
        # with one, a task is submitted only to a free thread, so it starts at once.
        if self._timeout is not None:
            depth = 1
        return self.workers * depth - len(self._futures)

    def limit(self) -> int | None:
        return None

    def submit(self, chunk: Chunk) -> int | None:
        future = self._client.submit(
            run_chunk, self._calls, self._kwargs, self._per_worker, chunk.items, pure=False
        )
        self._futures[future] = (chunk, time.monotonic())
        future.add_done_callback(self._finished.put)
        return None

    def wait(self, timeout: float | None) -> list[Event]:
        if not self._futures:
            return []
        timeout = wait_timeout(timeout, min(t for _, t in self._futures.values()), self._timeout)
        events: list[Event] = []
        try:
            future = self._finished.get(timeout=timeout)
            while True:
                if future in self._futures:  # else: cancelled or timed out already
                    if future.status in ("finished", "error", "cancelled"):
                        events.append(self._outcome(future, self._futures.pop(future)[0]))
                    else:  # "lost" with its worker: Dask runs it again; wait for that
                        future.add_done_callback(self._finished.put)
                future = self._finished.get_nowait()
        except queue.Empty:
            pass
        if self._timeout is not None:
            now = time.monotonic()
            for future, (chunk, started) in list(self._futures.items()):
                if now - started >= self._timeout:
                    del self._futures[future]
                    future.cancel()
                    reason = f"ran longer than the timeout of {self._timeout:g}s; its Dask task was cancelled"
                    events.append(Lost(chunk, "timeout", reason, None, "a Dask worker"))
        return events

    def _outcome(self, future: Any, chunk: Chunk) -> Event:
        if future.status == "finished":
            results, captured, elapsed = future.result()
            errors = None if not captured else {pos: rebuild(info) for pos, info in captured.items()}
            elapsed, times = elapsed if isinstance(elapsed, tuple) else (elapsed, None)
            if isinstance(times, tuple):  # calls' starts: Dask's workers, on clocks of their own
                times = times[0]  # machines, share one label here, so the starts cannot be compared
            return Done(chunk, results, errors, elapsed, "a Dask worker", times)
        try:
            exc = future.exception(timeout=30)  # fetched from the scheduler: a round trip
        except BaseException as err:  # cancelled by Dask itself
            exc = err
        cause = f"{type(exc).__name__}: {exc}" if exc is not None else f"its status is {future.status!r}"
        reason = f"the Dask task was lost ({cause})"
        return Lost(chunk, "crash", reason, None, "a Dask worker")

    def end(self, *, abort: bool) -> None:
        if self._futures:
            self._client.cancel(list(self._futures))
            self._futures.clear()
        self._kwargs = None
        self._calls = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.end(abort=True)
        if self._own_client:
            self._client.close()
        if self._own_cluster is not None:
            self._own_cluster.close()


class DaskBackend:
    """Run chunks on a Dask cluster.

    ``backend="dask"`` uses the current ``distributed.Client`` if there is one, and
    otherwise starts a ``LocalCluster`` of ``workers`` single-threaded worker processes
    that fanmap owns and closes. ``DaskBackend(client)`` or
    ``DaskBackend(address="tcp://...")`` uses a cluster you run, and never shuts it down.

    Args:
        client: A ``distributed.Client`` to run on.
        address: A scheduler's address, to connect a client of fanmap's own to.

    Raises:
        BackendUnavailableError: ``distributed`` is not installed.

    Examples:
        >>> from fanmap import DaskBackend, parallel
        >>> square = parallel(lambda x: x * x, backend=DaskBackend(address="tcp://scheduler:8786"))
        >>> square.options(backend="serial").map([1, 2])
        [1, 4]
    """

    name = "dask"
    shares_memory = False

    def __init__(self, client: Any = None, *, address: str | None = None) -> None:
        if client is not None and address is not None:
            raise TypeError("give DaskBackend a client or an address, not both")
        self.client = client
        self.address = address

    def __repr__(self) -> str:
        where = f"address={self.address!r}" if self.address else (repr(self.client) if self.client else "")
        return f"DaskBackend({where})"

    def pool_key(self, options: Options) -> Hashable:
        return ("dask", id(self), options.workers, options.pool_tag)

    def open_pool(self, options: Options) -> DaskPool:
        return DaskPool(self, options)


BACKEND: Final = DaskBackend()
