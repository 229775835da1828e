"""The process backend: fanmap's own worker processes, one pair of pipes each.

```
                 task pipe (Setup, TASK, None: see _wire)
  caller  ──────────────────────────────────────────►  worker i  (own process group)
  engine  ◄──────────────────────────────────────────   call_chunk(...)
  thread         result pipe (results, errors, elapsed)
     ▲
     └── poll(result pipes + process sentinels, timeout)
```

Everything happens in the caller's thread, in `wait`: a reply, a worker's death (its
sentinel becomes readable at once, no polling) and a timeout (the wait's own timeout
is the earliest deadline) all wake it. There is no helper thread, so there is nothing
to deadlock and a Ctrl-C lands in the caller's frame.

Each worker holds at most a few chunks: the one it runs and those queued behind it in
its pipe. A chunk is queued behind a running one only if it fits in the pipe's buffer,
so that the caller never blocks writing to a busy worker while that worker blocks
writing its reply to the caller.
"""

from __future__ import annotations

import collections
import contextlib
import math
import multiprocessing
import pickle
import select
import time
from collections.abc import Hashable
from typing import Any, Final

from .._aio import GRACE
from .._args import CallMode, arguments_of
from .._bigargs import Outbound
from .._chunk import Chunk, Done, Event, Lost, RunSpec
from .._config import Options, cpu_count
from .._errors import SerializationError, WorkerInitError
from .._forward import deliver, log_levels
from .._serialize import (
    PROTOCOL,
    describe,
    dumps,
    dumps_function,
    find_unpicklable,
    find_unpicklable_capture,
)
from .._traceback import rebuild
from .._wire import IDLE_EXIT, INIT, INIT_DONE, REPLY, TASK, TASK_SHM, WHOLE_CHUNK, Setup
from . import Unsendable, wait_timeout
from ._procworker import Worker, death, unreadable

__all__ = ["BACKEND", "ProcessBackend", "ProcessPool"]

#: Messages read from one worker at one wait, at most (the rest at the next).
_READ_AT_ONCE: Final = 1000
#: The longest wait ``poll`` takes, in ms (a longer one ends early and is waited again).
_POLL_MAX_MS: Final = 2**31 - 1
#: Seconds idle workers get to stop by themselves (and tear down) when a pool closes.
_STOP_GRACE: Final = 5.0


def _unpicklable_keyword(kwargs: dict[str, Any]) -> SerializationError:
    for key, value in kwargs.items():
        try:
            dumps(value)
        except Exception as exc:
            return SerializationError(
                f"cannot pickle keyword argument {key}= given to the map "
                f'({describe(value)}: {exc}); pass plain data or use backend="thread"'
            )
    return SerializationError("cannot pickle the keyword arguments given to the map")  # pragma: no cover


def _unpicklable_function(fn: Any, exc: BaseException) -> SerializationError:
    name = getattr(fn, "__qualname__", None) or repr(fn)
    captured = find_unpicklable_capture(fn)
    if captured is not None:
        var, value, error = captured
        return SerializationError(
            f"cannot pickle the function {name}: it uses {var}, {describe(value)}, which "
            f"cannot be pickled ({error}); create {var} inside the function (or once per "
            f'worker), pass plain data, or use backend="thread"'
        )
    return SerializationError(
        f"cannot pickle the function {name} ({describe(fn)}: {exc}); "
        f'define it at module level, or use backend="thread"'
    )


def _positional_names(fn: Any) -> list[str] | None:
    from .._signature import signature_of

    signature = signature_of(fn)
    if signature is None:
        return None
    return [
        n for n, p in signature.parameters.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


class ProcessPool:
    """Worker processes started with one start method, restarted as needed."""

    target_seconds = None

    chunks_together = True

    queue_shared = False

    def __init__(self, options: Options) -> None:
        self.workers = options.workers
        self._context = multiprocessing.get_context(options.start_method)
        self._blas_threads = max(1, cpu_count() // options.workers)
        self._max_tasks = options.max_tasks_per_worker
        self._state: dict[str, Any] = options.state.prepare() if options.state is not None else {}
        self._slots: list[Worker | None] = [None] * options.workers
        #: Slots whose worker starts when a chunk needs it (every started one is busy).
        self._unstarted: list[int] = []
        #: Seconds the last `submit` spent starting a worker (not pickling or sending).
        self.starting = 0.0
        self._setup = b""
        self._mode = CallMode.ONE
        self._fn: Any = None
        self._timeout: float | None = None
        self._init_timeout: float | None = None
        self._async = False
        self._held: collections.deque[tuple[Chunk, bytes]] = collections.deque()
        self._backlog: list[Event] = []
        #: The poll object of the last wait, and the descriptors it watches: kept while
        #: the same workers are busy, which spares building one per wait.
        self._poller = select.poll()
        self._polled: tuple[int, ...] = ()
        self._outbound = Outbound()
        self._closed = False

    @property
    def usable(self) -> bool:
        return not self._closed

    # -- runs ------------------------------------------------------------------

    def begin(self, spec: RunSpec) -> None:
        try:
            fn_blob = dumps_function(spec.ref)
        except Exception as exc:
            raise _unpicklable_function(spec.calls.fn, exc) from None
        self._mode = spec.calls.mode
        self._fn = spec.calls.fn
        calls = spec.calls
        run = (int(calls.mode), calls.kwargs, calls.stop_on_error, calls.is_async, calls.timeout, calls.timed)
        self._async = calls.is_async
        try:
            rest, descriptors = self._outbound.dumps(run)
        except Exception:
            try:
                rest, descriptors = dumps(run), []
            except Exception:
                raise _unpicklable_keyword(spec.calls.kwargs) from None
        per_worker = None
        if spec.per_worker is not None:
            try:
                per_worker = dumps(spec.per_worker)
            except Exception as exc:
                raise SerializationError(
                    f"cannot pickle the @per_worker factories of {spec.calls.fn.__name__} ({exc}); "
                    f"define them at module level"
                ) from None
        self._setup = pickle.dumps(Setup(fn_blob, rest, descriptors, log_levels(), per_worker), PROTOCOL)
        self._timeout = spec.timeout
        self._init_timeout = spec.per_worker.timeout if spec.per_worker is not None else None
        for i, worker in enumerate(self._slots):
            if worker is not None and (worker.gone() or worker.retiring):
                worker.kill()
                self._slots[i] = None
        # Starting a process takes a while (a fork copies the caller's page tables, a
        # spawn starts an interpreter): a worker starts when a chunk needs one and every
        # started worker is busy, so the first gets its chunk while the next starts, and
        # a short map starts no more workers than it has chunks.
        self._unstarted = [i for i, w in enumerate(self._slots) if w is None]

    def _start(self, index: int) -> Worker:
        return Worker(index, self._context, self._blas_threads, self._state)

    def _start_next(self) -> Worker:
        index = self._unstarted.pop(0)
        worker = self._slots[index] = self._start(index)
        return worker

    def _start_if_all_busy(self) -> None:
        """Start a worker if none is free for a chunk and some slot has none yet."""
        if self._unstarted and not any(
            w is not None and not w.chunks and not w.retiring for w in self._slots
        ):
            self._start_next()

    def room(self, depth: int) -> int:
        if self._held and self._held[0][0].alone:
            return 0  # let a worker empty for the chunk that must run alone
        free = depth * len(self._unstarted)
        for w in self._slots:
            if w is not None and not w.retiring and not (w.chunks and w.chunks[0].alone):
                free += max(0, depth - len(w.chunks))
        return free - len(self._held)

    def holder(self, chunk: Chunk) -> str | None:
        """The worker a chunk was sent to (None: it waits for a free one)."""
        for w in self._slots:
            if w is not None and chunk in w.chunks:
                return w.label
        return None

    def limit(self) -> int | None:
        if self._max_tasks is None:
            return None
        worker = self._pick(0)
        return max(1, self._max_tasks - worker.calls) if worker is not None else 1

    def submit(self, chunk: Chunk) -> int | None:
        began = time.perf_counter()
        self._start_if_all_busy()
        self.starting = time.perf_counter() - began
        shared = 0
        try:
            data, descriptors = self._outbound.dumps((TASK, chunk.start, chunk.items))
            payload = data if not descriptors else pickle.dumps((TASK_SHM, descriptors, data), PROTOCOL)
            shared = sum(length for *_, length in descriptors)
        except Exception:
            payload = self._encode_slowly(chunk)
        worker = self._pick(len(payload), len(chunk.items), chunk.alone)
        if worker is None:
            self._held.append((chunk, payload))
        else:
            self._send(worker, chunk, payload)
        return len(payload) + shared

    def _encode_slowly(self, chunk: Chunk) -> bytes:
        try:
            return dumps((TASK, chunk.start, chunk.items))
        except Exception:
            pass
        errors: dict[int, SerializationError] = {}
        names = _positional_names(self._fn)
        for pos, item in enumerate(chunk.items):
            args, kwargs = arguments_of(self._mode, item, {})
            found = find_unpicklable(args, kwargs, names)
            if found is None:
                continue
            what, value, exc = found
            error = SerializationError(
                f"cannot pickle {what} of item {chunk.start + pos} ({describe(value)}: {exc}); "
                f'pass plain data or use backend="thread"'
            )
            errors[pos] = error  # the message says why; the pickler's own chain is noise
        if not errors:  # pragma: no cover - the whole failed but no part did
            errors = {
                pos: SerializationError(f"cannot pickle item {chunk.start + pos}")
                for pos in range(len(chunk.items))
            }
        raise Unsendable(errors)

    def _pick(self, size: int, calls: int = 0, alone: bool = False) -> Worker | None:
        """The least busy worker for a message of ``size`` bytes and ``calls`` calls.

        A worker with room for the calls under max_tasks_per_worker comes first; if none
        has (a batch requeued after a crash), any will do, so that nothing waits forever.
        None means: wait for a worker to be free (the message is too big to queue, or the
        chunk must run alone). A worker running a chunk alone gets nothing else meanwhile.
        """
        live = [
            w
            for w in self._slots
            if w is not None and not w.retiring and not (w.chunks and w.chunks[0].alone)
        ]
        if alone:
            live = [w for w in live if not w.chunks]
        if self._max_tasks is not None:
            fits = [w for w in live if w.calls + calls <= self._max_tasks]
            live = fits or live
        if not live:
            return None
        # The least work queued, in calls: a worker that holds a short chunk (its reply
        # not read yet) is freer than one that holds a long one.
        best = min(live, key=lambda w: sum(len(c.items) for c in w.chunks))
        if best.chunks and size + len(self._setup) > best.capacity // 2:
            return None  # would block on a busy worker: wait for an idle one
        return best

    def _send(self, worker: Worker, chunk: Chunk, payload: bytes) -> None:
        try:
            if worker.setup is not self._setup:
                worker.send(self._setup)
                worker.setup = self._setup
            worker.send(payload)
        except OSError:
            # The worker is gone (it died after its last reply): report what it held,
            # replace it, and give this chunk to whoever is free.
            self._held.appendleft((chunk, payload))
            self._lost(worker, self._backlog, None)
            return
        if not worker.chunks:
            worker.started = time.monotonic()
        if self._async:
            worker.begun[chunk.start] = time.monotonic()
        worker.chunks.append(chunk)
        if self._max_tasks is not None:
            worker.calls += len(chunk.items)
            worker.retiring = worker.calls >= self._max_tasks

    def wait(self, timeout: float | None) -> list[Event]:
        events, self._backlog = self._backlog, []
        busy = [w for w in self._slots if w is not None and w.chunks]
        if not busy:
            self._dispatch_held()
            return events
        if events:
            timeout = 0.0
        if self._async:  # each call is cancelled at its timeout: past it, the loop is blocked
            calling = [min(w.begun.values()) for w in busy if w.initializing is None and w.begun]
            limit = None if self._timeout is None else self._timeout + GRACE
        else:
            calling = [w.started for w in busy if w.initializing is None]
            limit = self._timeout
        timeout = wait_timeout(timeout, min(calling, default=None), limit)
        starting = [w.init_since for w in busy if w.initializing is not None]
        timeout = wait_timeout(timeout, min(starting, default=None), self._init_timeout)
        ready = self._ready(busy, timeout)
        for w in busy:
            if w.replies.fileno() in ready:
                # What it has sent (log records come before their chunk's reply), up to a
                # bound: a thread that prints without pause must not keep the caller here.
                for _ in range(_READ_AT_ONCE):
                    if not (self._receive(w, events) and self._slots[w.index] is w and w.replies.poll(0)):
                        break
        for w in busy:
            if self._slots[w.index] is w and w.sentinel in ready:
                self._lost(w, events, None)
        now = time.monotonic()
        for w in busy:
            if self._slots[w.index] is not w or not w.chunks:
                continue
            if w.initializing is not None:
                if self._init_timeout is not None and now - w.init_since >= self._init_timeout:
                    self._init_timed_out(w, events, self._init_timeout)
            elif limit is not None and now - (min(w.begun.values()) if self._async else w.started) >= limit:
                self._lost(w, events, self._timeout)
        self._dispatch_held()
        return events

    def _ready(self, busy: list[Worker], timeout: float | None) -> set[int]:
        """The descriptors among the busy workers' reply pipes and sentinels that are ready.

        Like ``multiprocessing.connection.wait``, but the poll object is kept while the
        same descriptors are watched, instead of one built for every wait (a map of many
        short chunks waits once for each).
        """
        fds = tuple(fd for w in busy for fd in (w.replies.fileno(), w.sentinel))
        if fds != self._polled:
            poller = select.poll()  # both replaced together: an interrupt leaves the old pair
            for fd in fds:
                poller.register(fd, select.POLLIN)
            self._poller, self._polled = poller, fds
        ms = None if timeout is None else max(0, math.ceil(min(timeout * 1000, _POLL_MAX_MS)))
        return {fd for fd, _ in self._poller.poll(ms)}  # a hang-up or an error is ready too

    def _init_timed_out(self, worker: Worker, events: list[Event], limit: float) -> None:
        """Stop a worker whose @per_worker factories ran too long; fail the map."""
        code = worker.terminate()
        error = WorkerInitError(
            f"the per-worker factory {worker.initializing} did not finish within the timeout of "
            f"{limit:g}s; {worker.label} was stopped (code {code}); make the factory faster or "
            f"give @per_worker(timeout=...) more time"
        )
        chunks = list(worker.chunks)
        worker.chunks.clear()
        first = chunks[0]
        events.append(
            Done(
                first,
                [None] * len(first.items),
                dict.fromkeys(range(len(first.items)), error),
                0.0,
                worker.label,
            )
        )
        events.extend(Lost(c, "unstarted", "its worker was stopped", code, worker.label) for c in chunks[1:])
        self._slots[worker.index] = self._start(worker.index)

    def _receive(self, worker: Worker, events: list[Event]) -> bool:
        """Read one message of a worker; return False if the pipe is closed."""
        try:
            data = worker.replies.recv_bytes()
        except (EOFError, OSError):
            return False  # died mid-reply: its sentinel tells the rest
        encoded: Any = None  # a chunk's results, still pickled
        message: Any
        ran = 0
        handling, pickled = 0.0, None  # the worker's seconds beyond its calls, and bytes
        try:
            if data[:1] == REPLY:  # a chunk's: its results are unpickled later (Done.decode)
                end = 5 + int.from_bytes(data[1:5], "little")
                ran, captured, elapsed, handling, pickled = pickle.loads(memoryview(data)[5:end])
                message, encoded = ([], captured, elapsed), memoryview(data)[end:]
            else:
                message = pickle.loads(data)
        except Exception as exc:  # a reply that cannot be rebuilt here fails its chunk only
            message = unreadable(worker, exc)
        if deliver(message):  # a log record or printed text, not a chunk's reply
            return True
        if message[0] == INIT:  # a @per_worker factory starts: its time is not a call's
            if worker.initializing is None:
                worker.init_since = time.monotonic()
            worker.initializing = message[1]
            return True
        if message[0] == IDLE_EXIT:  # what it holds never ran: not a crash
            worker.idle_exited = True
            return True
        if message[0] == INIT_DONE:
            worker.initializing = None
            worker.setup_seconds = time.monotonic() - worker.init_since
            worker.started = time.monotonic()
            worker.begun = dict.fromkeys(worker.begun, worker.started)
            return True
        results: list[Any] = []
        if len(message) == 4:  # an async function's chunk: they finish in any order
            encoded, captured, elapsed, start = message
            found = next((c for c in worker.chunks if c.start == start), None)
            if found is None:  # pragma: no cover - a reply for a chunk it no longer holds
                return True
            chunk = found
            worker.chunks.remove(chunk)
            worker.begun.pop(start, None)
        else:
            results, captured, elapsed = message
            chunk = worker.chunks.popleft()
            worker.begun.pop(chunk.start, None)
        worker.started = time.monotonic()
        errors = None
        if captured:
            errors = {pos: rebuild(info) for pos, info in captured.items()}
            if WHOLE_CHUNK in errors:
                error = errors[WHOLE_CHUNK]
                errors = dict.fromkeys(range(len(chunk.items)), error)
                results, encoded = [None] * len(chunk.items), None
        elapsed, times = elapsed if isinstance(elapsed, tuple) else (elapsed, None)
        done = Done(chunk, results, errors, elapsed, worker.label, times, worker.setup_seconds)
        done.handling, done.pickled = handling, pickled
        if encoded is not None:
            done.encoded, done.ran = encoded, ran
            if self._async:  # an async chunk's few results: no need to wait
                done.decode()
        events.append(done)
        worker.setup_seconds = 0.0
        if worker.retiring and not worker.chunks:
            worker.send(pickle.dumps(None))
            worker.reap()
            self._slots[worker.index] = self._start(worker.index)
        return True

    def _lost(self, worker: Worker, events: list[Event], timeout: float | None) -> None:
        """Report a dead (or, with ``timeout``, too slow) worker's chunks; replace it."""
        # What it sent before it died (results, log records) still counts.
        while worker.replies.poll(0) and self._receive(worker, events):
            pass
        if timeout is None:
            code = worker.kill()
            reason = f"{worker.label} {death(code)}"
            kind = "unstarted" if worker.idle_exited else "crash"
        elif self._async:
            code = worker.terminate()
            reason = (
                f"ran longer than the timeout of {timeout:g}s, and {worker.label} did not cancel it "
                f"within {GRACE:g}s more: a call blocks its event loop (a blocking call in an async "
                f"function: await an async one, or use asyncio.to_thread); the worker was stopped"
            )
            kind = "timeout"
        else:
            code = worker.terminate()
            reason = f"ran longer than the timeout of {timeout:g}s; {worker.label} was stopped"
            kind = "timeout"
        chunks = list(worker.chunks)
        worker.chunks.clear()
        if self._async and kind != "unstarted":  # they all ran together: all went down
            beside = tuple(sorted(c.start + i for c in chunks for i in range(len(c.items))))
            now, begun = time.monotonic(), worker.begun
            for chunk in chunks:
                late = timeout is not None and now - begun.get(chunk.start, now) >= timeout + GRACE
                if late or timeout is None:
                    events.append(Lost(chunk, kind, reason, code, worker.label, beside))
                else:
                    why = f"{worker.label} was stopped: another call blocked its event loop"
                    events.append(Lost(chunk, "crash", why, code, worker.label, beside))
        else:
            for i, chunk in enumerate(chunks):
                if i == 0:
                    events.append(Lost(chunk, kind, reason, code, worker.label))
                else:
                    events.append(Lost(chunk, "unstarted", reason, code, worker.label))
        worker.begun.clear()
        self._slots[worker.index] = self._start(worker.index)

    def _dispatch_held(self) -> None:
        while self._held:
            self._start_if_all_busy()
            chunk, payload = self._held[0]
            worker = self._pick(len(payload), len(chunk.items), chunk.alone)
            if worker is None:
                return
            self._held.popleft()
            self._send(worker, chunk, payload)

    def end(self, *, abort: bool) -> None:
        self._held.clear()
        self._backlog = []
        self._outbound.release()
        for i, w in enumerate(self._slots):
            if w is not None and w.chunks:
                w.kill()
                self._slots[i] = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._held.clear()
        self._outbound.release()
        workers = [w for w in self._slots if w is not None]
        self._slots = [None] * self.workers
        self._unstarted = []
        stop = pickle.dumps(None)
        for w in workers:
            if not w.chunks:
                with contextlib.suppress(OSError):
                    w.send(stop)
        deadline = time.monotonic() + _STOP_GRACE
        for w in workers:
            if not w.chunks:
                w.process.join(max(0.0, deadline - time.monotonic()))
            w.kill()


class ProcessBackend:
    """Open pools of worker processes."""

    name = "process"
    shares_memory = True

    def pool_key(self, options: Options) -> Hashable:
        # Shared objects are handed to workers when they start: a pool of their own.
        state = options.state.key if options.state is not None else None
        return (
            "process",
            options.workers,
            options.start_method,
            options.max_tasks_per_worker,
            state,
            options.pool_tag,
        )

    def open_pool(self, options: Options) -> ProcessPool:
        return ProcessPool(options)


BACKEND: Final = ProcessBackend()
