"""One run's bookkeeping while the engine drives it: what is in flight and how far the
input is read ahead, the retry queue, and what each chunk's outcome becomes (results,
a `Failure`, a skip, a retry, or the error that ends the run) under the run's `Policy`.

The engine (`_engine`) decides when to read, send and wait; a `Run` keeps the counts
those decisions rest on and turns a backend's `Done` and `Lost` into blocks of final
values.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._checkpoint import Store

from ._args import arguments_of
from ._backends import Unsendable
from ._chunk import Chunk, Done, Lost, RunSpec
from ._config import Options
from ._errors import (
    Failure,
    SerializationError,
    TaskTimeoutError,
    WorkerCrashedError,
    WorkerInitError,
)
from ._insights import MapRecord
from ._policy import SKIPPED, Policy
from ._progress import open_reporter
from ._serialize import describe, short_repr
from ._sources import Source

__all__ = ["Block", "Run", "describe_call"]

#: Pickled input read ahead and not yet handed back, at most (when no buffersize is set).
_BYTES_AHEAD: Final = 64 << 20
#: Items per chunk at most in a lazy run (imap): what a generator is read ahead stays small.
_LAZY_MAX_ITEMS: Final = 1024

Block = tuple[int, list[Any]]


def describe_call(mode: int, item: Any) -> str:
    """``(1, 'a', key=2)``: an item's call, short enough for a message."""
    args, kwargs = arguments_of(mode, item, {})
    parts = [short_repr(a) for a in args] + [f"{k}={short_repr(v)}" for k, v in kwargs.items()]
    return f"({', '.join(parts)})" if len(parts) != 1 else f"({parts[0]},)" if not kwargs else f"({parts[0]})"


class Run:
    """The state of one run while it goes."""

    def __init__(
        self,
        spec: RunSpec,
        policy: Policy,
        options: Options,
        source: Source,
        window: int | None,
        lazy: bool,
        label: str,
    ) -> None:
        self.spec = spec
        self.policy = policy
        self.options = options
        self.source = source
        self.window = window
        self.lazy = lazy
        #: The items read to see whether there are any: the first chunk.
        self.first: Sequence[Any] | None = None
        #: The checkpoint file's records (``checkpoint=``), if any.
        self.store: Store | None = None
        #: What ``fanmap.insights()`` records of this run, if it is on.
        self.insight: MapRecord | None = None
        self.retry: deque[Chunk] = deque()
        self.in_flight = 0
        self.reporter = open_reporter(options.progress, source.total, label)
        #: Items handed back to the consumer so far (with the position: items read ahead).
        self.handed = 0
        #: Pickled bytes of the chunks in flight, by chunk start, and their sum.
        self.chunk_bytes: dict[int, int] = {}
        self.bytes_out = 0
        self.sent_items = 0
        self.sent_bytes = 0

    # -- read-ahead ----------------------------------------------------------------

    def sent(self, chunk: Chunk, size: int | None) -> None:
        self.in_flight += 1
        if size is None:
            return
        self.chunk_bytes[chunk.start] = self.chunk_bytes.get(chunk.start, 0) + size
        self.bytes_out += size
        self.sent_items += len(chunk.items)
        self.sent_bytes += size

    def back(self, chunk: Chunk) -> None:
        self.in_flight -= 1
        self.bytes_out -= self.chunk_bytes.pop(chunk.start, 0)

    def read_limit(self, position: int) -> int | None:
        """The most new items to read now (None: no limit); 0 means wait for results."""
        limits: list[int] = []
        if self.options.buffersize is not None:
            limits.append(self.options.buffersize - (position - self.handed))
        if self.sent_items:
            per_item = max(1.0, self.sent_bytes / self.sent_items)
            limits.append(int((_BYTES_AHEAD - self.bytes_out) / per_item))
        if self.lazy:
            limits.append(_LAZY_MAX_ITEMS)
        if not limits:
            return None
        limit = min(limits)
        if limit <= 0 and self.in_flight == 0:
            return 1  # nothing in flight: always make progress
        return max(0, limit)

    # -- outcomes ------------------------------------------------------------------

    def fail(self, error: BaseException, index: int, item: Any, worker: str, note: bool) -> Any:
        if isinstance(error, WorkerInitError):
            error.add_note(
                f"fanmap: in {worker}, before item {index} could run; no error policy applies "
                f"to a per-worker factory that failed: the map stopped"
            )
            raise error
        if note:
            call = describe_call(self.spec.calls.mode, item)
            error.add_note(f"fanmap: raised by item {index} {call} in {worker}")
            if isinstance(error, ValueError) and "read-only" in str(error):
                error.add_note(
                    "fanmap: NumPy arrays of 1 MiB or more, and any from fanmap.share, reach "
                    "process workers as read-only views of shared memory: copy one (a.copy()) "
                    "to change it in a call"
                )
        if self.insight is not None:
            self.insight.failed(index, error)
        return self.policy.settle(error, index, self.spec.calls.mode, item, self.spec.calls.kwargs)

    def done(self, event: Done) -> list[Block]:
        chunk, results, errors = event.chunk, event.results, event.errors
        if not errors and len(results) == len(chunk.items):
            if self.store is not None:  # all succeeded: one record, nothing to look through
                self._record(chunk.start, chunk.items, results, 0, event.worker)
            return [(chunk.start, results)]
        blocks: list[Block] = []
        again: list[Chunk] = []
        begin, values = 0, []
        for pos, value in enumerate(results):
            error = errors.get(pos) if errors else None
            if error is None:
                values.append(value)
                continue
            index = chunk.start + pos
            if self.policy.retry(index, error):
                if self.insight is not None:
                    self.insight.retried(index)
                if values:
                    blocks.append((chunk.start + begin, values))
                begin, values = pos + 1, []
                again.append(Chunk(index, chunk.items[pos : pos + 1]))
            else:
                if isinstance(error, TaskTimeoutError) and str(error).startswith("the call "):
                    error = _named(error, index, describe_call(self.spec.calls.mode, chunk.items[pos]))
                values.append(self.fail(error, index, chunk.items[pos], event.worker, note=True))
        if values:
            blocks.append((chunk.start + begin, values))
        if self.store is not None:
            for start, block in blocks:
                self.record(
                    start,
                    chunk.items[start - chunk.start : start - chunk.start + len(block)],
                    block,
                    event.worker,
                )
        ran = len(results)
        if ran < len(chunk.items):  # stopped at a failure: the rest did not run
            again.append(Chunk(chunk.start + ran, chunk.items[ran:]))
        self.retry.extendleft(reversed(again))
        return blocks

    # -- the checkpoint ------------------------------------------------------------

    def stored_block(self, position: int) -> tuple[int, int] | None:
        """A recorded block at ``position`` (its size), or the gap before the next one."""
        return None if self.store is None else self.store.next_block(position)

    def record(self, start: int, items: Sequence[Any], values: list[Any], worker: str) -> None:
        """Record the successful results of a block (a `Failure` or skip splits it)."""
        assert self.store is not None
        begin = 0
        for pos in range(len(values) + 1):
            failed = pos < len(values) and (isinstance(values[pos], Failure) or values[pos] is SKIPPED)
            if pos < len(values) and not failed:
                continue
            if pos > begin:
                self._record(start + begin, items[begin:pos], values, begin, worker)
            begin = pos + 1

    def _record(self, start: int, items: Sequence[Any], values: list[Any], offset: int, worker: str) -> None:
        assert self.store is not None
        part = values[offset : offset + len(items)]
        try:
            self.store.record(start, items, part)
            return
        except Exception:
            pass
        for i, value in enumerate(part):  # find what cannot be stored; keep the rest
            try:
                self.store.record(start + i, items[i : i + 1], [value])
            except Exception as exc:
                error = SerializationError(
                    f"cannot store the result of item {start + i} in the checkpoint "
                    f"({describe(value)}: {exc}); return plain data"
                )
                values[offset + i] = self.fail(error, start + i, items[i], worker, note=False)

    def lost(self, event: Lost) -> list[Block]:
        chunk = event.chunk
        if event.kind == "unstarted":
            self.retry.appendleft(chunk)
            return []
        if len(chunk.items) > 1:
            if self.spec.concurrency is None:
                # Which item killed the worker? Run each alone to find out; no try is counted.
                for pos in reversed(range(len(chunk.items))):
                    self.retry.appendleft(Chunk(chunk.start + pos, chunk.items[pos : pos + 1]))
                return []
            # Async calls run together: every one in flight went down with the worker.
            blocks: list[Block] = []
            for pos in range(len(chunk.items)):
                blocks.extend(self._lost_one(Chunk(chunk.start + pos, chunk.items[pos : pos + 1]), event))
            return blocks
        return self._lost_one(chunk, event)

    def _lost_one(self, chunk: Chunk, event: Lost) -> list[Block]:
        index = chunk.start
        call = describe_call(self.spec.calls.mode, chunk.items[0])
        beside = _beside(index, event.beside)
        error: BaseException
        if event.kind == "timeout":
            error = TaskTimeoutError(f"item {index} {call} {event.reason}{beside}")
        else:
            error = WorkerCrashedError(
                f"{event.reason} while running item {index} {call}{beside}; the worker was replaced",
                exitcode=event.exitcode,
            )
        if self.policy.retry(index, error):
            if self.insight is not None:
                self.insight.retried(index)
            # An async call lost beside others runs again alone: a second loss is its own.
            alone = self.spec.concurrency is not None
            self.retry.appendleft(Chunk(chunk.start, chunk.items, alone) if alone else chunk)
            return []
        again = self.policy.tries(index)
        if again:
            error.add_note(f"fanmap: item {index} was tried {again + 1} times")
        if self.options.on_error == "raise":
            error.add_note(
                'fanmap: to carry on past such items use on_error="return" or "skip"; '
                "to try them again use retries=N"
            )
        return [(index, [self.fail(error, index, chunk.items[0], event.worker, note=False)])]

    def unsendable(self, chunk: Chunk, bad: Unsendable) -> list[Block]:
        """Fail the items that could not be pickled; send the others one by one."""
        blocks: list[Block] = []
        for pos in range(len(chunk.items)):
            if pos in bad.errors:
                index = chunk.start + pos
                blocks.append((index, [self.fail(bad.errors[pos], index, chunk.items[pos], "", note=False)]))
            else:
                self.retry.append(Chunk(chunk.start + pos, chunk.items[pos : pos + 1]))
        return blocks


def _named(error: TaskTimeoutError, index: int, call: str) -> TaskTimeoutError:
    """An async call's timeout (made in the worker), with the item named in its message."""
    named = TaskTimeoutError(f"item {index} {call}: {error}")
    named.__cause__ = error.__cause__
    return named


def _beside(index: int, in_flight: tuple[int, ...]) -> str:
    """`` and 3 other calls (items 2, 4, 6); any of them may have caused it``."""
    others = [i for i in in_flight if i != index]
    if not others:
        return ""
    shown = ", ".join(map(str, others[:8])) + (", ..." if len(others) > 8 else "")
    return (
        f" and {len(others)} other call{'s' if len(others) > 1 else ''} in flight (item"
        f"{'s' if len(others) > 1 else ''} {shown}); any of them may have caused it (with "
        f"retries=N each is tried again alone)"
    )
