"""The engine: cut input into chunks, keep a bounded window in flight, order results,
apply the error policy, retry, report progress. The same for every backend.

```
 source ──take(n)──► Chunk ──pool.submit──► backend pool ──pool.wait──► Done / Lost
   ▲                                                                       │
   └──── pulled only while the pool has room ◄─── retry queue ◄── Lost ────┤
                                                                           ▼
                       (start, values) blocks, in input order if asked ◄── policy
```

Chunk sizes adapt (`_Sizer`): the first chunk of each worker holds one item, to measure
a call; then chunks hold about `_TARGET` seconds of work (a pool may ask for more, as
Dask's does), growing at most `_GROWTH` times per step and never past `_MAX_ITEMS`;
near the end of input of known length they shrink to a share of what is left (down to
`_FLOOR` seconds of work) so that the workers finish together; and calls slower than
`_SLOW` go one per chunk. A worker gets a second chunk queued behind its running one
while chunks are short, or while the end is far away.
"""

from __future__ import annotations

import itertools
import math
import queue
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

from . import _pools
from ._backends import Pool, Unsendable, get_backend
from ._chunk import Chunk, Done, Lost, RunSpec, call_args
from ._config import Options
from ._errors import Failure, SharedStateError, TaskTimeoutError, WorkerCrashedError
from ._progress import open_reporter
from ._serialize import short_repr

__all__ = ["SKIPPED", "Source", "execute"]

_TARGET: Final = 0.01  # seconds of work per chunk for fast calls
_SLOW: Final = 0.01  # calls slower than this go one per chunk
_PREFETCH_BELOW: Final = 0.005  # queue a second chunk per worker below this chunk time
_GROWTH: Final = 64
_MAX_ITEMS: Final = 1 << 16  # items per chunk at most: bounds what a window holds
_FADE: Final = 0.7  # weight kept by earlier measurements at each new one
_FLOOR: Final = 0.002  # seconds of work below which a chunk is not shrunk further
_SHARE: Final = 2  # a chunk holds at most 1 / (_SHARE * workers) of what is left
_ENDGAME: Final = 4  # within this many chunks per worker of the end, queue nothing
_LIVE_POLL: Final = 0.005  # how often a live source is checked while work is in flight
#: Pickled input read ahead and not yet handed back, at most (when no buffersize is set).
_BYTES_AHEAD: Final = 64 << 20
#: Items per chunk at most in a lazy run (imap): what a generator is read ahead stays small.
_LAZY_MAX_ITEMS: Final = 1024


class _Skipped:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIPPED"


#: Stands in a skipped item's place in a block; consumers leave it out.
SKIPPED: Final = _Skipped()


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


class _Sizer:
    """Chooses chunk sizes from the measured time per call."""

    def __init__(self, options: Options, workers: int, total: int | None, target: float = _TARGET) -> None:
        self.fixed = 1 if options.timeout is not None else options.chunksize
        # A backend whose tasks cost more (Dask) asks for longer chunks; the other
        # thresholds keep their proportion to the target.
        self.target = target
        self.slow = target * (_SLOW / _TARGET)
        self.floor = target * (_FLOOR / _TARGET)
        self.workers = workers
        self.total = total
        self.per_item: float | None = None
        self._elapsed = 0.0
        self._items = 0.0
        self.last = 1

    def measure(self, items: int, elapsed: float) -> None:
        # Time per call, weighted by items: a big chunk's measure outweighs a small one's
        # (whose fixed costs inflate it); older chunks fade so that a change is followed.
        if items <= 0:
            return
        self._elapsed = _FADE * self._elapsed + elapsed
        self._items = _FADE * self._items + items
        self.per_item = self._elapsed / self._items

    def size(self, position: int, limit: int | None) -> int:
        if self.fixed is not None:
            size = self.fixed
        elif self.per_item is None or self.per_item >= self.slow:
            size = 1
        else:
            size = min(max(1, round(self.target / max(self.per_item, 1e-9))), self.last * _GROWTH, _MAX_ITEMS)
            if self.total is not None:
                # Shrink toward the end so that workers finish together, but not below
                # _FLOOR seconds of work: tinier chunks cost more in round trips than
                # they save in balance.
                share = math.ceil((self.total - position) / (_SHARE * self.workers))
                floor = round(self.floor / max(self.per_item, 1e-9))
                size = max(1, min(size, max(share, floor)))
        if limit is not None:
            size = min(size, limit)
        self.last = size
        return size

    def depth(self, position: int) -> int:
        """Chunks per worker: one running, and one queued behind it while that helps."""
        if self.per_item is None:
            return 1
        if self.per_item * self.last < self.target * (_PREFETCH_BELOW / _TARGET):
            return 2  # short chunks: never let a worker wait for the caller
        if self.total is not None and self.total - position > _ENDGAME * self.workers * self.last:
            return 2  # long chunks, far from the end: a queued chunk delays nobody
        return 1  # near the end (or no end in sight): give work only to a free worker


def _arguments(spec: RunSpec, item: Any, kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments an item stands for; a starmap item that is not a tuple, as itself."""
    try:
        return call_args(spec.mode, item, kwargs)
    except TypeError:
        return (item,), kwargs


def _describe_call(spec: RunSpec, item: Any) -> str:
    args, kwargs = _arguments(spec, item, {})
    parts = [short_repr(a) for a in args] + [f"{k}={short_repr(v)}" for k, v in kwargs.items()]
    return f"({', '.join(parts)})" if len(parts) != 1 else f"({parts[0]},)" if not kwargs else f"({parts[0]})"


class _Run:
    """The state of one run while it goes."""

    def __init__(
        self, spec: RunSpec, options: Options, source: Source, window: int | None, label: str
    ) -> None:
        self.spec = spec
        self.options = options
        self.source = source
        self.window = window
        self.lazy = False
        self.retry: deque[Chunk] = deque()
        self.attempts: dict[int, int] = {}
        self.in_flight = 0
        self.reporter = open_reporter(options.progress, source.total, label)
        #: Items handed back to the consumer so far (with `position`: items read ahead).
        self.handed = 0
        #: Pickled bytes of the chunks in flight, by chunk start, and their sum.
        self.chunk_bytes: dict[int, int] = {}
        self.bytes_out = 0
        self.sent_items = 0
        self.sent_bytes = 0

    def sent(self, chunk: Chunk, size: int | None) -> None:
        if size is None:
            return
        self.chunk_bytes[chunk.start] = self.chunk_bytes.get(chunk.start, 0) + size
        self.bytes_out += size
        self.sent_items += len(chunk.items)
        self.sent_bytes += size

    def back(self, chunk: Chunk) -> None:
        self.bytes_out -= self.chunk_bytes.pop(chunk.start, 0)

    def read_limit(self, position: int) -> int | None:
        """The most new items to read now (None: no limit); 0 means wait for results."""
        limits: list[int] = []
        if self.options.buffersize is not None:
            limits.append(self.options.buffersize - (position - self.handed))
        if self.sent_items:
            per_item = max(1.0, self.sent_bytes / self.sent_items)
            limits.append(int((_BYTES_AHEAD - self.bytes_out) / per_item))
        if self.window is not None or self.lazy:
            limits.append(_LAZY_MAX_ITEMS)
        if not limits:
            return None
        limit = min(limits)
        if limit <= 0 and self.in_flight == 0:
            return 1  # nothing in flight: always make progress
        return max(0, limit)

    def fail(self, error: BaseException, chunk: Chunk, pos: int, worker: str, note: bool) -> Any:
        index = chunk.start + pos
        item = chunk.items[pos]
        if note:
            error.add_note(f"fanmap: raised by item {index} {_describe_call(self.spec, item)} in {worker}")
        policy = self.options.on_error
        if policy == "raise":
            raise error
        if policy == "skip":
            return SKIPPED
        args, kwargs = _arguments(self.spec, item, self.spec.kwargs)
        return Failure(error, index, args, dict(kwargs))

    def done(self, event: Done) -> tuple[int, list[Any]]:
        chunk, values = event.chunk, event.results
        if event.errors:
            for pos, error in sorted(event.errors.items()):
                values[pos] = self.fail(error, chunk, pos, event.worker, note=True)
        return chunk.start, values

    def lost(self, event: Lost) -> tuple[int, list[Any]] | None:
        chunk = event.chunk
        if event.kind == "unstarted":
            self.retry.appendleft(chunk)
            return None
        if len(chunk.items) > 1:
            # Which item killed the worker? Run each alone to find out; no try is counted.
            for pos in reversed(range(len(chunk.items))):
                self.retry.appendleft(Chunk(chunk.start + pos, chunk.items[pos : pos + 1]))
            return None
        index = chunk.start
        tries = self.attempts.get(index, 0) + 1
        self.attempts[index] = tries
        call = _describe_call(self.spec, chunk.items[0])
        error: BaseException
        if event.kind == "timeout":
            error = TaskTimeoutError(f"item {index} {call} {event.reason}")
        else:
            error = WorkerCrashedError(
                f"{event.reason} while running item {index} {call}; the worker was replaced",
                exitcode=event.exitcode,
            )
        if tries <= self.spec.retries and isinstance(error, self.spec.retry_on):
            self.retry.appendleft(chunk)
            return None
        if self.options.on_error == "raise":
            error.add_note(
                'fanmap: to carry on past such items use on_error="return" or "skip"; '
                "to try them again use retries=N"
            )
        return chunk.start, [self.fail(error, chunk, 0, event.worker, note=False)]


def _importing_main_in_a_worker() -> bool:
    """True while multiprocessing bootstraps a spawned child (it re-imports __main__)."""
    import multiprocessing

    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def execute(
    fn: Callable[..., Any],
    ref: Any,
    mode: int,
    source: Source,
    kwargs: dict[str, Any],
    options: Options,
    *,
    window: int | None,
    label: str = "",
) -> Iterator[tuple[int, list[Any]]]:
    """Run ``fn`` over ``source``; yield ``(start, values)`` blocks.

    Blocks come in input order when ``options.ordered`` (``window`` then bounds how many
    chunks may be out, done or not, before the oldest is yielded), else as they finish.
    Each block has one value per item: the result, a `Failure`, or `SKIPPED`.
    """
    if _importing_main_in_a_worker():
        raise RuntimeError(
            "fanmap: a parallel map was started while a new worker process was importing "
            "the main script (the 'spawn' and 'forkserver' start methods import it again in "
            "every worker). Put the code that starts maps under "
            '`if __name__ == "__main__":`, or use start_method="fork".'
        )
    backend = get_backend("serial" if _pools.in_worker() else options.backend)
    state = options.state.objects() if options.state is not None else {}
    if state and not getattr(backend, "shares_memory", False):
        raise SharedStateError(
            f"the {backend.name} backend cannot share memory with its workers, so it cannot "
            f'run a function with @shared_state; use backend="process", "thread" or "serial"'
        )
    clash = sorted(set(state) & set(kwargs))
    if clash:
        raise SharedStateError(
            f"{', '.join(map(repr, clash))} is shared state given by @shared_state; "
            f"do not pass it to the map as well"
        )
    first = source.take(1, block=True)
    if first is None:
        return
    spec = RunSpec(
        fn=fn,
        ref=ref,
        mode=mode,
        kwargs=kwargs,
        fail_fast=options.on_error == "raise",
        retries=options.retries,
        retry_on=options.retry_on,
        timeout=options.timeout,
        state=state,
    )
    run = _Run(spec, options, source, window if options.ordered else None, label)
    run.lazy = window is not None
    try:
        with _pools.lease(backend, options) as pool:
            yield from _drive(run, pool, first)
    finally:
        if run.reporter is not None:
            run.reporter.close()


class _Orderer:
    """Releases blocks in input order (or at once, when unordered)."""

    __slots__ = ("next", "ordered", "pending")

    def __init__(self, ordered: bool) -> None:
        self.ordered = ordered
        self.pending: dict[int, list[Any]] = {}
        self.next = 0

    def push(self, start: int, values: list[Any]) -> list[tuple[int, list[Any]]]:
        if not self.ordered:
            return [(start, values)]
        self.pending[start] = values
        out = []
        while self.next in self.pending:
            block = self.pending.pop(self.next)
            out.append((self.next, block))
            self.next += len(block)
        return out


def _drive(run: _Run, pool: Pool, first: Sequence[Any]) -> Iterator[tuple[int, list[Any]]]:
    sizer = _Sizer(run.options, pool.workers, run.source.total, getattr(pool, "target_seconds", _TARGET))
    orderer = _Orderer(run.options.ordered)
    reporter = run.reporter
    live = isinstance(run.source, QueueSource)
    position = 0  # index of the next new item
    staged: Sequence[Any] | None = first
    exhausted = False
    finished = False
    pool.begin(run.spec)
    try:
        while True:
            ready: list[tuple[int, list[Any]]] = []
            # Fill the pool, retries first, while it has room and the window allows.
            while pool.room(sizer.depth(position)) > 0:
                if run.window is not None and run.in_flight + len(orderer.pending) >= run.window:
                    break
                if run.retry:
                    chunk = run.retry.popleft()
                else:
                    if staged is None and not exhausted:
                        allowed = run.read_limit(position)
                        if allowed == 0:
                            break  # read far enough ahead: wait for results to be handed back
                        limit = pool.limit()
                        if allowed is not None:
                            limit = allowed if limit is None else min(limit, allowed)
                        size = sizer.size(position, limit)
                        staged = run.source.take(size, block=run.in_flight == 0)
                        exhausted = staged is None
                    if not staged:
                        staged = None
                        break
                    chunk = Chunk(position, staged)
                    position += len(staged)
                    staged = None
                try:
                    sent = pool.submit(chunk)
                except Unsendable as exc:
                    bad = exc
                else:
                    run.in_flight += 1
                    run.sent(chunk, sent)
                    continue
                # Handled outside the except clause: a raised SerializationError must not
                # carry the pickler's failure as its context.
                ready.extend(_unsendable(run, chunk, bad))
            if run.in_flight == 0 and not run.retry and not ready:
                if exhausted:
                    break
                continue  # a live source had nothing yet: ask it again, blocking
            for event in pool.wait(_LIVE_POLL if live and not exhausted else None):
                run.in_flight -= 1
                run.back(event.chunk)
                if isinstance(event, Done):
                    sizer.measure(len(event.results), event.elapsed)
                    ready.append(run.done(event))
                else:
                    block = run.lost(event)
                    if block is not None:
                        ready.append(block)
            for start, values in ready:
                if reporter is not None:
                    reporter.advance(len(values))
                for block in orderer.push(start, values):
                    run.handed += len(block[1])
                    yield block
        finished = True
    finally:
        pool.end(abort=not finished)


def _unsendable(run: _Run, chunk: Chunk, bad: Unsendable) -> list[tuple[int, list[Any]]]:
    """Fail the items that could not be pickled; send the others one by one."""
    blocks: list[tuple[int, list[Any]]] = []
    for pos in range(len(chunk.items)):
        if pos in bad.errors:
            blocks.append(
                (chunk.start + pos, [run.fail(bad.errors[pos], chunk, pos, "the caller", note=False)])
            )
        else:
            run.retry.append(Chunk(chunk.start + pos, chunk.items[pos : pos + 1]))
    return blocks
