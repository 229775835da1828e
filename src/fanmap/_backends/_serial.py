"""The serial backend: every call runs in the caller's own thread, one after another.

For debugging: ``pdb.set_trace()``, ``print`` and breakpoints in the function just work,
and an exception carries its own, untouched traceback. ``timeout`` is not enforced
(nothing can stop a call running in the caller's own frame).

An ``async def`` function's calls run in one event loop of the caller's process (in a
thread of fanmap's), up to ``concurrency`` at once; ``timeout`` cancels a late one.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Hashable
from typing import Any, Final

from .._aio import LoopThread, loop_thread, timed_chunk
from .._calls import Calls, Times
from .._chunk import Chunk, Done, Event, RunSpec
from .._config import Options
from .._perworker import PerWorker, call_with_values

__all__ = ["BACKEND", "SerialBackend", "SerialPool"]


class SerialPool:
    """Runs each chunk as soon as it is submitted, in the caller."""

    workers = 1
    usable = True
    target_seconds = None
    chunks_together = True
    queue_shared = False

    def __init__(self) -> None:
        self._calls: Calls | None = None
        self._per_worker: PerWorker | None = None
        self._done: list[Event] = []
        self._loop: LoopThread | None = None  # for an async function
        self._running: dict[Chunk, Any] = {}
        self._finished: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def begin(self, spec: RunSpec) -> None:
        self._calls = spec.calls.with_keywords(spec.state)
        self._per_worker = spec.per_worker  # one value, made in the caller and kept
        self._done = []
        self._loop = loop_thread("caller-loop") if spec.calls.is_async else None

    def room(self, depth: int) -> int:
        if self._loop is not None:
            return depth - len(self._running)
        return 0 if self._done else 1

    def limit(self) -> int | None:
        return None

    def submit(self, chunk: Chunk) -> int | None:
        assert self._calls is not None
        if self._loop is not None:
            self._start(self._loop, self._calls, chunk)
            return None
        begun = time.perf_counter()
        results, errors, times = call_with_values(self._calls, self._per_worker, chunk.items, "process")
        self._done.append(Done(chunk, results, errors, time.perf_counter() - begun, "the caller", times))
        return None

    def _start(self, loop: LoopThread, calls: Calls, chunk: Chunk) -> None:
        future = loop.start(timed_chunk(calls, self._per_worker, chunk.items, "process"))
        self._running[chunk] = future

        def finished(future: Any) -> None:
            if future.cancelled():
                return
            times: Times | None = None
            elapsed = setup = 0.0
            try:
                (results, errors, times), elapsed, setup = future.result()
            except BaseException as exc:  # fanmap's own failure: the chunk's items fail with it
                results, errors = [None] * len(chunk.items), dict.fromkeys(range(len(chunk.items)), exc)
            label = "the caller's event loop"
            self._finished.put(Done(chunk, results, errors, elapsed, label, times, setup))

        future.add_done_callback(finished)

    def wait(self, timeout: float | None) -> list[Event]:
        if self._loop is None:
            done, self._done = self._done, []
            return done
        if not self._running:
            return []
        events: list[Event] = []
        try:
            events.append(self._finished.get(timeout=timeout))
            while True:
                events.append(self._finished.get_nowait())
        except queue.Empty:
            pass
        for event in events:
            del self._running[event.chunk]
        return events

    def end(self, *, abort: bool) -> None:
        self._calls = None
        self._done = []
        for future in self._running.values():
            future.cancel()  # the calls in flight are cancelled in the loop
        self._running.clear()
        while not self._finished.empty():
            self._finished.get_nowait()

    def close(self) -> None:
        self._done = []


class SerialBackend:
    """Run in the caller's thread."""

    name = "serial"
    shares_memory = True

    def pool_key(self, options: Options) -> Hashable:
        return ("serial", options.pool_tag)

    def open_pool(self, options: Options) -> SerialPool:
        return SerialPool()


BACKEND: Final = SerialBackend()
