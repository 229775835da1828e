"""Chunk sizes from the measured time per call.

The first chunk of each worker holds one item, to measure a call (a worker process
measures its whole time on a chunk: unpickling the items and pickling the results
too); then chunks hold about `TARGET` seconds of work (a pool may ask for more, as
Dask's does), growing at most `_GROWTH` times per step and never past `_MAX_ITEMS`, nor,
where items are pickled, past `_BUDGET` bytes of items and results. Far from the end
of input of known length (in a `map`, with no checkpoint, which records a chunk as one
block) they hold up to `_LONG` seconds of work, but no more than 1 / `_SPREAD` of a
worker's share of what is left: every chunk costs a round trip through the caller, and
when every core is busy with workers, the caller's time is taken from one of them (with
chunks of 10 ms, the workers of a map of 5 ms calls sat idle 4-5% of the time on two
cores; 2-3% with these).
Near the end of input of known length they shrink to a share of what is left (down to
`_FLOOR` seconds of work) so that the workers finish together; and calls slower than
`_SLOW` go one per chunk, unless so many workers run them (hundreds of threads sleeping
on I/O) that chunks of one would come back faster than `_RATE` a second: then a chunk
holds the few calls that keep below it, shrinking near the end like the others.
A worker gets a second chunk queued behind its running one while chunks are short, or
while the end is far away; a pool whose queued chunks go to whichever worker is free
first (threads) always keeps one queued per worker, from the first chunk on.
"""

from __future__ import annotations

import math
from typing import Final

from ._config import Options

__all__ = ["TARGET", "Sizer"]

TARGET: Final = 0.01  # seconds of work per chunk for fast calls
_SLOW: Final = 0.01  # calls slower than this go one per chunk
_PREFETCH_BELOW: Final = 0.005  # queue a second chunk per worker below this chunk time
_LONG: Final = 0.05  # seconds of work per chunk far from a known end
_SPREAD: Final = 8  # ... but at most 1 / _SPREAD of a worker's share of what is left
_GROWTH: Final = 64
_MAX_ITEMS: Final = 1 << 16  # items per chunk at most: bounds what a window holds
_FADE: Final = 0.7  # weight kept by earlier measurements at each new one
_FLOOR: Final = 0.002  # seconds of work below which a chunk is not shrunk further
_SHARE: Final = 2  # a chunk holds at most 1 / (_SHARE * workers) of what is left
_ENDGAME: Final = 4  # within this many chunks per worker of the end, queue nothing
_RATE: Final = 4000  # chunks a second the caller hands out at most, for slow calls
#: Bytes a chunk's items and results may take at once in a worker process. Python hands
#: the memory of freed objects back to the system (all but one 1 MiB arena of it): a
#: chunk that needs more page-faults it back in, every chunk, in its worker and in the
#: caller (200,000 calls of `x * 2` on a list: 1,800 faults a map in the workers without
#: this bound, 80 with it, 10% faster; 100,000 strings of 200 characters: 10,700 and 45
#: faults, 30% faster; 256 KiB came within a few % of it, either way, 1 MiB behind).
_BUDGET: Final = 1 << 19
#: Bytes an item and its result take in memory beyond their pickles, at least.
_OBJECT: Final = 64


class Sizer:
    """Chooses chunk sizes from the measured time per call."""

    def __init__(
        self,
        options: Options,
        workers: int,
        total: int | None,
        target: float = TARGET,
        concurrency: int | None = None,
        together: bool = True,
        shared: bool = False,
        recorded: bool = False,
        lazy: bool = False,
    ) -> None:
        self.fixed = 1 if options.timeout is not None else options.chunksize
        #: Chunks per worker at once, for an async function (None: a plain one).
        self.held: int | None = None
        #: For an async function on a backend that runs one chunk at a time per worker
        #: (Dask), the calls of a chunk run together: a chunk holds up to `concurrency`.
        self.batch: int | None = None
        if concurrency is not None:
            size = min(options.chunksize or 1, concurrency)
            if together:
                # Small chunks, `concurrency` calls' worth of them in each worker: one call
                # a chunk for a short map (spread over every worker), up to an eighth of
                # `concurrency` for a long one (fewer messages).
                if options.chunksize is None and total is not None:
                    size = max(1, min(concurrency // 8, total // (workers * concurrency * 4)))
                self.fixed = size
                self.held = max(1, concurrency // size)
            elif options.chunksize is not None:
                self.fixed = size
            else:
                self.batch = concurrency
        # A backend whose tasks cost more (Dask) asks for longer chunks; the other
        # thresholds keep their proportion to the target.
        self.target = target
        self.slow = target * (_SLOW / TARGET)
        self.floor = target * (_FLOOR / TARGET)
        # A checkpoint records a chunk as one block, computed again whole when one of its
        # inputs changed, and a lazy run (imap) hands results on as they come: their
        # chunks stay short. A pool that asks for longer chunks (Dask) keeps its own.
        self.long = self.target if recorded or lazy else max(self.target, _LONG)
        self.workers = workers
        #: Whether queued chunks go to whichever worker is free first (threads).
        self.shared = shared
        self.total = total
        self.per_item: float | None = None
        self._elapsed = 0.0
        self._items = 0.0
        #: Bytes an item and its result take in a worker (None: not pickled, or not yet).
        self.item_bytes: float | None = None
        self._bytes = 0.0
        self._weighed = 0.0
        self.last = 1

    def measure(self, items: int, elapsed: float, pickled: int | None = None) -> None:
        """Learn from a chunk of ``items`` that took ``elapsed`` seconds in its worker;
        ``pickled``: the bytes its items and results took pickled (a worker process's)."""
        # Time per call, weighted by items: a big chunk's measure outweighs a small one's
        # (whose fixed costs inflate it); older chunks fade so that a change is followed.
        if items <= 0:
            return
        self._elapsed = _FADE * self._elapsed + elapsed
        self._items = _FADE * self._items + items
        self.per_item = self._elapsed / self._items
        if pickled is not None:
            self._bytes = _FADE * self._bytes + pickled
            self._weighed = _FADE * self._weighed + items
            self.item_bytes = self._bytes / self._weighed + _OBJECT

    def size(self, position: int, limit: int | None) -> int:
        if self.batch is not None:  # spread over the workers, up to `batch` calls each
            size = self.batch
            if self.total is not None:
                size = max(1, min(size, math.ceil(self.total / self.workers)))
        elif self.fixed is not None:
            size = self.fixed
        elif self.per_item is None:
            size = 1
        elif self.per_item >= self.slow:
            # One call a chunk, for balance; unless so many workers would then ask the
            # caller for more chunks than it can hand out without delaying them.
            size = max(1, math.ceil(self.workers / self.per_item / _RATE))
            if size > 1 and self.total is not None:
                size = max(1, min(size, math.ceil((self.total - position) / (_SHARE * self.workers))))
        else:
            per_item = max(self.per_item, 1e-9)
            size = max(1, round(self.target / per_item))
            if self.total is not None:  # far from the end: fewer, longer chunks
                far = min(round(self.long / per_item), (self.total - position) // (_SPREAD * self.workers))
                size = max(size, far)
            size = min(size, self.last * _GROWTH, _MAX_ITEMS)
            if self.item_bytes is not None:  # what the worker's memory holds without faults
                size = min(size, max(1, int(_BUDGET / self.item_bytes)))
            if self.total is not None:
                # Shrink toward the end so that workers finish together, but not below
                # _FLOOR seconds of work: tinier chunks cost more in round trips than
                # they save in balance.
                share = math.ceil((self.total - position) / (_SHARE * self.workers))
                floor = round(self.floor / per_item)
                size = max(1, min(size, max(share, floor)))
        if limit is not None:
            size = min(size, limit)
        self.last = size
        return size

    def depth(self, position: int) -> int:
        """Chunks per worker: one running, and one queued behind it while that helps."""
        if self.held is not None:
            return self.held
        if self.shared:
            # A queued chunk waits behind nobody: never let a worker wait for the caller, not
            # even after its first chunk (256 threads on 10 ms calls: 68% of the ideal when
            # the second round waited for the caller, 76% with it queued; medians of 15).
            return 2
        if self.per_item is None:
            return 1
        if self.per_item * self.last < self.target * (_PREFETCH_BELOW / TARGET):
            return 2  # short chunks: never let a worker wait for the caller
        if self.total is not None and self.total - position > _ENDGAME * self.workers * self.last:
            return 2  # long chunks, far from the end: a queued chunk delays nobody
        return 1  # near the end (or no end in sight): give work only to a free worker
