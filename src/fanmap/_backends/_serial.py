"""The serial backend: every call runs in the caller's own thread, one after another.

For debugging: ``pdb.set_trace()``, ``print`` and breakpoints in the function just work,
and an exception carries its own, untouched traceback. ``timeout`` is not enforced
(nothing can stop a call running in the caller's own frame).
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Final

from .._calls import Calls
from .._chunk import Chunk, Done, Event, RunSpec
from .._config import Options
from .._perworker import PerWorker, call_with_values

__all__ = ["BACKEND", "SerialBackend", "SerialPool"]


class SerialPool:
    """Runs each chunk as soon as it is submitted, in the caller."""

    workers = 1
    usable = True
    target_seconds = None

    def __init__(self) -> None:
        self._calls: Calls | None = None
        self._per_worker: PerWorker | None = None
        self._done: list[Event] = []

    def begin(self, spec: RunSpec) -> None:
        self._calls = spec.calls.with_keywords(spec.state)
        self._per_worker = spec.per_worker  # one value, made in the caller and kept
        self._done = []

    def room(self, depth: int) -> int:
        return 0 if self._done else 1

    def limit(self) -> int | None:
        return None

    def submit(self, chunk: Chunk) -> int | None:
        assert self._calls is not None
        begun = time.perf_counter()
        results, errors = call_with_values(self._calls, self._per_worker, chunk.items, "process")
        self._done.append(Done(chunk, results, errors, time.perf_counter() - begun, "the caller"))
        return None

    def wait(self, timeout: float | None) -> list[Event]:
        done, self._done = self._done, []
        return done

    def end(self, *, abort: bool) -> None:
        self._calls = None
        self._done = []

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
