"""The call loop: call the function on every item of a chunk, and say how each call went.

It runs wherever a backend runs calls: in a worker process, a thread, the caller, a
Dask task. It decides nothing: every call is made once, and each failure is reported
by position; whether to try again, skip, or stop the map is the engine's choice.
"""

from __future__ import annotations

import functools
import itertools
import keyword
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

from ._args import CallMode, call_args

__all__ = ["TIMED_UP_TO", "Calls", "Ran", "Times", "call_chunk", "callable_of", "explained"]

#: Each call's seconds, when timed. Calls that run together (an async function's) also
#: give each call's start on the worker's clock (``time.perf_counter``), as
#: ``(seconds, starts)``: how many ran at once is read from them, and a clock is only
#: compared with the same worker's.
Times: TypeAlias = list[float] | tuple[list[float], list[float]]

#: What running a chunk gives: results, errors by position, and each call's seconds.
Ran: TypeAlias = tuple[list[Any], dict[int, BaseException] | None, Times | None]


class Calls:
    """What a worker needs to run a chunk: the function, how items become calls, the keywords.

    A plain class rather than a dataclass: worker processes load this module, and
    `dataclasses` (with `inspect`) would add some 10 ms to each one's start.
    """

    __slots__ = ("fn", "is_async", "kwargs", "mode", "stop_on_error", "timed", "timeout")

    def __init__(
        self,
        fn: Callable[..., Any],
        mode: CallMode,
        kwargs: dict[str, Any],
        stop_on_error: bool = False,
        is_async: bool = False,
        timeout: float | None = None,
        timed: bool = False,
    ) -> None:
        self.fn = fn
        self.mode = mode
        self.kwargs = kwargs
        #: Stop at a chunk's first failure (the engine asks for it when that failure ends the map).
        self.stop_on_error = stop_on_error
        #: Whether the function is ``async def`` (its calls run in the worker's event loop).
        self.is_async = is_async
        #: Seconds an async call may run before it is cancelled (a plain call's timeout is
        #: the pool's to enforce: it stops the worker).
        self.timeout = timeout
        #: Time each call (``fanmap.insights()`` is on): see `call_chunk`.
        self.timed = timed

    def __repr__(self) -> str:
        return (
            f"Calls({self.fn!r}, {self.mode!r}, {self.kwargs!r}, stop_on_error={self.stop_on_error}, "
            f"is_async={self.is_async}, timeout={self.timeout}, timed={self.timed})"
        )

    def with_kwargs(self, kwargs: dict[str, Any]) -> Calls:
        """These calls with these keywords instead."""
        return Calls(self.fn, self.mode, kwargs, self.stop_on_error, self.is_async, self.timeout, self.timed)

    def with_keywords(self, extra: dict[str, Any]) -> Calls:
        """These calls with more keywords (shared objects), the map's own winning."""
        if not extra:
            return self
        return self.with_kwargs({**extra, **self.kwargs})


def callable_of(obj: Any) -> Callable[..., Any]:
    """The plain function a decorated object stands for (``__fanmap_call__``), or the object."""
    plain: Callable[..., Any] = getattr(obj, "__fanmap_call__", obj)
    return plain


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _from_the_call(error: BaseException) -> BaseException:
    """Drop fanmap's frames from the front of a traceback: the function's remain."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE):
        tb = tb.tb_next
    return error.with_traceback(tb)


#: Makers of `_bound` functions, by the names of the keywords they pass.
_MAKERS: dict[tuple[str, ...], Callable[..., Callable[[Any], Any]]] = {}
#: Sets of keyword names with a maker of their own at most; others use a partial.
_MAX_MAKERS: Final = 64


def _bound(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Callable[[Any], Any]:
    """``fn`` with ``kwargs`` bound, called with one argument.

    A `functools.partial` with keywords builds a dict at every call; a function that
    passes each keyword by name does not, and runs a tiny call about twice as fast
    (100,000 calls of ``x * factor``: 14.9 ms through a partial, 7.3 ms through this,
    on Python 3.11; about the same ratio on 3.12 and 3.13). A maker of such functions is compiled
    once per set of keyword names (the map's keywords and ``@per_worker`` values). Its
    frame is in this file, so `_from_the_call` drops it from a traceback like ours.
    """
    names = tuple(kwargs)
    make = _MAKERS.get(names)
    if make is None:
        plain = all(
            n.isidentifier() and not keyword.iskeyword(n) and not n.startswith("_fanmap") for n in names
        )
        if not plain or len(_MAKERS) >= _MAX_MAKERS:
            return functools.partial(fn, **kwargs)
        passed = ", ".join(f"{n}={n}" for n in names)
        source = (
            f"def make(_fanmap_fn, {', '.join(names)}):\n"
            f"    return lambda _fanmap_item: _fanmap_fn(_fanmap_item, {passed})\n"
        )
        namespace: dict[str, Any] = {}
        exec(compile(source, __file__, "exec"), namespace)
        make = _MAKERS[names] = namespace["make"]
    return make(fn, *kwargs.values())


def _results(calls: Calls, items: Sequence[Any]) -> Any:
    """An iterator of the results of calling the function on ``items``, lazily."""
    fn, kwargs = calls.fn, calls.kwargs
    if calls.mode == CallMode.ONE:
        return map(_bound(fn, kwargs) if kwargs else fn, items)
    if calls.mode == CallMode.STAR:
        return itertools.starmap(functools.partial(fn, **kwargs) if kwargs else fn, items)
    return (fn(*a, **k) for a, k in (call_args(CallMode.ARGS, item, kwargs) for item in items))


def explained(calls: Calls, item: Any, error: BaseException) -> BaseException:
    """The error to report for an item: a clear one when a starmap item is not a tuple."""
    if calls.mode != CallMode.ONE:
        try:
            call_args(calls.mode, item, calls.kwargs)
        except TypeError as exc:
            exc.__context__ = None
            return exc.with_traceback(None)
    return _from_the_call(error)


#: Chunks of at most this many items are timed call by call when ``calls.timed``: the
#: engine sizes chunks to 10 ms of work or more, so their calls take 40 µs or more and a
#: clock read per call costs them under 1%. Bigger chunks (tiny calls) are timed whole.
TIMED_UP_TO: Final = 256


def call_chunk(calls: Calls, items: Sequence[Any]) -> Ran:
    """Call the function once on every item of a chunk.

    The happy path is one ``list.extend(map(...))``: no Python-level loop per item.
    ``list.extend`` keeps what it had appended when the call raises, so the position
    of a failing item is simply the length of the results so far.

    Returns:
        The results (``None`` in a failed item's place), the errors by position (or
        ``None`` when nothing failed), and each call's seconds when the calls were
        timed (else ``None``). With ``stop_on_error`` the results end at the first
        failure: the items after it did not run.
    """
    if calls.timed and len(items) <= TIMED_UP_TO:
        return _timed(calls, items)
    results: list[Any] = []
    errors: dict[int, BaseException] | None = None
    position = 0
    count = len(items)
    while position < count:
        rest = items if position == 0 else items[position:]
        try:
            results.extend(_results(calls, rest))
        except (Exception, SystemExit) as exc:  # SystemExit too: it belongs to the call
            position = len(results)
            results.append(None)
            if errors is None:
                errors = {}
            errors[position] = explained(calls, items[position], exc)
            if calls.stop_on_error:
                break
            position += 1
        else:
            break
    return results, errors, None


def _timed(calls: Calls, items: Sequence[Any]) -> Ran:
    """`call_chunk`, one call at a time, with each call's seconds."""
    results: list[Any] = []
    errors: dict[int, BaseException] | None = None
    times: list[float] = []
    clock = time.perf_counter
    for position, item in enumerate(items):
        begun = clock()
        try:
            results.extend(_results(calls, (item,)))
        except (Exception, SystemExit) as exc:
            results.append(None)
            if errors is None:
                errors = {}
            errors[position] = explained(calls, item, exc)
            times.append(clock() - begun)
            if calls.stop_on_error:
                break
            continue
        times.append(clock() - begun)
    return results, errors, times
