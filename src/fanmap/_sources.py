"""Where a run's items come from: a sequence sliced without copying, an iterator read
lazily, or a live queue fed from another thread (the calls behind ``submit``)."""

from __future__ import annotations

import itertools
import queue
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

__all__ = ["QueueSource", "Source"]


class Source:
    """Where a run's items come from: a sequence sliced without copying, or an iterator.

    ``take(n, block)`` returns up to ``n`` items; an empty sequence means "none ready
    yet" (only a live source, like the queue behind ``submit``, says that), and
    ``None`` means the input is exhausted.
    """

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
        out = list(itertools.islice(self._it, count))
        return out if out else None


class QueueSource(Source):
    """A live source fed from another thread (by ``submit``); ends after an idle spell."""

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
            while len(out) < count:
                out.append(self._inbox.get_nowait())
        except queue.Empty:
            pass
        if not out and block:
            self._ended = True
            return None
        return out
