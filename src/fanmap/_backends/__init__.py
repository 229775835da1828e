"""The backend boundary: a small protocol, and the registry of built-in backends.

A backend opens pools; a pool runs chunks and reports what happened to each one. It
knows nothing of ordering, retries of crashed items, error policy or progress: the
engine does all of that, the same way for every backend.

Built-in backends are imported only when first asked for.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Final, Protocol

from .._errors import SerializationError

if TYPE_CHECKING:
    from .._chunk import Chunk, Event, RunSpec
    from .._config import Options

__all__ = ["Backend", "Pool", "Unsendable", "get_backend", "wait_timeout"]


class Unsendable(Exception):
    """Some items of a chunk could not be pickled; nothing of the chunk was sent."""

    def __init__(self, errors: dict[int, SerializationError]) -> None:
        super().__init__(errors)
        self.errors = errors


class Pool(Protocol):
    """Workers that run chunks; one run at a time."""

    #: How many chunks can run at once.
    workers: int

    @property
    def target_seconds(self) -> float | None:
        """How much work one chunk should hold, in seconds; None for the engine's default
        (which suits local workers: a remote backend asks for more)."""
        ...

    @property
    def chunks_together(self) -> bool:
        """Whether a worker runs several chunks of an async function at once (in its
        event loop), or one at a time (the calls of a chunk still run together)."""
        ...

    @property
    def queue_shared(self) -> bool:
        """Whether a queued chunk goes to whichever worker is free first (then one chunk
        per worker may always wait), or to the worker it was given to, behind its
        running chunk (then queuing near the end of input would hold the end back)."""
        ...

    @property
    def usable(self) -> bool:
        """Whether the pool may serve another run."""
        ...

    def begin(self, spec: RunSpec) -> None:
        """Prepare for a run. Raises `SerializationError` if the spec cannot be sent."""
        ...

    def room(self, depth: int) -> int:
        """How many more chunks to accept now, keeping at most ``depth`` per worker."""
        ...

    def limit(self) -> int | None:
        """The most items the next chunk may hold (``max_tasks_per_worker``), if any."""
        ...

    def submit(self, chunk: Chunk) -> int | None:
        """Start a chunk (or queue it behind a running one). Raises `Unsendable`.

        Returns the size of the chunk's pickled items in bytes, where they are pickled
        (the engine bounds what it reads ahead by it), else None.
        """
        ...

    def wait(self, timeout: float | None) -> list[Event]:
        """Block until something happened to a submitted chunk or ``timeout`` passed.

        A `Done` may come with its results still pickled (``encoded``): the engine
        submits more chunks first, then calls ``decode()``.
        """
        ...

    def end(self, *, abort: bool) -> None:
        """Finish a run; with ``abort``, stop running chunks and drop queued ones."""
        ...

    def close(self) -> None:
        """Stop every worker and free what the pool holds."""
        ...


class Backend(Protocol):
    """Something that opens pools: one of the built-in backends, or a user's."""

    name: str
    #: Whether its workers can share memory with the caller (``@shared_state``).
    shares_memory: bool

    def pool_key(self, options: Options) -> Hashable:
        """Runs whose options give equal keys may share a warm pool."""
        ...

    def open_pool(self, options: Options) -> Pool:
        """Open a pool for these options."""
        ...


#: Seconds a pool's ``wait`` blocks at most for a call's deadline: a poll takes at most
#: about 24 days, a thread's wait about 1e10 s or less, and a timeout may be longer.
_LONGEST_WAIT: Final = 3600.0


def wait_timeout(timeout: float | None, oldest: float | None, limit: float | None) -> float | None:
    """How long a pool's ``wait`` may block: until ``timeout``, or the first call's deadline.

    Args:
        timeout: What the engine allowed (None: until something happens).
        oldest: When the longest-running call began (``time.monotonic()``), or None.
        limit: The run's ``timeout`` option, or None.
    """
    if limit is None or oldest is None:
        return timeout
    # A deadline further than a wait can take is looked at again after `_LONGEST_WAIT`.
    first = min(max(0.0, oldest + limit - time.monotonic()), _LONGEST_WAIT)
    return first if timeout is None else max(0.0, min(timeout, first))


_BUILT_IN: Final = {
    "process": "._process",
    "thread": "._thread",
    "serial": "._serial",
    "dask": "._dask",
}


def get_backend(spec: object) -> Backend:
    """Return the backend an option value names (importing it on first use), or the object."""
    if isinstance(spec, str):
        module = importlib.import_module(_BUILT_IN[spec], __name__)
        backend: Backend = module.BACKEND
        return backend
    return spec  # type: ignore[return-value]  # validated: a DaskBackend
