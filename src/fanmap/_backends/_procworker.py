"""One worker process of the process backend, as the pool sees it: its process, its two
pipes, the chunks it holds, and how to stop it and reap it safely."""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import pickle
import signal
from multiprocessing.connection import Connection, wait
from typing import Any, Final

from .. import _pools
from .._chunk import Chunk
from .._errors import SerializationError
from .._forward import OUT, deliver
from .._mainmod import without_main
from .._traceback import capture
from .._wire import REPLY, WHOLE_CHUNK
from .._worker import started_at, worker_main

__all__ = ["Worker", "death", "unreadable"]

_PIPE_SIZE: Final = 1 << 20
#: Seconds between SIGTERM and SIGKILL when a worker is stopped for a timeout.
_TERM_GRACE: Final = 0.5


def _grow_pipe(conn: Connection) -> int:
    """Enlarge a pipe's buffer where the OS allows it; return its capacity."""
    try:
        import fcntl

        return int(fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE))
    except (ImportError, AttributeError, OSError):  # pragma: no cover - not Linux
        return 1 << 16


_caller_seen: list[tuple[int, str | None]] = []


def _caller() -> tuple[int, str | None]:
    """This process's pid and start time, for its workers to watch it (read once)."""
    pid = os.getpid()
    if not _caller_seen or _caller_seen[0][0] != pid:  # a forked child is a caller of its own
        _caller_seen[:] = [(pid, started_at(pid))]
    return _caller_seen[0]


def death(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:  # pragma: no cover - unknown signal number
            name = f"signal {-exitcode}"
        return f"was killed by {name}"
    if exitcode == 0:
        return "exited with code 0 (os._exit or sys.exit in the function?)"
    return f"exited with code {exitcode}"


class Worker:
    __slots__ = (
        "begun",
        "calls",
        "capacity",
        "chunks",
        "idle_exited",
        "index",
        "init_since",
        "initializing",
        "label",
        "process",
        "replies",
        "retiring",
        "sentinel",
        "setup",
        "setup_seconds",
        "started",
        "tasks",
    )

    def __init__(self, index: int, context: Any, blas_threads: int, state: dict[str, Any]) -> None:
        tasks_r, tasks_w = multiprocessing.Pipe(duplex=False)
        replies_r, replies_w = multiprocessing.Pipe(duplex=False)
        self.index = index
        self.tasks: Connection = tasks_w
        self.replies: Connection = replies_r
        self.capacity = _grow_pipe(tasks_w)
        _grow_pipe(replies_w)
        self.process = context.Process(
            target=worker_main,
            args=(
                tasks_r,
                replies_w,
                blas_threads,
                _pools.IDLE_TIMEOUT,
                state,
                context.get_start_method() == "fork",
                _caller(),
            ),
            name=f"fanmap-worker-{index}",
        )
        with without_main():
            self.process.start()
        tasks_r.close()
        replies_w.close()
        self.sentinel: int = self.process.sentinel
        self.label = f"worker {index} (pid {self.process.pid})"
        self.chunks: collections.deque[Chunk] = collections.deque()
        #: For an async function, when each chunk it holds was sent (they run together).
        self.begun: dict[int, float] = {}
        self.setup: bytes | None = None
        self.started = 0.0
        self.calls = 0
        self.retiring = False
        self.initializing: str | None = None  # the @per_worker factory it runs, if any
        self.idle_exited = False
        self.init_since = 0.0
        self.setup_seconds = 0.0  # its @per_worker factories' time, for the next chunk's Done

    def send(self, payload: bytes) -> None:
        self.tasks.send_bytes(payload)

    def gone(self) -> bool:
        """Whether the worker has exited, however it went and whoever reaped it.

        A worker that is gone is never signalled: if someone else reaped it (a
        supervisor calling ``os.waitpid(-1, ...)``, ``SIGCHLD`` ignored), its pid may
        belong to another process already.
        """
        return self.process.exitcode is not None or bool(wait([self.sentinel], 0))

    def _drain(self) -> None:
        """Hand on what an exited worker wrote last: its teardown's log records and prints."""
        with contextlib.suppress(EOFError, OSError):
            while self.replies.poll(0):
                data = self.replies.recv_bytes()
                if data[:1] == REPLY:  # a chunk's reply: lost with the worker
                    continue
                message = pickle.loads(data)
                if isinstance(message, tuple):
                    deliver(message)

    def kill(self) -> int | None:
        """Stop the worker and its process group at once; return its exit code."""
        pid = self.process.pid
        if pid is not None and not self.gone():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return self.reap()

    def terminate(self) -> int | None:
        """SIGTERM the worker's process group, then SIGKILL what is left."""
        pid = self.process.pid
        if pid is not None and not self.gone():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            self.process.join(_TERM_GRACE)
        return self.kill()

    def reap(self) -> int | None:
        self.process.join()  # at once if someone else reaped it: its sentinel is closed
        self._drain()
        # The group outlives its leader while a grandchild is in it (if we reaped it
        # just now, its pid cannot have been reused yet).
        if self.process.pid is not None and self.process.exitcode is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.tasks.close()
        self.replies.close()
        code: int | None = self.process.exitcode
        try:
            self.process.close()
        except ValueError:  # reaped by someone else: its exit code is lost with it
            _forget(self.process)
        return code


def unreadable(worker: Worker, exc: Exception) -> tuple[Any, ...]:
    """A chunk's reply that cannot be unpickled here, as a reply failing each of its items."""
    if not worker.chunks:
        return (OUT, 2, f"fanmap: a message from {worker.label} could not be read ({exc!r})\n")
    chunk = worker.chunks[0]
    last = chunk.start + len(chunk.items) - 1
    which = f"item {last}" if last == chunk.start else f"items {chunk.start} to {last}"
    error = SerializationError(
        f"the results of {which} came back "
        f"from {worker.label} but cannot be rebuilt here ({type(exc).__name__}: {exc}); "
        f"return plain data"
    )
    return [None] * len(chunk.items), {WHOLE_CHUNK: capture(error)}, 0.0


def _forget(process: Any) -> None:
    """Let go of a process object whose child someone else reaped (close its handles)."""
    import multiprocessing.process

    multiprocessing.process._children.discard(process)  # type: ignore[attr-defined]
    finalizer = getattr(getattr(process, "_popen", None), "finalizer", None)
    if finalizer is not None:
        finalizer()
