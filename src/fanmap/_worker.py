"""The loop a worker process runs.

A worker reads messages from its task pipe and writes one reply per chunk to its
result pipe. It never decides anything: it runs what it is sent, in order.

```
caller                                   worker
  SETUP (function, keywords, policy) --->  loads and keeps them for the run
  TASK (start, items)                --->  call_chunk(...)
                                     <---  (LOG, record) for each record logged
                                     <---  (results, errors or None, elapsed)
  None                               --->  exits
```

Its log records go to the caller over the reply pipe, each as it is emitted, so they
arrive in order, before the reply of the chunk that logged them, and survive a crash.
It ignores SIGINT (the caller handles Ctrl-C and stops the workers), leads its own
process group (so a timeout can stop its children too), shows a segfault's stack
through faulthandler, caps BLAS threads, and exits by itself when idle for a long
time or when the caller is gone.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import pickle
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Final

from . import _pools
from ._chunk import RunSpec, call_chunk
from ._errors import SerializationError
from ._serialize import PROTOCOL, describe, dumps
from ._shm import Inbound
from ._traceback import capture

__all__ = ["LOG", "SETUP", "TASK", "TASK_SHM", "WHOLE_CHUNK", "worker_main"]

TASK: Final = 0
SETUP: Final = 1
#: A reply that is a log record, not a chunk's outcome: (LOG, record attributes).
LOG: Final = "log"
#: A task whose large buffers are in shared memory: (TASK_SHM, descriptors, pickle).
TASK_SHM: Final = 2
#: The key under which an error stands for every item of the chunk.
WHOLE_CHUNK: Final = -1

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


class _ForwardLogging(logging.Handler):
    """Sends every log record to the caller over the reply pipe, as it is emitted."""

    def __init__(self, replies: Connection, lock: threading.Lock) -> None:
        super().__init__()
        self._replies = replies
        self._lock = lock

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = dict(record.__dict__)
            data["msg"] = record.getMessage()
            data["args"] = None
            if record.exc_info:
                data["exc_text"] = self.formatException(record.exc_info)
                data["exc_info"] = None
            try:
                blob = pickle.dumps((LOG, data), PROTOCOL)
            except Exception:  # an unpicklable `extra=` value: send its repr
                data = {k: v if _picklable(v) else repr(v) for k, v in data.items()}
                blob = pickle.dumps((LOG, data), PROTOCOL)
            with self._lock:
                self._replies.send_bytes(blob)
        except Exception:
            self.handleError(record)

    def formatException(self, exc_info: Any) -> str:
        return logging.Formatter().formatException(exc_info)


def _picklable(value: object) -> bool:
    try:
        pickle.dumps(value, PROTOCOL)
    except Exception:
        return False
    return True


def _forward_logging(replies: Connection, lock: threading.Lock) -> None:
    """Route this worker's logging to the caller, and only there (no duplicates under fork)."""
    forward = _ForwardLogging(replies, lock)
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.addHandler(forward)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.handlers:
            logger.handlers.clear()  # inherited by fork: they would write a second time
            if not logger.propagate:
                logger.addHandler(forward)


def _apply_levels(levels: dict[str, int]) -> None:
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)


def _load_spec(message: tuple[Any, ...], state: dict[str, Any], inbound: Inbound) -> RunSpec:
    _, fn_blob, rest_blob, descriptors, levels = message
    _apply_levels(levels)
    fn = pickle.loads(fn_blob)
    mode, kwargs, fail_fast, retries, retry_on, timeout = inbound.loads(rest_blob, descriptors)
    plain = getattr(fn, "_fanmap_fn", None) or getattr(fn, "__fanmap_state__", (fn,))[0]
    return RunSpec(plain, fn, mode, {**state, **kwargs}, fail_fast, retries, retry_on, timeout)


def _reply(results: list[Any], errors: dict[int, BaseException] | None, elapsed: float) -> bytes:
    captured = None if errors is None else {pos: capture(exc) for pos, exc in errors.items()}
    try:
        return dumps((results, captured, elapsed))
    except Exception:
        pass
    # Some result cannot be pickled: fail just those items, with a message naming them.
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
    return dumps((results, captured, elapsed))


def worker_main(
    tasks: Connection, replies: Connection, blas_threads: int, idle_timeout: float, state: dict[str, Any]
) -> None:
    """Serve chunks until told to stop, idle too long, or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):  # already a group leader
        os.setpgid(0, 0)
    faulthandler.enable()
    _limit_blas_threads(blas_threads)
    _pools.mark_worker()
    send_lock = threading.Lock()
    _forward_logging(replies, send_lock)
    parent = os.getppid()
    spec: RunSpec | None = None
    spec_error: BaseException | None = None
    inbound = Inbound()
    idle_since = time.monotonic()
    while True:
        if not tasks.poll(1.0):
            if os.getppid() != parent or time.monotonic() - idle_since > idle_timeout:
                return
            continue
        try:
            data = tasks.recv_bytes()
        except EOFError:
            return
        try:
            message = pickle.loads(data)
            if message is not None and message[0] == TASK_SHM:
                message = inbound.loads(message[2], message[1])
        except Exception as exc:
            message = (TASK, None, exc)
        if message is None:
            return
        if message[0] == SETUP:
            spec = None
            inbound.release()  # the last run's segments
            try:
                spec, spec_error = _load_spec(message, state, inbound), None
            except Exception as exc:
                spec, spec_error = None, exc
            continue
        begun = time.perf_counter()
        items = message[2]
        if isinstance(items, BaseException) or spec is None:
            problem = items if isinstance(items, BaseException) else spec_error
            error = SerializationError(
                f"the worker could not unpickle what it was sent ({type(problem).__name__}: "
                f"{problem}); make sure the function and its arguments are importable in a "
                f"fresh interpreter (module-level, not defined under "
                f"if __name__ == '__main__'), or use backend=\"thread\""
            )
            error.__cause__ = problem
            reply = _reply([], {WHOLE_CHUNK: error}, 0.0)
            with send_lock:
                replies.send_bytes(reply)
            continue
        results, errors = call_chunk(spec, items)
        reply = _reply(results, errors, time.perf_counter() - begun)
        with send_lock:
            replies.send_bytes(reply)
        idle_since = time.monotonic()
