"""The thread backend: a pool of threads in the caller's process.

Nothing is pickled, so anything can be passed and returned, and shared objects are
simply shared. Threads run Python code one at a time (the GIL) unless the code
releases it: use threads for I/O-bound work and for libraries that release the GIL.

A thread cannot be stopped from outside: when a call runs past ``timeout`` its item
fails with `TaskTimeoutError`, the thread is abandoned (it finishes in the background,
its result ignored) and a new thread takes its place.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Hashable
from typing import Final

from .._calls import Calls
from .._chunk import Chunk, Done, Event, Lost, RunSpec
from .._config import Options
from .._errors import WorkerInitError
from .._perworker import PerWorker, call_with_values, made_here, teardown_thread
from . import wait_timeout

__all__ = ["BACKEND", "ThreadBackend", "ThreadPool"]

#: Seconds between looks at a thread whose per-worker factories run.
_INIT_POLL = 0.05


class _Thread:
    __slots__ = ("chunks", "inbox", "initializing", "label", "started", "thread")

    def __init__(self, index: int, generation: int, outbox: queue.SimpleQueue[tuple[_Thread, Done]]) -> None:
        self.inbox: queue.SimpleQueue[tuple[Calls, PerWorker | None, Chunk] | None] = queue.SimpleQueue()
        self.chunks: list[Chunk] = []
        self.started = 0.0
        self.initializing = False
        self.label = f"thread {index}" + (f".{generation}" if generation else "")
        self.thread = threading.Thread(
            target=self._serve, args=(outbox,), name=f"fanmap-{self.label}", daemon=True
        )
        self.thread.start()

    def _serve(self, outbox: queue.SimpleQueue[tuple[_Thread, Done]]) -> None:
        try:
            self._run(outbox)
        finally:
            teardown_thread()  # each thread makes its own per-worker values

    def _run(self, outbox: queue.SimpleQueue[tuple[_Thread, Done]]) -> None:
        while True:
            job = self.inbox.get()
            if job is None:
                return
            calls, per_worker, chunk = job
            if per_worker is not None and per_worker.key not in made_here("thread").values:
                self.initializing = True  # a factory's time is not a call's
                try:
                    made_here("thread").values_for(per_worker)
                except WorkerInitError:
                    pass  # call_with_values reports it for the chunk
                finally:
                    self.started = time.monotonic()
                    self.initializing = False
            begun = time.perf_counter()
            results, errors = call_with_values(calls, per_worker, chunk.items, "thread")
            outbox.put((self, Done(chunk, results, errors, time.perf_counter() - begun, self.label)))
            del job, calls, chunk, results, errors  # hold nothing of a finished call while idle


class ThreadPool:
    """Threads that run chunks; replaced when abandoned after a timeout."""

    def __init__(self, options: Options) -> None:
        self.workers = options.workers
        self._outbox: queue.SimpleQueue[tuple[_Thread, Done]] = queue.SimpleQueue()
        self._threads = [_Thread(i, 0, self._outbox) for i in range(self.workers)]
        self._generation = 0
        self._calls: Calls | None = None
        self._per_worker: PerWorker | None = None
        self._timeout: float | None = None
        self._closed = False

    target_seconds = None

    @property
    def usable(self) -> bool:
        return not self._closed

    def begin(self, spec: RunSpec) -> None:
        self._calls = spec.calls.with_keywords(spec.state)
        self._per_worker = spec.per_worker
        self._timeout = spec.timeout

    def room(self, depth: int) -> int:
        return sum(max(0, depth - len(t.chunks)) for t in self._threads)

    def limit(self) -> int | None:
        return None

    def submit(self, chunk: Chunk) -> int | None:
        assert self._calls is not None
        thread = min(self._threads, key=lambda t: len(t.chunks))
        if not thread.chunks:
            thread.started = time.monotonic()
        thread.chunks.append(chunk)
        thread.inbox.put((self._calls, self._per_worker, chunk))
        return None

    def wait(self, timeout: float | None) -> list[Event]:
        busy = [t for t in self._threads if t.chunks]
        if not busy:
            return []
        limit = self._timeout
        calling = [t.started for t in busy if not t.initializing]
        timeout = wait_timeout(timeout, min(calling, default=None), limit)
        starting = [t for t in busy if t.initializing]
        if starting:  # look again soon: the call's clock starts when its factory is done
            timeout = _INIT_POLL if timeout is None else min(timeout, _INIT_POLL)
            init_limit = self._per_worker.timeout if self._per_worker is not None else None
            timeout = wait_timeout(timeout, min(t.started for t in starting), init_limit)
        events: list[Event] = []
        try:
            item = self._outbox.get(timeout=timeout)
        except queue.Empty:
            item = None
        while item is not None:
            self._accept(*item, events)
            try:
                item = self._outbox.get_nowait()
            except queue.Empty:
                item = None
        now = time.monotonic()
        init_limit = self._per_worker.timeout if self._per_worker is not None else None
        for t in busy:
            if t not in self._threads or not t.chunks:
                continue
            if t.initializing:
                if init_limit is not None and now - t.started >= init_limit:
                    self._abandon(t, init_limit, events, initializing=True)
            elif limit is not None and now - t.started >= limit:
                self._abandon(t, limit, events)
        return events

    def _accept(self, thread: _Thread, done: Done, events: list[Event]) -> None:
        if thread not in self._threads:
            return  # abandoned after a timeout: its late result is ignored
        thread.chunks.remove(done.chunk)
        thread.started = time.monotonic()
        events.append(done)

    def _abandon(
        self, thread: _Thread, limit: float, events: list[Event], initializing: bool = False
    ) -> None:
        reason = f"ran longer than the timeout of {limit:g}s; {thread.label} was abandoned"
        for i, chunk in enumerate(thread.chunks):
            if i == 0 and initializing:
                error = WorkerInitError(
                    f"a per-worker factory did not finish within the timeout of {limit:g}s in "
                    f"{thread.label}; the thread was abandoned (a thread cannot be stopped)"
                )
                n = len(chunk.items)
                events.append(Done(chunk, [None] * n, dict.fromkeys(range(n), error), 0.0, thread.label))
                continue
            events.append(Lost(chunk, "timeout" if i == 0 else "unstarted", reason, None, thread.label))
        thread.inbox.put(None)
        self._generation += 1
        index = self._threads.index(thread)
        self._threads[index] = _Thread(index, self._generation, self._outbox)

    def end(self, *, abort: bool) -> None:
        if abort:
            # Queued chunks cannot be taken back from a thread's inbox: start afresh.
            for i, t in enumerate(self._threads):
                if t.chunks:
                    t.inbox.put(None)
                    self._generation += 1
                    self._threads[i] = _Thread(i, self._generation, self._outbox)
        self._calls = None

    def close(self) -> None:
        self._closed = True
        for t in self._threads:
            t.inbox.put(None)
        for t in self._threads:
            if not t.chunks:
                t.thread.join(5.0)


class ThreadBackend:
    """Open pools of threads."""

    name = "thread"
    shares_memory = True

    def pool_key(self, options: Options) -> Hashable:
        return ("thread", options.workers, options.pool_tag)

    def open_pool(self, options: Options) -> ThreadPool:
        return ThreadPool(options)


BACKEND: Final = ThreadBackend()
