"""Maps awaited from asyncio code: ``amap``, ``aimap``, ``aimap_unordered``, ``asubmit``.

The engine is blocking code, so it runs in a thread of its own (a *bridge*), exactly as
it runs for ``map``; the event loop only ever awaits.

```
event loop (the caller's)                      bridge thread
  await f.amap(xs) ─────── start ───────────►  engine over xs (or over an async
                                                iterable, pulled from the loop)
        ▲                                            │ blocks of results
        └──── loop.call_soon_threadsafe(...) ◄───────┘ (no polling on the loop side)
  cancelled / aclose ── stop.set() ─────────►  the engine stops within 50 ms:
                                                queued items never start, workers
                                                holding calls are stopped
```

``aimap`` hands on one block at a time and the bridge waits until the consumer takes
it, so the input is read only a little ahead of what was consumed, as with ``imap``.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

if TYPE_CHECKING:  # asyncio is imported where used: a plain map never loads it
    import asyncio

from ._engine import Stopped
from ._results import without_our_frames
from ._signature import Fn1, Fn2, Fn3, Fn4
from ._sources import Source

__all__ = ["AsyncMethods", "AsyncResults", "AsyncSource", "collect_async", "refuse_running_loop"]

T = TypeVar("T")
R = TypeVar("R")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
Blocks = Iterator[tuple[int, list[Any]]]

#: Seconds between looks at ``stop`` while the bridge waits on the loop.
_LOOK: Final = 0.05


def refuse_running_loop(label: str, what: str) -> None:
    """Raise if called from a running event loop: a blocking map of an async function
    there would hold up the loop (and its own calls would never get a turn in it)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:  # not even imported: no loop can be running
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    instead = {
        "map": f"`await {label}.amap(...)`",
        "starmap": f"`await {label}.amap(*zip(*items))` (there is no astarmap: give each "
        f"position of the tuples as an iterable of its own)",
        "imap": f"`async for r in {label}.aimap(...)`",
        "imap_unordered": f"`async for r in {label}.aimap_unordered(...)`",
    }.get(what, f"`await {label}.amap(...)`")
    raise RuntimeError(
        f"{label}.{what}() was called inside a running event loop, which it would block "
        f"until every call is done; in async code use {instead}"
    )


class AsyncSource(Source):
    """Items from an async iterable, pulled in the caller's event loop for the engine."""

    live = True

    def __init__(
        self, items: AsyncIterable[Any], loop: asyncio.AbstractEventLoop, stop: threading.Event
    ) -> None:
        super().__init__(())
        self.total = None
        self._items = items.__aiter__()
        self._loop = loop
        self._stop = stop
        self._next: asyncio.Future[Any] | None = None
        self._ended = False

    async def _pull(self, count: int, block: bool) -> list[Any] | None:
        import asyncio

        out: list[Any] = []
        while len(out) < count and not self._ended:
            if self._next is None:
                self._next = asyncio.ensure_future(self._items.__anext__())
            if block and not out:
                await asyncio.wait({self._next})
            elif not self._next.done():
                await asyncio.sleep(0)  # what is ready now, and no more
                if not self._next.done():
                    break
            step, self._next = self._next, None
            try:
                out.append(step.result())
            except StopAsyncIteration:
                self._ended = True
        return out if out or not self._ended else None

    def take(self, count: int, block: bool) -> Sequence[Any] | None:
        import asyncio

        if self._ended:
            return None
        future = asyncio.run_coroutine_threadsafe(self._pull(count, block), self._loop)
        while True:
            try:
                return future.result(_LOOK)
            except TimeoutError:
                if self._stop.is_set():
                    future.cancel()
                    raise Stopped from None

    def close(self) -> None:
        """Let go of the iterator's pending step (from the loop's side)."""
        if self._next is not None:
            self._next.cancel()


def _source(items: Any, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> Any:
    if isinstance(items, AsyncIterable):
        return AsyncSource(items, loop, stop)
    return items


class _Bridge:
    """The thread that runs the engine for a map awaited in an event loop."""

    def __init__(self, start: Callable[[Any, threading.Event], Blocks], items: Any, lazy: bool) -> None:
        import asyncio

        self.loop = asyncio.get_running_loop()
        self.stop = threading.Event()
        self.source = _source(items, self.loop, self.stop)
        self.blocks: asyncio.Queue[tuple[int, list[Any]] | BaseException | None] = asyncio.Queue()
        self.taken = threading.Semaphore(0)  # the consumer took a block: hand on the next
        self.lazy = lazy
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self._start = start
        context = contextvars.copy_context()  # fanmap.config() holds in the bridge too
        self.thread = threading.Thread(
            target=context.run, args=(self._serve,), name="fanmap-amap", daemon=True
        )
        self.thread.start()

    def _hand(self, value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.blocks.put_nowait, value)
        except RuntimeError:  # the loop is closed: nobody waits any more
            self.stop.set()

    def _serve(self) -> None:
        blocks: Blocks | None = None
        try:
            blocks = self._start(self.source, self.stop)
            for block in blocks:
                self._hand(block)
                if self.lazy:
                    self.taken.acquire()
                if self.stop.is_set():
                    break
            self._hand(None)
        except Stopped:
            pass
        except BaseException as exc:
            self._hand(exc)
        finally:
            if blocks is not None:
                blocks.close()  # type: ignore[attr-defined]  # a generator: stop its workers now
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self.loop.call_soon_threadsafe(_settle, self.finished)

    async def next_block(self) -> tuple[int, list[Any]] | None:
        value = await self.blocks.get()
        if self.lazy:
            self.taken.release()
        if isinstance(value, BaseException):
            raise without_our_frames(value)
        return value

    def cancel(self) -> None:
        """Stop the run (from the loop); what is queued never starts."""
        self.stop.set()
        self.taken.release()
        if isinstance(self.source, AsyncSource):
            self.source.close()

    async def ended(self) -> None:
        """Wait until the bridge has stopped its workers (a second cancel gives up)."""
        import asyncio

        await asyncio.shield(self.finished)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def collect_async(start: Callable[[Any, threading.Event], Blocks], items: Any) -> list[Any]:
    """``await f.amap(...)``: every result, in the order the run gives them."""
    bridge = _Bridge(start, items, lazy=False)
    out: list[Any] = []
    try:
        while True:
            block = await bridge.next_block()
            if block is None:
                return out
            out.extend(block[1])
    finally:
        bridge.cancel()
        await bridge.ended()


class AsyncResults(AsyncIterator[T]):
    """What ``aimap`` returns: an async iterator of results that stops its run when closed.

    Leaving an ``async for`` early (or cancelling the task that iterates) stops the
    run: items not started never run and workers holding calls are stopped. Use
    ``async with contextlib.aclosing(f.aimap(xs)) as results:`` to stop it at once at
    the end of a block; otherwise it stops when the iterator is collected.
    """

    def __init__(self, start: Callable[[Any, threading.Event], Blocks], items: Any) -> None:
        self._start = start
        self._items = items
        self._bridge: _Bridge | None = None
        self._values: list[Any] = []
        self._pos = 0
        self._done = False

    def __aiter__(self) -> AsyncResults[T]:
        return self

    async def __anext__(self) -> T:
        if self._pos < len(self._values):
            value: T = self._values[self._pos]
            self._pos += 1
            return value
        if self._done:
            raise StopAsyncIteration
        if self._bridge is None:
            self._bridge = _Bridge(self._start, self._items, lazy=True)
        try:
            block = await self._bridge.next_block()
        except BaseException:
            await self.aclose()
            raise
        if block is None:
            self._done = True
            await self._bridge.ended()
            raise StopAsyncIteration
        self._values, self._pos = block[1], 1
        first: T = self._values[0]
        return first

    async def aclose(self) -> None:
        """Stop the run: items not started never run; workers holding calls are stopped."""
        self._done = True
        self._values, self._pos = [], 0
        if self._bridge is not None:
            self._bridge.cancel()
            await self._bridge.ended()

    def __del__(self) -> None:
        bridge = self._bridge
        if bridge is not None and not self._done:
            bridge.stop.set()
            bridge.taken.release()


def _plan(owner: Any, iterables: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> tuple[Any, Any]:
    """How items become calls, and the items: one async iterable, or what ``map`` takes."""
    from ._args import CallMode

    if (
        len(iterables) == 1
        and isinstance(iterables[0], AsyncIterable)
        and not hasattr(iterables[0], "__iter__")
    ):
        owner._check_call(1, kwargs, what)
        return CallMode.ONE, iterables[0]
    for it in iterables:
        if isinstance(it, AsyncIterable) and len(iterables) > 1:
            raise TypeError(
                f"{what}() takes an async iterable only on its own; to zip several, make one "
                f"async iterable of tuples and use a function that takes a tuple"
            )
    mode, items = owner._plan(iterables, kwargs, what)
    return mode, items


def _starter(owner: Any, mode: Any, kwargs: dict[str, Any], options: Any, window: int | None) -> Any:
    def start(items: Any, stop: threading.Event) -> Blocks:
        source = items if isinstance(items, Source) else Source(items)
        if window is None and source.total is None and not source.live:
            source = Source(list(items))  # an eager map: knowing the length chunks better
        blocks: Blocks = owner._run(mode, source, kwargs, options, window, stop)
        return blocks

    return start


class AsyncMethods:
    """The async face of a parallel function: maps awaited from asyncio code."""

    @overload
    async def amap(self: Fn1[T1, R], it1: Iterable[T1] | AsyncIterable[T1], /, **kwargs: Any) -> list[R]: ...
    @overload
    async def amap(
        self: Fn2[T1, T2, R], it1: Iterable[T1], it2: Iterable[T2], /, **kwargs: Any
    ) -> list[R]: ...
    @overload
    async def amap(
        self: Fn3[T1, T2, T3, R], it1: Iterable[T1], it2: Iterable[T2], it3: Iterable[T3], /, **kwargs: Any
    ) -> list[R]: ...
    @overload
    async def amap(
        self: Fn4[T1, T2, T3, T4, R],
        it1: Iterable[T1],
        it2: Iterable[T2],
        it3: Iterable[T3],
        it4: Iterable[T4],
        /,
        **kwargs: Any,
    ) -> list[R]: ...
    async def amap(self: Any, /, *iterables: Any, **kwargs: Any) -> Any:
        """``map`` for async code: await the results, in order; the loop is never blocked.

        Works for plain and async def functions alike. The input may be an async
        iterable (alone). Cancelling the awaiting task stops the map: items not
        started never run, and workers holding calls are stopped.

        Args:
            *iterables: As for `map`; or one async iterable.
            **kwargs: Keyword arguments for every call.

        Returns:
            The results, as `map` returns them.

        Examples:
            >>> import asyncio
            >>> from fanmap import parallel
            >>> square = parallel(lambda x: x * x, backend="thread", workers=2)
            >>> asyncio.run(square.amap(range(5)))
            [0, 1, 4, 9, 16]
        """
        mode, items = _plan(self, iterables, kwargs, "amap")
        start = _starter(self, mode, kwargs, self._resolve(), None)
        return await collect_async(start, items)

    def _aimap(
        self: Any, ordered: bool, iterables: tuple[Any, ...], kwargs: dict[str, Any], what: str
    ) -> Any:
        mode, items = _plan(self, iterables, kwargs, what)
        options = self._resolve({"ordered": ordered})
        start = _starter(self, mode, kwargs, options, self._window(options))
        return AsyncResults(start, items)

    @overload
    def aimap(
        self: Fn1[T1, R], it1: Iterable[T1] | AsyncIterable[T1], /, **kwargs: Any
    ) -> AsyncResults[R]: ...
    @overload
    def aimap(
        self: Fn2[T1, T2, R], it1: Iterable[T1], it2: Iterable[T2], /, **kwargs: Any
    ) -> AsyncResults[R]: ...
    @overload
    def aimap(
        self: Fn3[T1, T2, T3, R], it1: Iterable[T1], it2: Iterable[T2], it3: Iterable[T3], /, **kwargs: Any
    ) -> AsyncResults[R]: ...
    @overload
    def aimap(
        self: Fn4[T1, T2, T3, T4, R],
        it1: Iterable[T1],
        it2: Iterable[T2],
        it3: Iterable[T3],
        it4: Iterable[T4],
        /,
        **kwargs: Any,
    ) -> AsyncResults[R]: ...
    def aimap(self: Any, /, *iterables: Any, **kwargs: Any) -> Any:
        """``imap`` for async code: ``async for`` over results in input order, lazily.

        The input (an iterable, or one async iterable) is read only a little ahead of
        what was consumed. Leaving the loop early, or cancelling the task, stops the
        map: items not started never run, and workers holding calls are stopped.

        Args:
            *iterables: As for `imap`; or one async iterable.
            **kwargs: Keyword arguments for every call.

        Returns:
            An async iterator of the results, in input order.

        Examples:
            >>> import asyncio
            >>> from fanmap import parallel
            >>> square = parallel(lambda x: x * x, backend="thread", workers=2)
            >>> async def main() -> list[int]:
            ...     return [r async for r in square.aimap(range(5))]
            >>> asyncio.run(main())
            [0, 1, 4, 9, 16]
        """
        return self._aimap(True, iterables, kwargs, "aimap")

    @overload
    def aimap_unordered(
        self: Fn1[T1, R], it1: Iterable[T1] | AsyncIterable[T1], /, **kwargs: Any
    ) -> AsyncResults[R]: ...
    @overload
    def aimap_unordered(
        self: Fn2[T1, T2, R], it1: Iterable[T1], it2: Iterable[T2], /, **kwargs: Any
    ) -> AsyncResults[R]: ...
    @overload
    def aimap_unordered(
        self: Fn3[T1, T2, T3, R], it1: Iterable[T1], it2: Iterable[T2], it3: Iterable[T3], /, **kwargs: Any
    ) -> AsyncResults[R]: ...
    @overload
    def aimap_unordered(
        self: Fn4[T1, T2, T3, T4, R],
        it1: Iterable[T1],
        it2: Iterable[T2],
        it3: Iterable[T3],
        it4: Iterable[T4],
        /,
        **kwargs: Any,
    ) -> AsyncResults[R]: ...
    def aimap_unordered(self: Any, /, *iterables: Any, **kwargs: Any) -> Any:
        """``imap_unordered`` for async code: results as calls finish, lazily.

        Args:
            *iterables: As for `imap`; or one async iterable.
            **kwargs: Keyword arguments for every call.

        Returns:
            An async iterator of the results, in the order the calls finished.

        Examples:
            >>> import asyncio
            >>> from fanmap import parallel
            >>> square = parallel(lambda x: x * x, backend="thread", workers=2)
            >>> async def main() -> list[int]:
            ...     return sorted([r async for r in square.aimap_unordered(range(5))])
            >>> asyncio.run(main())
            [0, 1, 4, 9, 16]
        """
        return self._aimap(False, iterables, kwargs, "aimap_unordered")
