"""The engine: cut input into chunks, keep a bounded window in flight, order results,
apply the error policy, retry, report progress. The same for every backend.

```
 source ──take(n)──► Chunk ──pool.submit──► backend pool ──pool.wait──► Done / Lost
   ▲                                                                       │
   └──── pulled only while the pool has room ◄─── retry queue ◄── Policy ──┤
         and the read-ahead bound allows                                   ▼
                        (start, final values), in input order if asked ◄── Policy
```

A backend only runs chunks and says what happened to each (`Done`, `Lost`). The engine
alone decides: how big chunks are (`Sizer`), how far ahead the input is read (a few
chunks per worker, about 64 MiB of pickled input, ``buffersize`` items), which failures
are tried again and what the others become (`Policy`), which worker a crash is blamed
on (a lost batch is run again item by item), and in what order results go out. A
`_run.Run` keeps the run's books: what is in flight, how far ahead to read, and what
each outcome becomes under the `Policy`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from . import _context, _pools
from ._aio import is_async_function
from ._args import CallMode
from ._backends import Pool, Unsendable, get_backend
from ._calls import Calls
from ._chunk import Chunk, Done, Lost, RunSpec
from ._config import Options
from ._errors import SharedStateError
from ._insights import describer, recorder
from ._policy import SKIPPED, Policy
from ._run import Block, Run
from ._signature import label_of
from ._sizing import TARGET, Sizer
from ._sources import Source

__all__ = ["Stopped", "execute"]

_LIVE_POLL: Final = 0.005  # how often a live source is checked while work is in flight
_STOP_POLL: Final = 0.05  # how often a run that may be stopped from elsewhere looks


def _qualified(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{label_of(fn)}"


def _importing_main_in_a_worker() -> bool:
    """True while multiprocessing bootstraps a spawned child (it re-imports __main__)."""
    import multiprocessing

    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def execute(
    fn: Callable[..., Any],
    ref: Any,
    mode: CallMode,
    source: Source,
    kwargs: dict[str, Any],
    options: Options,
    *,
    window: int | None,
    label: str = "",
    stop: threading.Event | None = None,
) -> Iterator[Block]:
    """Run ``fn`` over ``source``; yield ``(start, values)`` blocks of final values.

    Blocks come in input order when ``options.ordered`` (``window`` then bounds how many
    chunks may be out, done or not, before the oldest is yielded), else as they finish.
    A value is a result or, under ``on_error="return"``, a `Failure`; items skipped
    under ``"skip"`` are left out (``start`` still names the block's first input item).
    A given ``window`` also marks the run as lazy (``imap``): its input is read only a
    little ahead of what was handed back. Setting ``stop`` (from another thread: an
    awaiting task was cancelled) ends the run within `_STOP_POLL` seconds, raising
    `Stopped`; what was queued does not run and the calls in flight are stopped.
    """
    if _importing_main_in_a_worker():
        raise RuntimeError(
            "fanmap: a parallel map was started while a new process was importing the main "
            "script (multiprocessing's spawn and forkserver start methods import it again "
            "in every process they start). Put the code that starts maps under "
            '`if __name__ == "__main__":`.'
        )
    backend = get_backend("serial" if _context.in_worker() else options.backend)
    state = options.state.objects() if options.state is not None else {}
    if state and not backend.shares_memory:
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
    per_worker = options.per_worker
    clash = sorted(set(per_worker.names() if per_worker is not None else ()) & set(kwargs))
    if clash:
        raise SharedStateError(
            f"{', '.join(map(repr, clash))} is made in each worker by @per_worker; "
            f"do not pass it to the map as well"
        )
    first = source.take(1, block=True)
    if first is None:
        return
    policy = Policy(options.on_error, options.retries, options.retry_on)
    is_async = is_async_function(fn)
    record = recorder(label or label_of(fn), backend.name, options.workers, describer(mode), is_async)
    calls = Calls(
        fn, mode, kwargs, policy.stop_on_error and not is_async, is_async, options.timeout, record is not None
    )
    run = Run(
        RunSpec(calls, ref, options.timeout, state, per_worker, options.concurrency if is_async else None),
        policy,
        options,
        source,
        window if options.ordered else None,
        window is not None,
        label,
    )
    run.first, first = first, None
    run.insight = record
    if options.checkpoint is not None:
        from ._checkpoint import Store  # sqlite3 and hashlib: loaded only for a checkpoint

        run.store = Store(options.checkpoint, _qualified(fn), kwargs)
    try:
        with _pools.lease(backend, options) as pool:
            yield from _drive(run, pool, stop)
    finally:
        if record is not None:
            record.finish()
        if run.reporter is not None:
            run.reporter.close()
        if run.store is not None:
            run.store.close()
            if run.store.reused:
                logging.getLogger("fanmap").info(
                    "fanmap: %d items of %s came from the checkpoint %s",
                    run.store.reused,
                    label,
                    run.store.path,
                )


class _Orderer:
    """Releases blocks in input order (or at once, when unordered)."""

    __slots__ = ("next", "ordered", "pending")

    def __init__(self, ordered: bool) -> None:
        self.ordered = ordered
        self.pending: dict[int, list[Any]] = {}
        self.next = 0

    def push(self, start: int, values: list[Any]) -> list[Block]:
        if not self.ordered:
            return [(start, values)]
        self.pending[start] = values
        out = []
        while self.next in self.pending:
            block = self.pending.pop(self.next)
            out.append((self.next, block))
            self.next += len(block)
        return out


def _holder(pool: Pool, chunk: Chunk) -> str | None:
    """Which worker holds a chunk, if the pool can say (for ``insights().running()``)."""
    holder = getattr(pool, "holder", None)
    return holder(chunk) if holder is not None else None


class Stopped(Exception):
    """The run was stopped from another thread (``stop`` was set)."""


def _drive(run: Run, pool: Pool, stop: threading.Event | None) -> Iterator[Block]:
    sizer = Sizer(
        run.options,
        pool.workers,
        run.source.total,
        pool.target_seconds or TARGET,
        run.spec.concurrency,
        pool.chunks_together,
        pool.queue_shared,
        recorded=run.store is not None,
        lazy=run.lazy,
    )
    orderer = _Orderer(run.options.ordered)
    reporter = run.reporter
    record = run.insight
    skips = run.policy.skips
    live = run.source.live
    position = 0  # index of the next new item
    staged, run.first = run.first, None  # held until sent, and no longer
    exhausted = False
    finished = False
    pool.begin(run.spec)
    if record is not None:
        record.workers = pool.workers
    if sizer.batch is not None and staged is not None and run.store is None:
        # Async calls that run together in one chunk (Dask): the first chunk is a full one.
        want = sizer.size(0, pool.limit())
        more = run.source.take(want - len(staged), block=True) if want > len(staged) else []
        exhausted = more is None
        staged = [*staged, *(more or ())]
    ready: list[Block] = []
    #: Chunks whose results came back still pickled: unpickled once the pool is filled
    #: again, so that a worker does not wait for the caller to unpickle thousands of them.
    #: Only for input of known length (filling never waits for a slow iterator then)
    #: and without a checkpoint (results are recorded as soon as they are back).
    arrived: list[Done] = []
    defer = run.source.total is not None and run.store is None

    def settle_arrived() -> Iterator[Block]:
        for done in arrived:
            run.back(done.chunk)  # counted as read ahead until now
            done.decode()
            if done.errors and ready:  # results that cannot be rebuilt may end the map
                yield from hand_on()
            ready.extend(run.done(done))
        arrived.clear()

    def hand_on() -> Iterator[Block]:
        for start, values in ready:
            if reporter is not None:
                reporter.advance(len(values))
            if record is not None:
                record.handed(len(values))
            for out_start, out in orderer.push(start, values):
                run.handed += len(out)
                if skips:
                    out = [v for v in out if v is not SKIPPED]
                    if not out:
                        continue
                yield out_start, out
        ready.clear()  # nor its results, once handed on

    try:
        while True:
            # Fill the pool, retries first, while it has room and the window allows.
            while pool.room(sizer.depth(position)) > 0:
                # The window bounds reading ahead: a retry was read already, and the
                # blocks waiting for it in the orderer may be what fills the window.
                if (
                    run.window is not None
                    and run.in_flight + len(orderer.pending) >= run.window
                    and not run.retry
                ):
                    break
                if run.retry:
                    chunk = run.retry.popleft()
                else:
                    stored = run.stored_block(position)
                    if staged is None and not exhausted:
                        allowed = run.read_limit(position)
                        if allowed == 0:
                            break  # read far enough ahead: wait for results to be handed back
                        limit = pool.limit()
                        if allowed is not None:
                            limit = allowed if limit is None else min(limit, allowed)
                        size = sizer.size(position, limit)
                        if stored is not None:  # a checkpoint's block, or the gap before one
                            size = stored[0] or min(size, stored[1])
                        staged = run.source.take(size, block=run.in_flight == 0 and not ready)
                        exhausted = staged is None
                    if not staged:
                        staged = None
                        break
                    if stored is not None and stored[0]:
                        if len(staged) < stored[0] and not exhausted:  # the first chunk: top it up
                            more = run.source.take(stored[0] - len(staged), block=True)
                            staged = [*staged, *(more or ())]
                        values = run.store.stored(position, staged) if run.store is not None else None
                        if values is not None:  # recorded by an earlier run: no call needed
                            ready.append((position, values))
                            position += len(staged)
                            staged = None
                            if run.lazy:
                                break  # hand it on now
                            continue
                    chunk = Chunk(position, staged)
                    position += len(staged)
                    staged = None
                try:
                    if record is None:
                        sent = pool.submit(chunk)
                    else:
                        began = time.perf_counter()
                        sent = pool.submit(chunk)
                        took = time.perf_counter() - began if sent is not None else 0.0  # else: ran here
                        took -= getattr(pool, "starting", 0.0)  # a worker started for it
                        record.sent(chunk, sent, took, _holder(pool, chunk))
                except Unsendable as exc:
                    bad = exc
                else:
                    run.sent(chunk, sent)
                    del chunk  # the pool holds it while it runs, and no longer
                    continue
                # Handled outside the except clause: a raised SerializationError must not
                # carry the pickler's failure as its context.
                ready.extend(run.unsendable(chunk, bad))
            if arrived:
                yield from settle_arrived()
                if run.retry:  # results that failed to unpickle, tried again
                    continue
            if run.in_flight == 0 and not run.retry and not ready:
                if exhausted:
                    break
                continue  # a live source had nothing yet: ask it again, blocking
            wait = 0.0 if ready else _LIVE_POLL if live and not exhausted else None
            if run.store is not None and run.store.dirty:  # results must reach the file
                every = run.store.commit_every
                wait = every if wait is None else min(wait, every)
            if stop is not None:
                if stop.is_set():
                    raise Stopped
                wait = _STOP_POLL if wait is None else min(wait, _STOP_POLL)
            for event in pool.wait(wait):
                # Results still pickled, none failed: unpickled after the pool is filled.
                later = defer and isinstance(event, Done) and event.encoded is not None and not event.errors
                if not later:
                    if arrived:
                        yield from settle_arrived()  # what came back before it, first
                    if ready and (isinstance(event, Lost) or event.errors):
                        yield from hand_on()  # this failure may end the map
                    run.back(event.chunk)
                if record is not None:
                    if isinstance(event, Done):
                        record.done(event, time.perf_counter())
                    else:
                        record.lost(event, time.perf_counter())
                if isinstance(event, Done):
                    sizer.measure(event.ran, event.elapsed + event.handling, event.pickled)
                    if later:
                        arrived.append(event)
                    else:
                        event.decode()
                        ready.extend(run.done(event))
                else:
                    ready.extend(run.lost(event))
                del event  # a finished call's arguments are not kept while waiting
            if run.store is not None:
                run.store.commit_due()
            yield from hand_on()
        finished = True
    finally:
        pool.end(abort=not finished)
