"""What the engine and the backends say to each other: runs, chunks and their outcomes.

A *run* is one ``map``/``imap``/... call. The engine cuts its input into *chunks* of
consecutive items and hands them to a backend's pool with the run's `RunSpec`; the
pool runs each chunk with `call_chunk` (in a worker process, a thread, the caller or
a Dask task) and reports a `Done` or a `Lost` event for it. The engine alone decides
what to do with those events.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._calls import Calls, Times

if TYPE_CHECKING:
    from ._perworker import PerWorker

__all__ = ["Chunk", "Done", "Event", "Lost", "RunSpec"]


@dataclasses.dataclass(slots=True, frozen=True)
class RunSpec:
    """What every chunk of a run shares, as a backend needs it."""

    calls: Calls
    #: What to pickle to send the function: the decorated object when it is importable.
    ref: Any
    #: Seconds one call may run (the pool stops the worker past it), or None.
    timeout: float | None
    #: Shared objects to give every call as keywords (``@shared_state``), by name.
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Values each worker makes once (``@per_worker``), given to every call as keywords.
    per_worker: PerWorker | None = None
    #: For an ``async def`` function, the calls in flight at once in each worker (its
    #: chunks run together in the worker's event loop); None for a plain function.
    concurrency: int | None = None


@dataclasses.dataclass(slots=True, eq=False)
class Chunk:
    """Consecutive items ``start``, ``start + 1``, ... of a run's input."""

    start: int
    items: Sequence[Any]
    #: Run it with no other call in flight in its worker: an async call tried again
    #: after its worker died (or its loop blocked) with other calls in flight, so that a
    #: second failure is its own, and a call that was only beside the culprit succeeds.
    alone: bool = False


@dataclasses.dataclass(slots=True)
class Done:
    """A chunk ran (to its end, or with ``stop_on_error`` to its first failure).

    ``results`` holds one entry per item that ran, ``None`` where ``errors`` holds the
    item's exception.
    """

    chunk: Chunk
    results: list[Any]
    errors: dict[int, BaseException] | None
    elapsed: float
    worker: str
    #: Each call's seconds, when the calls were timed (``fanmap.insights()``), with
    #: their starts for calls that ran together (see `Times`).
    times: Times | None = None
    #: Seconds the worker's @per_worker factories took before this chunk ran.
    setup: float = 0.0
    #: The results still pickled, as a worker process sent them (``results`` is empty
    #: until `decode`): the engine first hands the worker more work.
    encoded: Any = None
    #: How many items ran (``len(results)`` once decoded).
    ran: int = -1
    #: Seconds the worker spent on the chunk beyond its calls and factories (reading and
    #: unpickling the items, pickling the results): chunks are sized by the whole,
    #: insights count the calls only.
    handling: float = 0.0
    #: Bytes of the chunk's items and results as pickled (shared-memory arrays aside),
    #: where a worker process pickled them; else None.
    pickled: int | None = None

    def __post_init__(self) -> None:
        if self.encoded is None:
            self.ran = len(self.results)

    def decode(self) -> None:
        """Unpickle the results; if they cannot be rebuilt here, every item fails."""
        if self.encoded is None:
            return
        data, self.encoded = self.encoded, None
        try:
            self.results = pickle.loads(data)
            self.ran = len(self.results)
        except Exception as exc:
            from ._errors import SerializationError

            n = self.ran if self.ran > 0 else len(self.chunk.items)  # the items that ran
            last = self.chunk.start + n - 1
            which = f"item {last}" if n == 1 else f"items {self.chunk.start} to {last}"
            error = SerializationError(
                f"the results of {which} came back from {self.worker} but cannot be rebuilt "
                f"here ({type(exc).__name__}: {exc}); return plain data"
            )
            # The items that failed by themselves keep their own errors.
            self.results = [None] * n
            self.errors = {**dict.fromkeys(range(n), error), **(self.errors or {})}
            self.ran = n


@dataclasses.dataclass(slots=True)
class Lost:
    """A chunk's worker died or was stopped before the chunk finished.

    ``kind`` is ``"crash"`` (the worker died while running it), ``"timeout"`` (it was
    stopped for running too long) or ``"unstarted"`` (queued behind a lost chunk on
    the same worker: it never ran).
    """

    chunk: Chunk
    kind: str
    reason: str
    exitcode: int | None
    worker: str
    #: Every item its worker had in flight when it was lost (async calls run together).
    beside: tuple[int, ...] = ()


Event = Done | Lost
