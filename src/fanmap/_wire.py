"""The messages between the caller and a worker process, on its two pipes.

```
task pipe   Setup(function, calls, descriptors, log_levels)   once per run (a map)
            (TASK, start, items)                               one per chunk
            (TASK_SHM, descriptors, pickle of the above)       when large buffers ride in shared memory
            None                                               stop
reply pipe  (INIT, "model=load_model")                        a @per_worker factory starts
            (INIT_DONE,)                                      every factory finished
            (IDLE_EXIT,)                                      it stops, idle too long
            REPLY, len(head), head, results                   one per chunk: head is the
                                                               pickled (count, errors or
                                                               None, elapsed); results are
                                                               pickled apart (see below)
            (results, errors or None, elapsed, start)          one per chunk of an async
                                                               function (any order; the
                                                               results pickled apart too)
            (LOG, record) / (OUT, 1 or 2, text)                 see _forward
```

Chunk messages stay plain tuples: they are the hot path, and a named tuple costs a
class lookup on every message. A reply's results are pickled apart from the rest, so
that the caller reads the small part, hands the worker its next chunk, and only then
unpickles the results (thousands of objects for a chunk of fast calls): the worker
does not wait for that.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from ._bigargs import Inbound

__all__ = [
    "IDLE",
    "IDLE_EXIT",
    "INIT",
    "INIT_DONE",
    "REPLY",
    "TASK",
    "TASK_SHM",
    "WHOLE_CHUNK",
    "Setup",
    "read_message",
]

#: An async worker went idle, with no message to hand back to the plain loop.
IDLE: Final = object()
TASK: Final = 0
#: A task whose large buffers are in shared memory: (TASK_SHM, descriptors, pickle).
TASK_SHM: Final = 2
#: The first byte of a plain chunk's reply (a pickle starts with another).
REPLY: Final = b"R"
#: The key under which an error stands for every item of the chunk.
WHOLE_CHUNK: Final = -1
#: Replies: a per-worker factory starts (with its name), and all have finished.
INIT: Final = "init"
INIT_DONE: Final = "init-done"
#: Reply: the worker stops, idle too long; what it was sent after this did not run.
IDLE_EXIT: Final = "idle-exit"


class Setup(NamedTuple):
    """What a worker needs for a run, sent before the run's first chunk."""

    #: The pickled function (by reference when importable, else by value).
    function: bytes
    #: The pickled ``(mode, keywords, stop_on_error, is_async, timeout, timed)``, large
    #: buffers in shared memory.
    calls: bytes
    #: The shared-memory segments ``calls`` refers to.
    descriptors: list[tuple[str, int, int, int]]
    #: The caller's logging levels, so that the worker makes the same records.
    log_levels: dict[str, int]
    #: The pickled `PerWorker` of the function, if it has one.
    per_worker: bytes | None = None


def read_message(data: Any, inbound: Inbound) -> Any:
    """A message of the task pipe, unpickled (shared-memory buffers mapped); one that
    cannot be read becomes ``(TASK, None, exception)``."""
    if data is None:
        return None
    try:
        message = pickle.loads(data)
        if message is not None and message[0] == TASK_SHM:
            message = inbound.loads(message[2], message[1])
    except Exception as exc:
        message = (TASK, None, exc)
    return message
