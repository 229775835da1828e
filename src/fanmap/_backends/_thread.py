"""The thread backend: a pool of threads in the caller's process.

Nothing is pickled, so anything can be passed and returned, and shared objects are
simply shared. Threads run Python code one at a time (the GIL) unless the code
releases it: use threads for I/O-bound work and for libraries that release the GIL.

A thread cannot be stopped from outside: when a call runs past ``timeout`` its item
fails with `TaskTimeoutError`, the thread is abandoned (it finishes in the background,
its result ignored) and a new thread takes its place.

Chunks of a plain function wait in one queue that every thread takes from as it
finishes a chunk (the caller hands a chunk straight to a thread only when one is idle),
so a thread never waits for the caller between chunks, and a queued chunk goes to
whichever thread is free first.

For an ``async def`` function each thread runs its own event loop (kept for the
thread's life) with up to ``concurrency`` calls in it; a late call is cancelled there.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # asyncio is imported where used: plain maps never load it
    import asyncio

from .._aio import GRACE, timed_chunk
from .._calls import Calls, Times
from .._chunk import Chunk, Done, Event, Lost, RunSpec
from .._config import Options
from .._errors import WorkerInitError
from .._perworker import PerWorker, call_with_values, made_here, teardown_thread
from . import wait_timeout

__all__ = ["BACKEND", "ThreadBackend", "ThreadPool"]

#: Seconds between looks at a thread whose per-worker factories run.
_INIT_POLL = 0.05
#: Seconds the caller lets results gather while threads have chunks queued.
_GATHER = 0.001
#: Results at one wake from which the caller lets the next ones gather.
_BURST = 4
#: ... if the queued chunks keep every thread busy this many times `_GATHER` meanwhile.
_AHEAD = 2
#: Weight kept by the earlier chunks' times at each new one.
_FADE = 0.7
#: Threads the caller wakes at most before it lets them take the GIL (see `_dispatch`).
_WAKE_BATCH = 8

Job = tuple[Calls, "PerWorker | None", Chunk]


class _Spare:
    """Chunks no thread holds yet: a thread takes the next when it finishes one.

    The lock makes taking a chunk and abandoning a thread exclusive: an abandoned thread
    takes nothing more, and a thread that took a chunk is not abandoned for the last one.
    """

    __slots__ = ("jobs", "lock")

    def __init__(self) -> None:
        self.jobs: collections.deque[Job] = collections.deque()
        self.lock = threading.Lock()

    def finish(self, thread: _Thread, done: Done, outbox: Outbox, take: bool) -> Job | None:
        """Report a finished chunk and, if ``take``, take the next spare one, in one step
        under the lock: the caller, holding it, sees every chunk a thread has taken."""
        with self.lock:
            job = None
            if take and self.jobs and thread.current:
                thread.started = time.monotonic()  # the timeout's clock starts now
                job = self.jobs.popleft()
            outbox.put((thread, done, None if job is None else job[2]))
        return job


class _Thread:
    __slots__ = (
        "async_mode",
        "begun",
        "chunks",
        "current",
        "inbox",
        "initializing",
        "label",
        "loop",
        "spare",
        "started",
        "thread",
        "wake",
    )

    def __init__(self, index: int, generation: int, outbox: Outbox, spare: _Spare) -> None:
        self.inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.spare = spare
        self.chunks: collections.deque[Chunk] = collections.deque()
        self.started = 0.0
        self.initializing = False
        self.current = True  # False once abandoned or replaced
        # For an async function: the thread's own event loop (for its whole life), whether
        # it runs now (then new chunks wake it), and when each chunk it holds was sent.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.async_mode = False
        self.wake: asyncio.Event | None = None
        self.begun: dict[Chunk, float] = {}
        self.label = f"thread {index}" + (f".{generation}" if generation else "")
        self.thread = threading.Thread(
            target=self._serve, args=(outbox,), name=f"fanmap-{self.label}", daemon=True
        )
        self.thread.start()

    def _serve(self, outbox: Outbox) -> None:
        try:
            self._run(outbox)
        finally:
            teardown_thread()  # each thread makes its own per-worker values
            if self.loop is not None:
                self.loop.close()

    def tell(self, job: Job | None) -> None:
        """Hand the thread a chunk (or None: stop), waking its event loop if it runs."""
        self.inbox.put(job)
        if self.async_mode and self.loop is not None and self.wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                self.loop.call_soon_threadsafe(self.wake.set)

    def _run(self, outbox: Outbox) -> None:
        later: list[Job] = []
        job: Job | None = None
        while True:
            if job is None:
                job = later.pop() if later else self.inbox.get()
                if job is None:
                    return
            calls, per_worker, chunk = job
            if calls.is_async:
                if self.loop is None:
                    import asyncio

                    self.loop = asyncio.new_event_loop()
                if not self.loop.run_until_complete(self._run_async(job, outbox, later)):
                    return
                job = None
                continue
            failed: WorkerInitError | None = None
            setup = 0.0
            if per_worker is not None and per_worker.key not in made_here("thread").values:
                self.initializing = True  # a factory's time is not a call's
                making = time.perf_counter()
                try:
                    made_here("thread").values_for(per_worker)
                except WorkerInitError as exc:
                    failed = exc
                finally:
                    setup = time.perf_counter() - making
                    self.started = time.monotonic()
                    self.initializing = False
            begun = time.perf_counter()
            errors: dict[int, BaseException] | None
            times: Times | None = None
            if failed is not None:  # every item fails with it; the factory is not run twice
                n = len(chunk.items)
                results, errors = [None] * n, dict.fromkeys(range(n), failed)
            else:
                results, errors, times = call_with_values(calls, per_worker, chunk.items, "thread")
            elapsed = time.perf_counter() - begun
            done = Done(chunk, results, errors, elapsed, self.label, times, setup)
            job = self.spare.finish(self, done, outbox, take=not later)  # the next, without the caller
            del calls, chunk, results, errors, failed, done  # hold nothing of a finished call

    async def _run_async(
        self,
        first: Job,
        outbox: Outbox,
        later: list[Job],
    ) -> bool:
        """Run chunks of an async function together until none is left; False: stop."""
        import asyncio

        wake = self.wake = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        def start(job: Job) -> None:
            task = asyncio.ensure_future(self._chunk_async(*job, outbox))
            tasks.add(task)
            task.add_done_callback(finished)

        def finished(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            wake.set()

        self.async_mode = True  # from now on, the pool wakes the loop for a new chunk
        try:
            start(first)
            while True:
                wake.clear()
                while not later:
                    try:
                        job = self.inbox.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:  # stop: the calls in flight are cancelled
                        for task in tasks:
                            task.cancel()
                        await asyncio.gather(*tasks, return_exceptions=True)
                        return False
                    if job[0].is_async:
                        start(job)
                    else:
                        later.append(job)  # a plain function's run: after these
                if not tasks:
                    self.async_mode = False
                    if later or self.inbox.empty():
                        return True
                    self.async_mode = True  # a chunk came meanwhile
                    continue
                await wake.wait()
        finally:
            self.async_mode = False

    async def _chunk_async(
        self,
        calls: Calls,
        per_worker: PerWorker | None,
        chunk: Chunk,
        outbox: Outbox,
    ) -> None:
        n = len(chunk.items)
        fresh = per_worker is not None and made_here("thread").is_new(per_worker)
        if fresh:
            self.initializing = True  # a factory's time is not a call's
        times: Times | None = None
        elapsed = setup = 0.0
        try:
            (results, errors, times), elapsed, setup = await timed_chunk(
                calls, per_worker, chunk.items, "thread"
            )
        except Exception as exc:  # fanmap's own failure: the chunk's items fail with it
            results, errors = [None] * n, dict.fromkeys(range(n), exc)
        finally:
            if fresh:
                self.initializing = False
                self.begun = dict.fromkeys(self.begun, time.monotonic())
        outbox.put((self, Done(chunk, results, errors, elapsed, self.label, times, setup), None))


#: What threads report: the thread, its finished chunk, and the chunk it took next, if any.
Outbox = queue.SimpleQueue[tuple[_Thread, Done, Chunk | None]]


class ThreadPool:
    """Threads that run chunks; replaced when abandoned after a timeout.

    Every step is O(1) whatever the number of threads (hundreds for I/O-bound work):
    idle threads wait in a queue of their own, chunks of a plain function that no thread
    is idle for wait in `_Spare` (taken by the threads themselves), and a count says how
    many chunks are out.
    """

    def __init__(self, options: Options) -> None:
        self.workers = options.workers
        self._outbox: Outbox = queue.SimpleQueue()
        self._spare = _Spare()
        self._threads = [_Thread(i, 0, self._outbox, self._spare) for i in range(self.workers)]
        self._free: collections.deque[_Thread] = collections.deque(self._threads)
        #: Whether the last wait gathered many results at once (then the next may wait a little).
        self._bursts = False
        #: Seconds a chunk takes to run, lately (whether queued chunks outlast a gathering).
        self._chunk_seconds = 0.0
        #: Threads woken with a chunk since the caller last let the GIL go.
        self._woken = 0
        self._out = 0  # chunks given to current threads or spare, and not back yet
        self._generation = 0
        self._calls: Calls | None = None
        self._per_worker: PerWorker | None = None
        self._timeout: float | None = None
        self._async = False
        self._closed = False

    target_seconds = None

    chunks_together = True

    queue_shared = True

    @property
    def usable(self) -> bool:
        return not self._closed

    def begin(self, spec: RunSpec) -> None:
        self._calls = spec.calls.with_keywords(spec.state)
        self._per_worker = spec.per_worker
        self._timeout = spec.timeout
        self._async = spec.calls.is_async

    def room(self, depth: int) -> int:
        return self.workers * depth - self._out

    def limit(self) -> int | None:
        return None

    def holder(self, chunk: Chunk) -> str | None:
        """The thread a chunk was given to."""
        for t in self._threads:
            if t.chunks and (t.chunks[-1] is chunk or chunk in t.chunks):
                return t.label
        return None

    def _idle(self) -> _Thread | None:
        while self._free:
            thread = self._free.popleft()
            if thread.current and not thread.chunks:
                return thread
        return None

    def _dispatch(self) -> None:
        """Hand spare chunks to idle threads, oldest chunk first."""
        while self._spare.jobs and self._free:
            thread = self._idle()
            if thread is None:
                return
            with self._spare.lock:
                job = self._spare.jobs.popleft() if self._spare.jobs else None
            if job is None:
                self._free.appendleft(thread)
                return
            thread.started = time.monotonic()
            thread.chunks.append(job[2])
            thread.tell(job)
            # A woken thread needs the GIL to start its call, and the caller holds it while
            # it makes the next chunks: hundreds of threads woken in a row would start
            # only once the caller waits. Every few, it lets the GIL go (256 threads on
            # 10 ms sleeps: 94.0 to 90.5 ms a map, medians of 31 interleaved runs).
            self._woken += 1
            if self._woken >= _WAKE_BATCH:
                self._woken = 0
                time.sleep(0)

    def submit(self, chunk: Chunk) -> int | None:
        assert self._calls is not None
        self._out += 1
        job = (self._calls, self._per_worker, chunk)
        if not self._async:  # the first idle thread takes it, or the first to finish
            self._spare.jobs.append(job)
            self._dispatch()
            return None
        # Chunks of an async function run together in a thread's loop: the least busy thread.
        thread = self._free.popleft() if self._free else min(self._threads, key=lambda t: len(t.chunks))
        thread.begun[chunk] = time.monotonic()
        thread.chunks.append(chunk)
        thread.tell(job)
        return None

    def wait(self, timeout: float | None) -> list[Event]:
        if self._out == 0:
            return []
        init_limit = self._per_worker.timeout if self._per_worker is not None else None
        watch = self._timeout is not None or self._per_worker is not None
        busy = [t for t in self._threads if t.chunks] if watch else []
        if watch:
            limit = self._timeout
            if self._async:  # each call is cancelled at its timeout: past it, the loop is blocked
                limit = None if limit is None else limit + GRACE
            calling = [self._oldest(t) for t in busy if not t.initializing]
            timeout = wait_timeout(timeout, min(calling, default=None), limit)
            starting = [t for t in busy if t.initializing]
            if starting:  # look again soon: the call's clock starts when its factory is done
                timeout = _INIT_POLL if timeout is None else min(timeout, _INIT_POLL)
                timeout = wait_timeout(timeout, min(t.started for t in starting), init_limit)
            elif init_limit is not None and busy:  # a thread may be about to start a factory
                timeout = _INIT_POLL if timeout is None else min(timeout, _INIT_POLL)
        events: list[Event] = []
        if (
            self._bursts
            and len(self._spare.jobs) * self._chunk_seconds >= _AHEAD * _GATHER * self.workers
            and (timeout is None or timeout >= _GATHER)
        ):
            # Chunks end many at a time and the queued ones keep every thread busy for a
            # while: rather than wake for every chunk that ends (hundreds of threads end
            # thousands a second), gather them. Not when the queued chunks last less than
            # that (4 threads on 20 µs calls would sit idle most of each gathering).
            time.sleep(_GATHER)
            timeout = 0.0
        self._woken = 0  # the caller lets the GIL go while it waits (and it looks, at least)
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
        self._bursts = len(events) >= _BURST
        now = time.monotonic()
        for t in busy:
            if not t.current or not t.chunks:
                continue
            if t.initializing:
                if init_limit is not None and now - t.started >= init_limit and self._still_initializing(t):
                    self._abandon(t, init_limit, events, initializing=True)
            elif limit is not None and now - self._oldest(t) >= limit and self._late(t, now, limit):
                self._abandon(t, self._timeout or limit, events)
        self._dispatch()  # to threads that became idle, or replaced ones
        return events

    def _late(self, thread: _Thread, now: float, limit: float) -> bool:
        """Whether a thread's call is late; if so, it takes no more spare chunks."""
        if self._async:
            return True
        with self._spare.lock:  # it may have just finished, and taken another chunk
            late = now - thread.started >= limit
            if late:
                thread.current = False
        return late

    def _still_initializing(self, thread: _Thread) -> bool:
        """Whether a thread still runs a per-worker factory; if so, it takes no more chunks."""
        with self._spare.lock:  # it may have just finished, run its chunk and taken another
            if thread.initializing:
                thread.current = False
            return thread.initializing

    def _oldest(self, thread: _Thread) -> float:
        """When the thread's longest-running chunk began."""
        if self._async:
            return min(thread.begun.values(), default=time.monotonic())
        return thread.started

    def _accept(self, thread: _Thread, done: Done, taken: Chunk | None, events: list[Event]) -> None:
        if not thread.current:
            return  # abandoned after a timeout: its late result is ignored
        if self._async:  # they finish in any order
            thread.chunks.remove(done.chunk)
            del thread.begun[done.chunk]
            thread.started = time.monotonic()
        else:
            thread.chunks.popleft()
            if taken is not None:  # the thread took it from the spare ones (and set its clock)
                thread.chunks.append(taken)
            else:
                thread.started = time.monotonic()
        self._out -= 1
        if not thread.chunks:
            self._free.append(thread)
        self._chunk_seconds = _FADE * self._chunk_seconds + (1 - _FADE) * done.elapsed
        events.append(done)

    def _replace(self, thread: _Thread) -> None:
        """Let a thread go (it ends after the call it runs) and start another in its place.

        The chunks queued for it and not taken yet never start: they are reported as
        unstarted (after a timeout) or dropped (the map stopped).
        """
        with self._spare.lock:
            thread.current = False  # it takes no spare chunk from now on
        self._out -= len(thread.chunks)
        while True:
            try:
                thread.inbox.get_nowait()
            except queue.Empty:
                break
        thread.tell(None)
        self._generation += 1
        index = self._threads.index(thread)
        fresh = _Thread(index, self._generation, self._outbox, self._spare)
        self._threads[index] = fresh
        self._free.append(fresh)

    def _abandon(
        self, thread: _Thread, limit: float, events: list[Event], initializing: bool = False
    ) -> None:
        reason = f"ran longer than the timeout of {limit:g}s; {thread.label} was abandoned"
        if self._async and not initializing:
            self._abandon_async(thread, limit, events)
            return
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
        self._replace(thread)

    def _abandon_async(self, thread: _Thread, limit: float, events: list[Event]) -> None:
        """A call blocks the thread's loop: every chunk it holds fails; a new thread takes over."""
        now = time.monotonic()
        reason = (
            f"ran longer than the timeout of {limit:g}s, and {thread.label} did not cancel it within "
            f"{GRACE:g}s more: a call blocks its event loop (a blocking call in an async function: "
            f"await an async one, or use asyncio.to_thread); the thread was abandoned"
        )
        for chunk in thread.chunks:
            if now - thread.begun.get(chunk, now) >= limit + GRACE:
                events.append(Lost(chunk, "timeout", reason, None, thread.label))
            else:
                why = f"{thread.label} was abandoned: another call blocked its event loop"
                events.append(Lost(chunk, "crash", why, None, thread.label))
        self._replace(thread)

    def end(self, *, abort: bool) -> None:
        if abort:
            with self._spare.lock:  # chunks no thread took never start
                self._out -= len(self._spare.jobs)
                self._spare.jobs.clear()
                # What threads reported (and took) before: counted, then dropped.
                while True:
                    try:
                        self._accept(*self._outbox.get_nowait(), [])
                    except queue.Empty:
                        break
            # A thread's running call cannot be taken back, nor what an async one was
            # handed: threads that hold chunks are let go, and new ones start.
            for t in list(self._threads):
                if t.chunks:
                    self._replace(t)
        self._calls = None

    def close(self) -> None:
        self._closed = True
        for t in self._threads:
            t.tell(None)
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
