"""The loop a worker process runs.

A worker reads messages from its task pipe and writes one reply per chunk to its
result pipe. It never decides anything: it runs what it is sent, in order.

```
caller                                   worker
  Setup (function, calls)            --->  loads and keeps them for the run
  (TASK, start, items)               --->  @per_worker values, made on the first chunk
                                     <---  (INIT, factory) ... (INIT_DONE,)
                                           call_chunk(...), or for an async
                                           function call_chunk_async(...) in the
                                           worker's event loop, chunks together
                                     <---  (LOG, record), (OUT, 1, text): see _forward
                                     <---  (results, errors or None, elapsed[, start])
  None                               --->  exits

(the messages are in _wire)
```

Its log records go to the caller over the reply pipe, each as it is emitted, so they
arrive in order, before the reply of the chunk that logged them, and survive a crash.
It ignores SIGINT (the caller handles Ctrl-C and stops the workers), leads its own
process group (so a timeout can stop its children too), shows a segfault's stack
through faulthandler, caps BLAS threads, exits by itself when idle for a long time,
and dies within a fraction of a second of its caller, busy or idle. Under fork it
lets go of the sockets it inherited (a notebook kernel's ports).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import signal
import struct
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Final

from . import _context
from ._args import CallMode
from ._bigargs import Inbound
from ._calls import Calls, Times, call_chunk, callable_of
from ._forward import apply_levels, flush_output, forward_output
from ._perworker import PerWorker, is_init_error, made_here, teardown_process
from ._serialize import PROTOCOL, describe, dumps
from ._traceback import capture
from ._wire import IDLE, IDLE_EXIT, INIT, INIT_DONE, REPLY, WHOLE_CHUNK, Setup, read_message

__all__ = ["started_at", "worker_main"]

#: Seconds between two looks at whether the caller is still there.
_WATCH_EVERY: Final = 0.2

_BLAS_VARIABLES: Final = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def _limit_blas_threads(threads: int) -> None:
    for name in _BLAS_VARIABLES:
        os.environ.setdefault(name, str(threads))


def _load(setup: Setup, state: dict[str, Any], inbound: Inbound) -> tuple[Calls, PerWorker | None]:
    apply_levels(setup.log_levels)
    fn = callable_of(pickle.loads(setup.function))
    mode, kwargs, stop_on_error, is_async, timeout, timed = inbound.loads(setup.calls, setup.descriptors)
    per_worker = pickle.loads(setup.per_worker) if setup.per_worker is not None else None
    calls = Calls(fn, CallMode(mode), {**state, **kwargs}, stop_on_error, is_async, timeout, timed)
    return calls, per_worker


def _reply(
    results: list[Any],
    errors: dict[int, BaseException] | None,
    elapsed: float,
    start: int | None = None,
    times: Times | None = None,
    read: tuple[float, int] | None = None,
) -> tuple[bytes, ...]:
    """A chunk's reply; an async chunk's names its first item (they finish in any order).

    Timed calls send ``(elapsed, times)`` in the place of ``elapsed``. A plain chunk's
    reply is split (`REPLY`): its results are pickled apart from the rest, so that the
    caller can hand the worker its next chunk before it unpickles them. Given how the
    chunk was ``read`` (seconds spent reading and unpickling it, and its pickled size),
    it also says the worker's seconds beyond the calls (those, and pickling the results)
    and the bytes of items and results pickled: the engine sizes chunks by the whole, or
    the last chunk of a map of fast calls would hold several times the work meant.
    """
    pickling = time.perf_counter()
    captured = None if errors is None else {pos: capture(exc) for pos, exc in errors.items()}
    took = elapsed if times is None else (elapsed, times)
    try:
        body = dumps(results)
    except Exception:
        # Some result cannot be pickled: fail just those items, with a message naming them.
        from ._errors import SerializationError  # only now: a plain worker does not load it

        captured = dict(captured or {})
        for pos, value in enumerate(results):
            try:
                dumps(value)
            except Exception as exc:
                error = SerializationError(
                    f"cannot pickle the result ({describe(value)}: {exc}); return plain data "
                    f'(numbers, strings, lists, dicts, dataclasses) or use backend="thread"'
                )
                captured[pos] = capture(error)
                results[pos] = None
        body = dumps(results)
    if start is not None:
        return (dumps((body, captured, took, start)),)  # an async chunk's few results: one message
    reading, size = read if read is not None else (0.0, 0)
    handling = reading + time.perf_counter() - pickling
    head = pickle.dumps((len(results), captured, took, handling, size + len(body)), PROTOCOL)
    return REPLY + len(head).to_bytes(4, "little") + head, body


def send_parts(fd: int, parts: tuple[bytes, ...]) -> None:
    """Write one `multiprocessing.connection` message made of ``parts``, with no copy.

    One message, as ``send_bytes`` would write it (its length first): a process the
    function forked shares this pipe, and its prints must not land inside a reply.
    """
    size = sum(len(part) for part in parts)
    header = struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!iQ", -1, size)
    views = [memoryview(header), *(memoryview(part) for part in parts)]
    while views:
        written = os.writev(fd, views)
        while written and views:
            if written >= len(views[0]):
                written -= len(views.pop(0))
            else:
                views[0], written = views[0][written:], 0


def _release_inherited_sockets() -> None:
    """Point every socket inherited by fork at /dev/null.

    A worker forked from a notebook kernel or a server would otherwise hold their
    listening sockets: a restarted kernel could not bind its ports while the worker
    lives. The descriptors stay open (on /dev/null), so that objects which still name
    them close nothing that is not theirs.
    """
    import stat

    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # pragma: no cover - no /proc
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in fds:
            if fd == null:
                continue
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.dup2(null, fd, inheritable=False)
    finally:
        os.close(null)


def started_at(pid: int) -> str | None:
    """When a process started (its start time in /proc), or None if it is gone.

    With the pid it names one process for good: a pid alone may be reused.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def _die_with(parent: int, caller: int, caller_started: str | None) -> None:
    """Stop this worker (and its process group) within a fraction of a second of its caller.

    A worker busy in a long call never reaches the loop's own check, so a thread
    watches. Under fork and spawn the caller is the parent: when it is gone the worker
    is reparented. Under forkserver the parent is the fork server, which outlives the
    caller while any worker lives, so the caller itself is watched.
    """

    def gone() -> bool:
        if os.getppid() != parent:
            return True
        if caller == parent:
            return False
        if caller_started is not None:
            return started_at(caller) != caller_started
        try:
            os.kill(caller, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False

    def watch() -> None:
        while True:
            time.sleep(_WATCH_EVERY)
            if gone():
                with contextlib.suppress(OSError):
                    os.killpg(os.getpid(), signal.SIGKILL)
                os._exit(1)

    threading.Thread(target=watch, name="fanmap-lifeline", daemon=True).start()


def worker_main(
    tasks: Connection,
    replies: Connection,
    blas_threads: int,
    idle_timeout: float,
    state: dict[str, Any],
    forked: bool = False,
    caller: tuple[int, str | None] | None = None,
) -> None:
    """Serve chunks until told to stop, idle too long, or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):  # already a group leader
        os.setpgid(0, 0)
    parent = os.getppid()
    caller_pid, caller_started = caller if caller is not None else (parent, None)
    _die_with(parent, caller_pid, caller_started)
    if forked:
        _release_inherited_sockets()
    faulthandler.enable()
    _limit_blas_threads(blas_threads)
    _context.mark_worker()
    send_lock = threading.Lock()
    forward_output(replies, send_lock)
    try:
        _serve(tasks, replies, idle_timeout, state, parent, send_lock)
    finally:
        teardown_process()  # generator factories of @per_worker resume after their yield
        flush_output()


def _serve(
    tasks: Connection,
    replies: Connection,
    idle_timeout: float,
    state: dict[str, Any],
    parent: int,
    send_lock: threading.Lock,
) -> None:
    spec: Calls | None = None
    spec_error: BaseException | None = None
    pending: PerWorker | None = None  # per-worker values not made yet in this run
    inbound = Inbound()
    idle_since = time.monotonic()

    def send(*parts: bytes) -> None:
        with send_lock:
            if len(parts) == 1:
                replies.send_bytes(parts[0])
            else:  # one message from its parts, without copying them into one
                send_parts(replies.fileno(), parts)

    def step(label: str) -> None:
        send(pickle.dumps((INIT, label)))

    carried: Any = IDLE  # a message an async run handed back, to handle here

    while True:
        read: tuple[float, int] | None = None  # (seconds, pickled bytes) of a task read
        if carried is not IDLE:
            message, carried = carried, IDLE
        elif not tasks.poll(1.0):
            if os.getppid() != parent:
                return
            if time.monotonic() - idle_since > idle_timeout:
                # Say so first: work the caller sent meanwhile is then run elsewhere,
                # not counted as a crash of this worker.
                send(pickle.dumps((IDLE_EXIT,)))
                return
            continue
        else:
            try:
                arrived = time.perf_counter()
                data = tasks.recv_bytes()
                message = read_message(data, inbound)
                read = (time.perf_counter() - arrived, len(data))
                del data
            except EOFError:
                return
        if message is None:
            return
        if isinstance(message, Setup):
            idle_since = time.monotonic()
            spec = None
            inbound.release()  # the last run's segments
            try:
                (spec, pending), spec_error = _load(message, state, inbound), None
            except Exception as exc:
                spec, spec_error = None, exc
            continue
        items = message[2]
        if isinstance(items, BaseException) or spec is None:
            problem = items if isinstance(items, BaseException) else spec_error
            from ._errors import SerializationError

            error = SerializationError(
                f"the worker could not unpickle what it was sent ({type(problem).__name__}: "
                f"{problem}); make sure the function and its arguments are importable in a "
                f"fresh interpreter (module-level, not defined under "
                f"if __name__ == '__main__'), or use backend=\"thread\""
            )
            error.__cause__ = problem
            send(*_reply([], {WHOLE_CHUNK: error}, 0.0))
            continue
        if spec.is_async:  # its chunks run together in the worker's event loop
            from ._aworker import serve_async  # asyncio is imported by async runs only

            carried, made = serve_async(tasks, inbound, spec, pending, message, send, step, _reply)
            pending = None if made else pending
            idle_since = time.monotonic()
            continue
        if pending is not None:
            try:
                values = made_here("process").values_for(pending, step)
            except Exception as exc:
                if not is_init_error(exc):
                    raise
                flush_output()
                send(*_reply([], {WHOLE_CHUNK: exc}, 0.0))
                continue
            spec, pending = (spec.with_keywords(values) if pending.inject else spec), None
            send(pickle.dumps((INIT_DONE,)))  # the call clock starts now, not before
        begun = time.perf_counter()
        results, errors, times = call_chunk(spec, items)
        reply = _reply(results, errors, time.perf_counter() - begun, None, times, read)
        flush_output()
        send(*reply)
        idle_since = time.monotonic()
