"""The ways to make a parallel function: `parallel` (a decorator, bare or with options)
and `pmap` (one call); and `AsyncParallelFunction`, what an ``async def`` becomes.

`ParallelFunction` (in `_api`) does the work; an ``async def`` function gets the subclass
whose plain call returns the coroutine, and whose maps mypy sees as giving what the
coroutines return.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any, ParamSpec, Protocol, TypeVar, Unpack, overload

from ._api import ParallelFunction
from ._config import OptionsDict, validate
from ._perworker import values_for_one_call

__all__ = ["AsyncParallelFunction", "parallel", "pmap"]

P = ParamSpec("P")
R = TypeVar("R")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")


class AsyncParallelFunction(ParallelFunction[P, R]):
    """A parallel ``async def`` function: `parallel` makes one of these for it.

    Everything of `ParallelFunction` holds; its calls run as coroutines in each worker's
    event loop, up to ``concurrency`` at once per worker. Calling it returns the
    coroutine, as the undecorated function does.

    Examples:
        >>> import asyncio
        >>> from fanmap import parallel
        >>> @parallel(backend="thread", workers=2, concurrency=8)
        ... async def double(x: int) -> int:
        ...     await asyncio.sleep(0.01)
        ...     return 2 * x
        >>> double.map(range(5))
        [0, 2, 4, 6, 8]
        >>> asyncio.run(double(21))
        42
    """

    def __call__(self, /, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:  # type: ignore[override]
        """Make the coroutine of one call, as the undecorated function does.

        Shared objects and per-worker values (made once in the caller) are given to it.
        """
        fn: Callable[..., Any] = self._fanmap_fn
        if self._state is None and self._per_worker is None:
            made: Coroutine[Any, Any, R] = fn(*args, **kwargs)
            return made
        return self._with_values(fn, args, kwargs)

    async def _with_values(self, fn: Callable[..., Any], args: Any, kwargs: dict[str, Any]) -> R:
        given: dict[str, Any] = self._state.objects() if self._state is not None else {}
        if self._per_worker is None:
            result: R = await fn(*args, **{**given, **kwargs})
            return result
        async with values_for_one_call(self._per_worker) as values:
            made: R = await fn(*args, **{**given, **values, **kwargs})
        return made


class _Decorator(Protocol):
    """What ``parallel(**options)`` returns: a decorator for plain and async functions."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncParallelFunction[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> ParallelFunction[P, R]: ...


@overload
def parallel(fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncParallelFunction[P, R]: ...
@overload
def parallel(fn: Callable[P, R], /) -> ParallelFunction[P, R]: ...
@overload
def parallel(
    fn: Callable[P, Coroutine[Any, Any, R]], /, **options: Unpack[OptionsDict]
) -> AsyncParallelFunction[P, R]: ...
@overload
def parallel(fn: Callable[P, R], /, **options: Unpack[OptionsDict]) -> ParallelFunction[P, R]: ...
@overload
def parallel(**options: Unpack[OptionsDict]) -> _Decorator: ...
def parallel(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Give a function ``.map``, ``.imap``, ``.starmap``, ``.submit`` and friends.

    Usable bare (``@parallel``) or with options (``@parallel(workers=4)``), or as a
    call (``parallel(pow)``). The decorated function still runs as itself when called.

    Args:
        fn: The function. Module-level functions pickle by reference; lambdas,
            closures and functions of ``__main__`` travel by value (cloudpickle).
        **options: ``workers`` (pool size, default: usable CPUs); ``backend``
            (``"process"``, ``"thread"``, ``"serial"``, ``"dask"`` or a
            `DaskBackend`); ``ordered``; ``chunksize`` (``None`` = adaptive);
            ``timeout`` (seconds per call; ``math.inf`` is no limit); ``on_error`` (``"raise"``, ``"return"``,
            ``"skip"``); ``retries`` and ``retry_on``; ``progress`` (``True`` for a
            tqdm bar, or a callable ``(done, total)``); ``start_method``
            (``"fork"``, ``"spawn"``, ``"forkserver"``); ``max_tasks_per_worker``;
            ``buffersize`` (the most items ``imap`` reads ahead); ``checkpoint`` (a
            file that records results, so that a rerun resumes); ``concurrency``
            (for an ``async def`` function: calls in flight at once in each worker).

    Returns:
        A `ParallelFunction` (an `AsyncParallelFunction` for an ``async def``
        function), or a decorator that makes one.

    Raises:
        TypeError: An unknown option, or a value of the wrong type.
        ValueError: An option value out of range; the message lists the valid ones.

    Examples:
        >>> from fanmap import parallel
        >>> @parallel(backend="serial")
        ... def add(a: int, b: int = 0) -> int:
        ...     return a + b
        >>> add.map([1, 2], [10, 20])
        [11, 22]
        >>> add.map([1, 2], b=5)
        [6, 7]
    """
    checked = validate(options)
    if fn is None:
        return lambda f: ParallelFunction(f, dict(checked))
    return ParallelFunction(fn, checked)


@overload
def pmap(
    fn: Callable[[T1], Coroutine[Any, Any, R]], it1: Iterable[T1], /, **options: Unpack[OptionsDict]
) -> list[R]: ...
@overload
def pmap(
    fn: Callable[[T1, T2], Coroutine[Any, Any, R]],
    it1: Iterable[T1],
    it2: Iterable[T2],
    /,
    **options: Unpack[OptionsDict],
) -> list[R]: ...
@overload
def pmap(fn: Callable[[T1], R], it1: Iterable[T1], /, **options: Unpack[OptionsDict]) -> list[R]: ...
@overload
def pmap(
    fn: Callable[[T1, T2], R], it1: Iterable[T1], it2: Iterable[T2], /, **options: Unpack[OptionsDict]
) -> list[R]: ...
@overload
def pmap(
    fn: Callable[[T1, T2, T3], R],
    it1: Iterable[T1],
    it2: Iterable[T2],
    it3: Iterable[T3],
    /,
    **options: Unpack[OptionsDict],
) -> list[R]: ...
@overload
def pmap(
    fn: Callable[[T1, T2, T3, T4], R],
    it1: Iterable[T1],
    it2: Iterable[T2],
    it3: Iterable[T3],
    it4: Iterable[T4],
    /,
    **options: Unpack[OptionsDict],
) -> list[R]: ...
def pmap(fn: Callable[..., Any], /, *iterables: Iterable[Any], **options: Any) -> list[Any]:
    """Map a function over iterables in parallel, in one call.

    ``pmap(fn, xs, **options)`` is ``parallel(fn, **options).map(xs)``. Keywords are
    options; to give a keyword argument to every call, use ``parallel(fn).map(xs,
    key=value)``.

    Args:
        fn: The function (plain or already decorated).
        *iterables: One iterable per positional parameter, zipped like `map`.
        **options: The options of `parallel`.

    Returns:
        The results, as `ParallelFunction.map` returns them.

    Examples:
        >>> from fanmap import pmap
        >>> pmap(pow, [2, 3], [5, 2], backend="serial")
        [32, 9]
    """
    return ParallelFunction(fn, validate(options)).map(*iterables)
