"""Where a run's items come from: a sequence sliced without copying, an iterator read
lazily, or a live queue fed from another thread (the calls behind ``submit``)."""

from __future__ import annotations

import itertools
import queue
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

__all__ = ["STOP", "QueueSource", "Source"]

#: Items an iterator gives at once, before the time it takes is watched.
_AT_ONCE = 16
#: Seconds a chunk waits, at most, for more items from a slow iterator.
_TAKE_BUDGET = 0.005


class Source:
    """Where a run's items come from: a sequence sliced without copying, or an iterator.

    ``take(n, block)`` returns up to ``n`` items; an empty sequence means "none ready
    yet" (only a live source, like the queue behind ``submit``, says that), and
    ``None`` means the input is exhausted.
    """

    #: Whether ``take`` may find nothing yet (then the engine asks again soon).
    live = False

    def __init__(self, items: Iterable[Any]) -> None:
        self.total: int | None = None
        self._seq: Sequence[Any] | None = None
        self._it: Iterator[Any] | None = None
        self._pos = 0
        if type(items) in (list, tuple, range):
            self._seq = items  # type: ignore[assignment]
            self.total = len(items)  # type: ignore[arg-type]
        else:
            self._it = iter(items)

    def take(self, count: int, block: bool) -> Sequence[Any] | None:
        if self._seq is not None:
            if self._pos >= len(self._seq):
                return None
            out = self._seq[self._pos : self._pos + count]
            self._pos += len(out)
            return out
        assert self._it is not None
        if count <= _AT_ONCE:
            out = list(itertools.islice(self._it, count))
            return out if out else None
        # A slow iterator (another map's imap, a network feed) must not hold a chunk
        # back until it is full: take what comes within a short time.
        out = list(itertools.islice(self._it, _AT_ONCE))
        if len(out) < _AT_ONCE:
            return out if out else None
        deadline = time.perf_counter() + _TAKE_BUDGET
        it = self._it
        for item in it:
            out.append(item)
            if len(out) >= count or time.perf_counter() > deadline:
                break
        return out


#: Put in a `QueueSource`'s queue, ends it at once (what came before it still runs).
STOP: Any = object()


class QueueSource(Source):
    """A live source fed from another thread (by ``submit``); ends after an idle spell,
    or at `STOP`."""

    live = True

    def __init__(self, inbox: queue.SimpleQueue[Any], idle: float) -> None:
        super().__init__(())
        self._inbox = inbox
        self._idle = idle
        self._ended = False

    def take(self, count: int, block: bool) -> Sequence[Any] | None:
        if self._ended:
            return None
        out: list[Any] = []
        try:
            out.append(self._inbox.get(timeout=self._idle) if block else self._inbox.get_nowait())
            while len(out) < count and out[-1] is not STOP:
                out.append(self._inbox.get_nowait())
        except queue.Empty:
            pass
        if out and out[-1] is STOP:
            out.pop()
            self._ended = True
            return out or None
        if not out and block:
            self._ended = True
            return None
        return out
