"""A worker process serving an ``async def`` function: its chunks run together in one
event loop, in the worker's main thread.

```
worker main thread: the worker's event loop (the same loop for the worker's whole life)
  task pipe readable ──► (TASK, start, items) ──► a task: call_chunk_async(...)
                                                    └─► reply (results, errors, elapsed, start)
  Setup / None / idle 0.1 s ──► back to the worker's plain loop (_worker), which
                                 handles it (a new run, stop, idle exit)
```

Reading the pipe from the loop itself (``add_reader``) hands a chunk to the loop with no
thread in between: a chunk's round trip costs about what a plain function's does.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Final

from ._aio import call_chunk_async
from ._bigargs import Inbound
from ._calls import Calls
from ._errors import WorkerInitError
from ._forward import flush_output
from ._perworker import PerWorker, made_here
from ._wire import IDLE, INIT_DONE, TASK, WHOLE_CHUNK, read_message

__all__ = ["serve_async", "worker_loop"]

#: Seconds without work after which the worker goes back to its plain loop.
_LINGER: Final = 0.1
_WAKE: Final = object()

_loop: asyncio.AbstractEventLoop | None = None


def worker_loop() -> asyncio.AbstractEventLoop:
    """This worker's event loop: made once, run each time async chunks come."""
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
    return _loop


def serve_async(
    tasks: Connection,
    inbound: Inbound,
    spec: Calls,
    pending: PerWorker | None,
    first: Any,
    send: Callable[..., None],
    step: Callable[[str], None],
    reply: Callable[..., tuple[bytes, ...]],
) -> tuple[Any, bool]:
    """Serve chunks of an async function, starting with ``first``, until something else comes.

    Returns:
        The message that ended it (a `Setup`, None to stop, a message that could not be
        read) or `IDLE`; and whether the per-worker values were made.
    """
    return worker_loop().run_until_complete(_serve(tasks, inbound, spec, pending, first, send, step, reply))


async def _serve(
    tasks: Connection,
    inbound: Inbound,
    spec: Calls,
    pending: PerWorker | None,
    first: Any,
    send: Callable[..., None],
    step: Callable[[str], None],
    reply: Callable[..., tuple[bytes, ...]],
) -> tuple[Any, bool]:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    running: set[asyncio.Task[None]] = set()
    fd = tasks.fileno()
    closed = False  # once this mode ends, the pipe is the plain loop's again

    def readable() -> None:
        # Chunks start at once; anything else ends this mode, and what follows it stays
        # in the pipe for the plain loop to read.
        if closed:
            return
        try:
            while tasks.poll(0):
                message = read_message(tasks.recv_bytes(), inbound)
                if message is not None and message[0] == TASK and not isinstance(message[2], BaseException):
                    start(message)
                    continue
                loop.remove_reader(fd)
                inbox.put_nowait(message)
                return
        except (EOFError, OSError):
            loop.remove_reader(fd)
            inbox.put_nowait(None)

    if pending is not None:
        try:
            values = await made_here("process").avalues_for(pending, step)
        except WorkerInitError as exc:
            flush_output()
            send(*reply([], {WHOLE_CHUNK: exc}, 0.0, first[1]))
            return IDLE, False
        if pending.inject:
            spec = spec.with_keywords(values)
        send(pickle.dumps((INIT_DONE,)))  # the call clock starts now, not before

    def start(message: Any) -> None:
        task = loop.create_task(_chunk(spec, message[1], message[2], send, reply))
        running.add(task)
        task.add_done_callback(finished)

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        if not running:
            inbox.put_nowait(_WAKE)  # look again: idle now?

    loop.add_reader(fd, readable)
    try:
        start(first)
        while True:
            if running:
                message = await inbox.get()
            else:
                try:
                    message = await asyncio.wait_for(inbox.get(), _LINGER)
                except TimeoutError:
                    if running:  # a chunk came meanwhile (chunks start as they come)
                        continue
                    if inbox.empty():
                        return IDLE, True
                    message = inbox.get_nowait()  # it came as the wait ended: not lost
            if message is _WAKE:
                continue
            if running:  # a new run (or stop) only comes once this one's chunks are back
                await asyncio.wait(running)
            return message, True
    finally:
        closed = True  # a read already scheduled must not take a message from the pipe
        loop.remove_reader(fd)


async def _chunk(spec: Calls, start: int, items: Any, send: Callable[..., None], reply: Any) -> None:
    """Run a chunk of async calls; send its reply, naming the chunk."""
    begun = time.perf_counter()
    try:
        results, errors, times = await call_chunk_async(spec, items)
        data = reply(results, errors, time.perf_counter() - begun, start, times)
    except Exception as exc:  # fanmap's own failure: the chunk's items fail with it
        data = reply([], {WHOLE_CHUNK: exc}, 0.0, start)
    flush_output()
    send(*data)
