"""The public face: `parallel`, `ParallelFunction`, `pmap`.

This module turns a call like ``square.map(xs, key=1)`` into a plan (the function, how
each item becomes a call, the source of items, the options) and hands it to the
engine. It never touches workers itself.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar, Unpack, overload

from ._aio import is_async_function
from ._amap import AsyncMethods, refuse_running_loop
from ._args import Args, CallMode
from ._config import Options, OptionsDict, resolve, validate
from ._engine import execute
from ._errors import SharedStateError
from ._perworker import PerWorker, made_here, refuse_async_factories
from ._results import by_name as _by_name
from ._results import check_iterable as _check_iterable
from ._results import collected as _collected
from ._results import stream as _stream
from ._results import without_our_frames as _without_our_frames
from ._shared import SharedState, check_parameters, layers
from ._signature import Fn1 as _Fn1
from ._signature import Fn2 as _Fn2
from ._signature import Fn3 as _Fn3
from ._signature import Fn4 as _Fn4
from ._signature import check_call, label_of, refuse_async_generator
from ._signature import signature_of as _signature_of
from ._sources import Source
from ._submit import Submitter

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["ParallelFunction"]

P = ParamSpec("P")
R = TypeVar("R")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")


_UNKNOWN: Any = object()


class ParallelFunction(AsyncMethods, Generic[P, R]):
    """A function that still runs as itself when called, and also maps in parallel.

    Made by `parallel`. Calling it runs the plain function in the caller; ``map`` and
    friends fan calls out over a pool of workers kept warm between calls.

    Examples:
        >>> from fanmap import parallel
        >>> @parallel(backend="thread", workers=2)
        ... def square(x: int) -> int:
        ...     return x * x
        >>> square(3)
        9
        >>> square.map(range(5))
        [0, 1, 4, 9, 16]
    """

    __name__: str
    __qualname__: str
    __module__: str
    __wrapped__: Callable[P, R]

    if TYPE_CHECKING:
        # What one call gives (for an async def function: what its coroutine returns),
        # as `map` and friends see it.
        def _fanmap_result(self, /, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def __new__(cls, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # An async def function gets the class whose plain call returns its coroutine.
        if cls is ParallelFunction and is_async_function(fn):
            from ._parallel import AsyncParallelFunction

            cls = AsyncParallelFunction
        return super().__new__(cls)

    def __init__(
        self,
        fn: Callable[P, R],
        options: dict[str, Any],
        root: Any = None,
        state: SharedState | None = None,
        per_worker: PerWorker | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"parallel() needs a callable, not {type(fn).__name__}")
        refuse_async_generator(fn)
        if isinstance(fn, ParallelFunction):
            root = fn._ref
            options = {**fn._options, **options}
            state = state or fn._state
            per_worker = per_worker or fn._per_worker
            fn = fn._fanmap_fn
        plain, found_state, found_per_worker = layers(fn)  # @shared_state, @per_worker below
        fn = plain
        state = state or found_state
        per_worker = per_worker or found_per_worker
        self._per_worker: PerWorker | None = per_worker
        #: Set by an Executor: this function's pools are the executor's own.
        self._pool_tag: Any = None
        self._state: SharedState | None = state
        self._fanmap_fn: Callable[P, R] = fn
        self._is_async = is_async_function(fn)
        if not self._is_async:
            _refuse_async_parts(fn, options, per_worker)
        self._options: dict[str, Any] = options  # validated by whoever made them
        # The decorated object a worker imports the function by (None: this one). Not
        # ``self`` itself: a reference to itself would keep it (and its shared objects'
        # semaphores) alive until a garbage collection pass, which may come at any moment.
        self._root: Any = root
        self._submit_lock = threading.Lock()
        self._submitter: Submitter | None = None
        self._signature: Any = _UNKNOWN
        functools.update_wrapper(self, fn)
        label = label_of(fn)
        for attribute in ("__name__", "__qualname__"):
            if not isinstance(getattr(self, attribute, None), str):
                setattr(self, attribute, label)

    def __call__(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the plain function in the caller, as if it were not decorated.

        Shared objects and per-worker values (made once in the caller) are given to it.
        """
        if self._state is None and self._per_worker is None:
            return self._fanmap_fn(*args, **kwargs)
        given: dict[str, Any] = self._state.objects() if self._state is not None else {}
        if self._per_worker is not None:
            given.update(made_here("process").values_for(self._per_worker))
        return self._fanmap_fn(*args, **{**given, **kwargs})

    @property
    def state(self) -> SharedState:
        """The shared objects given by `shared_state`, by name: ``fn.state.hits``.

        Raises:
            AttributeError: The function has no shared state.
        """
        if self._state is None:
            raise AttributeError(f"{self.__name__} has no shared state; add it with @shared_state(name=...)")
        return self._state

    @property
    def _ref(self) -> Any:
        """What to pickle to send the function: the decorated object its module holds, or
        else the plain function itself (a worker needs no more, nor fanmap's API)."""
        if self._root is not None:
            return self._root
        return self if self._importable() else self._fanmap_fn

    def _importable(self) -> bool:
        """Whether this object is what its module holds under its name."""
        module = getattr(self, "__module__", None)
        qualname = getattr(self, "__qualname__", None)
        if self._root is not None or not module or not qualname or module == "__main__":
            return False
        try:
            return _by_name(module, qualname) is self
        except Exception:
            return False

    @property
    def __fanmap_call__(self) -> Callable[P, R]:
        """The plain function a worker calls (shared objects are given to it apart)."""
        return self._fanmap_fn

    @property
    def workers(self) -> int:
        """How many workers a map of this function uses now.

        Resolved from its options, the enclosing `fanmap.config` and the
        ``FANMAP_WORKERS`` environment variable, else the usable CPUs (affinity and
        cgroup quota aware); 1 on the serial backend, which runs one call at a time.

        Examples:
            >>> from fanmap import parallel
            >>> parallel(abs, workers=3).workers
            3
        """
        options = self._resolve()
        return 1 if options.backend == "serial" else options.workers

    def _with_state(self, state: SharedState) -> Self:
        check_parameters(self._fanmap_fn, list(state.objects()))
        self._refuse_given_twice(list(state.objects()))
        if self._state is not None:
            state = self._state.merged(state)
        return type(self)(self._fanmap_fn, self._options, None, state, self._per_worker)

    def _with_per_worker(self, per_worker: PerWorker) -> Self:
        check_parameters(self._fanmap_fn, per_worker.names(), what="per-worker value")
        self._refuse_given_twice(per_worker.names())
        if self._per_worker is not None:
            per_worker = self._per_worker.merged(per_worker)
        return type(self)(self._fanmap_fn, self._options, None, self._state, per_worker)

    def _injected(self) -> list[str]:
        """The keywords fanmap gives every call itself: shared objects, per-worker values."""
        names = list(self._state.objects()) if self._state is not None else []
        return names + (self._per_worker.names() if self._per_worker is not None else [])

    def _refuse_given_twice(self, names: list[str]) -> None:
        taken = sorted(set(names) & set(self._injected()))
        if taken:
            raise SharedStateError(
                f"{', '.join(map(repr, taken))} is given by @shared_state or @per_worker already; "
                f"a parameter gets its value from one decorator only"
            )

    def __repr__(self) -> str:
        name = getattr(self._fanmap_fn, "__qualname__", repr(self._fanmap_fn))
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options.items())
        return f"<parallel {name}{' ' + opts if opts else ''}>"

    def __reduce__(self) -> tuple[Any, ...]:
        if self._importable():
            return (_by_name, (self.__module__, self.__qualname__))
        # By value. Shared objects stay behind (workers get theirs when they start), and
        # so do options that hold live objects (a backend's client, a progress callback):
        # a worker never needs them, and they may not pickle.
        plain = {
            k: v
            for k, v in self._options.items()
            if k not in ("backend", "progress") or isinstance(v, str | bool)
        }
        return (ParallelFunction, (self._fanmap_fn, plain))

    def _resolve(self, *overrides: dict[str, Any]) -> Options:
        options = resolve(self._options, *overrides)
        if self._state is None and self._per_worker is None and self._pool_tag is None:
            return options
        return dataclasses.replace(
            options, state=self._state, per_worker=self._per_worker, pool_tag=self._pool_tag
        )

    def _run(
        self,
        mode: CallMode,
        source: Source,
        kwargs: dict[str, Any],
        options: Options,
        window: int | None,
        stop: threading.Event | None = None,
    ) -> Iterator[tuple[int, list[Any]]]:
        return execute(
            self._fanmap_fn,
            self._ref,
            mode,
            source,
            kwargs,
            options,
            window=window,
            label=self.__name__,
            stop=stop,
        )

    def options(self, **options: Unpack[OptionsDict]) -> Self:
        """Return a copy with some options changed; the original keeps its own.

        Args:
            **options: Any of the options of `parallel`.

        Returns:
            A new parallel function; it shares warm pools with every other function
            whose pool-level options (backend, workers, start method) are the same.

        Examples:
            >>> from fanmap import parallel
            >>> double = parallel(lambda x: 2 * x)
            >>> double.options(backend="serial", ordered=False).map([1, 2])
            [2, 4]
        """
        changed = {**self._options, **validate(options)}
        return type(self)(self._fanmap_fn, changed, self._ref, self._state, self._per_worker)

    def _check_call(self, positional: int | None, kwargs: dict[str, Any], what: str) -> None:
        """Refuse, before any work, keywords and counts the function's signature rules out."""
        if self._signature is _UNKNOWN:
            self._signature = _signature_of(self._fanmap_fn)
        check_call(
            self._signature,
            self.__name__,
            positional,
            kwargs,
            self._injected(),
            what,
        )

    def _plan(
        self, iterables: tuple[Iterable[Any], ...], kwargs: dict[str, Any], what: str
    ) -> tuple[CallMode, Iterable[Any]]:
        if not iterables:
            raise TypeError(f"{what}() needs at least one iterable")
        for i, iterable in enumerate(iterables, 1):
            _check_iterable(
                iterable, f"argument {i} of {what}()" if len(iterables) > 1 else f"the argument of {what}()"
            )
        self._check_call(len(iterables), kwargs, what)
        if len(iterables) == 1:
            return CallMode.ONE, iterables[0]
        return CallMode.STAR, zip(*iterables, strict=False)

    @overload
    def map(self: _Fn1[T1, R], it1: Iterable[T1], /, **kwargs: Any) -> list[R]: ...
    @overload
    def map(self: _Fn2[T1, T2, R], it1: Iterable[T1], it2: Iterable[T2], /, **kwargs: Any) -> list[R]: ...
    @overload
    def map(
        self: _Fn3[T1, T2, T3, R], it1: Iterable[T1], it2: Iterable[T2], it3: Iterable[T3], /, **kwargs: Any
    ) -> list[R]: ...
    @overload
    def map(
        self: _Fn4[T1, T2, T3, T4, R],
        it1: Iterable[T1],
        it2: Iterable[T2],
        it3: Iterable[T3],
        it4: Iterable[T4],
        /,
        **kwargs: Any,
    ) -> list[R]: ...
    @overload
    def map(
        self,
        it1: Iterable[Any],
        it2: Iterable[Any],
        it3: Iterable[Any],
        it4: Iterable[Any],
        it5: Iterable[Any],
        /,
        *more: Iterable[Any],
        **kwargs: Any,
    ) -> list[R]: ...
    def map(self: Any, /, *iterables: Iterable[Any], **kwargs: Any) -> Any:
        """Call the function on every item, in parallel; return the results in order.

        Like ``list(map(fn, *iterables))``: several iterables are zipped (stopping at the
        shortest). Keyword arguments are given to every call (and sent to each worker
        once per map, not once per call).

        Args:
            *iterables: One iterable per positional parameter to fill.
            **kwargs: Keyword arguments for every call.

        Returns:
            The results, in input order unless ``ordered=False`` (then in completion
            order). Under ``on_error="return"`` a failed item's place holds a
            `Failure`; under ``"skip"`` it is left out.

        Raises:
            TypeError: An argument is not iterable.
            Exception: The first exception a call raised (``on_error="raise"``), with
                the worker's traceback and a note naming the item.

        Examples:
            >>> from fanmap import parallel
            >>> pow_ = parallel(pow, backend="serial")
            >>> pow_.map([2, 3], [5, 2])
            [32, 9]
        """
        mode, items = self._plan(iterables, kwargs, "map")
        return self._collect(mode, items, kwargs, "map")

    @overload
    def starmap(self: _Fn1[T1, R], iterable: Iterable[tuple[T1] | Args], /, **kwargs: Any) -> list[R]: ...
    @overload
    def starmap(
        self: _Fn2[T1, T2, R], iterable: Iterable[tuple[T1, T2] | Args], /, **kwargs: Any
    ) -> list[R]: ...
    @overload
    def starmap(
        self: _Fn3[T1, T2, T3, R], iterable: Iterable[tuple[T1, T2, T3] | Args], /, **kwargs: Any
    ) -> list[R]: ...
    @overload
    def starmap(
        self: _Fn4[T1, T2, T3, T4, R], iterable: Iterable[tuple[T1, T2, T3, T4] | Args], /, **kwargs: Any
    ) -> list[R]: ...
    @overload
    def starmap(
        self: _Fn1[T1, R], iterable: Iterable[tuple[T1, ...] | list[T1] | Args], /, **kwargs: Any
    ) -> list[R]: ...
    def starmap(self: Any, iterable: Iterable[Any], /, **kwargs: Any) -> Any:
        """Call the function once per tuple (or `Args`) of arguments; return the results.

        Args:
            iterable: Tuples of positional arguments, or `Args` for per-call keywords.
            **kwargs: Keyword arguments for every call (an `Args` item's own win).

        Returns:
            The results, as `map` returns them.

        Examples:
            >>> from fanmap import Args, parallel
            >>> pow_ = parallel(pow, backend="serial")
            >>> pow_.starmap([(2, 5), Args(3, 2)])
            [32, 9]
        """
        _check_iterable(iterable, "the argument of starmap()")
        self._check_call(None, kwargs, "starmap")
        return self._collect(CallMode.ARGS, iterable, kwargs, "starmap")

    def _collect(self, mode: CallMode, items: Iterable[Any], kwargs: dict[str, Any], what: str) -> list[R]:
        if self._is_async:
            refuse_running_loop(self.__name__, what)
        options = self._resolve()
        source = Source(items)
        if source.total is None:
            source = Source(list(items))  # map is eager: knowing the length chunks better
        blocks = self._run(mode, source, kwargs, options, None)
        try:
            return _collected(blocks)
        except (Exception, KeyboardInterrupt) as exc:
            error = exc
        # Raised outside the handler, so that its chain stays the one made in the worker;
        # and not kept here, where the traceback holds this frame: a cycle would keep the
        # map's items and keywords until the garbage collector ran.
        try:
            raise _without_our_frames(error)
        finally:
            del error

    def _window(self, options: Options) -> int:
        """How many chunks a lazy run keeps out (running, or done and waiting for their
        turn): a few per call a worker can hold at once."""
        per_worker = options.concurrency if self._is_async else 1
        return max(16, 4 * options.workers * per_worker)

    def _lazy(
        self, ordered: bool, iterables: tuple[Iterable[Any], ...], kwargs: dict[str, Any], what: str
    ) -> Iterator[R]:
        mode, items = self._plan(iterables, kwargs, what)
        if self._is_async:
            refuse_running_loop(self.__name__, what)
        options = self._resolve({"ordered": ordered})
        window = self._window(options)
        return _stream(self._run(mode, Source(items), kwargs, options, window))

    @overload
    def imap(self: _Fn1[T1, R], it1: Iterable[T1], /, **kwargs: Any) -> Iterator[R]: ...
    @overload
    def imap(
        self: _Fn2[T1, T2, R], it1: Iterable[T1], it2: Iterable[T2], /, **kwargs: Any
    ) -> Iterator[R]: ...
    @overload
    def imap(
        self: _Fn3[T1, T2, T3, R], it1: Iterable[T1], it2: Iterable[T2], it3: Iterable[T3], /, **kwargs: Any
    ) -> Iterator[R]: ...
    @overload
    def imap(
        self: _Fn4[T1, T2, T3, T4, R],
        it1: Iterable[T1],
        it2: Iterable[T2],
        it3: Iterable[T3],
        it4: Iterable[T4],
        /,
        **kwargs: Any,
    ) -> Iterator[R]: ...
    @overload
    def imap(
        self,
        it1: Iterable[Any],
        it2: Iterable[Any],
        it3: Iterable[Any],
        it4: Iterable[Any],
        it5: Iterable[Any],
        /,
        *more: Iterable[Any],
        **kwargs: Any,
    ) -> Iterator[R]: ...
    def imap(self: Any, /, *iterables: Iterable[Any], **kwargs: Any) -> Any:
        """Yield results in input order as they become ready, pulling input lazily.

        The input is never turned into a list: a bounded number of calls is in flight
        and more input is read as results are consumed, so an endless generator works
        and memory stays flat. Leaving the loop early cancels what is still queued.

        Args:
            *iterables: As for `map`.
            **kwargs: Keyword arguments for every call.

        Yields:
            The results, in input order.

        Examples:
            >>> import itertools
            >>> from fanmap import parallel
            >>> square = parallel(lambda x: x * x, backend="thread", workers=2)
            >>> list(itertools.islice(square.imap(itertools.count()), 5))
            [0, 1, 4, 9, 16]
        """
        return self._lazy(True, iterables, kwargs, "imap")

    @overload
    def imap_unordered(self: _Fn1[T1, R], it1: Iterable[T1], /, **kwargs: Any) -> Iterator[R]: ...
    @overload
    def imap_unordered(
        self: _Fn2[T1, T2, R], it1: Iterable[T1], it2: Iterable[T2], /, **kwargs: Any
    ) -> Iterator[R]: ...
    @overload
    def imap_unordered(
        self: _Fn3[T1, T2, T3, R], it1: Iterable[T1], it2: Iterable[T2], it3: Iterable[T3], /, **kwargs: Any
    ) -> Iterator[R]: ...
    @overload
    def imap_unordered(
        self: _Fn4[T1, T2, T3, T4, R],
        it1: Iterable[T1],
        it2: Iterable[T2],
        it3: Iterable[T3],
        it4: Iterable[T4],
        /,
        **kwargs: Any,
    ) -> Iterator[R]: ...
    @overload
    def imap_unordered(
        self,
        it1: Iterable[Any],
        it2: Iterable[Any],
        it3: Iterable[Any],
        it4: Iterable[Any],
        it5: Iterable[Any],
        /,
        *more: Iterable[Any],
        **kwargs: Any,
    ) -> Iterator[R]: ...
    def imap_unordered(self: Any, /, *iterables: Iterable[Any], **kwargs: Any) -> Any:
        """Yield results as calls finish, in completion order, pulling input lazily.

        Args:
            *iterables: As for `map`.
            **kwargs: Keyword arguments for every call.

        Yields:
            The results, in the order the calls finished.

        Examples:
            >>> from fanmap import parallel
            >>> square = parallel(lambda x: x * x, backend="thread", workers=2)
            >>> sorted(square.imap_unordered(range(4)))
            [0, 1, 4, 9]
        """
        return self._lazy(False, iterables, kwargs, "imap_unordered")

    def submit(self, /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Schedule one call; return a `concurrent.futures.Future` for its result.

        Calls submitted close together share the warm pool and are batched like a map.
        A failed call sets the future's exception; it does not affect other futures.

        Returns:
            A future that holds the result or the exception.

        Examples:
            >>> from fanmap import parallel
            >>> square = parallel(lambda x: x * x, backend="thread", workers=2)
            >>> square.submit(7).result()
            49
        """
        from concurrent.futures import Future

        future: Future[R] = Future()
        call = Args(*args, **kwargs)
        with self._submit_lock:
            if self._submitter is None or not self._submitter.put(future, call):
                self._submitter = Submitter(self)  # the last one went idle and ended
                self._submitter.put(future, call)
        return future

    async def asubmit(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``submit`` for async code: await the result of one call.

        Cancelling the awaiting task drops the call if it has not started yet.

        Returns:
            The call's result.

        Raises:
            Exception: What the call raised, with the worker's traceback.

        Examples:
            >>> import asyncio
            >>> from fanmap import parallel
            >>> square = parallel(lambda x: x * x, backend="thread", workers=2)
            >>> asyncio.run(square.asubmit(7))
            49
        """
        import asyncio

        result: R = await asyncio.wrap_future(self.submit(*args, **kwargs))
        return result

    def _stop_submitter(self) -> None:
        """End the run behind ``submit`` once the calls queued so far are done."""
        with self._submit_lock:
            submitter = self._submitter
        if submitter is not None:
            submitter.stop()


def _refuse_async_parts(
    fn: Callable[..., Any], options: dict[str, Any], per_worker: PerWorker | None
) -> None:
    """Refuse what only an async def function can use, given to a plain one."""
    name = label_of(fn)
    if "concurrency" in options:
        raise TypeError(
            f"concurrency={options['concurrency']!r} was given to {name}, a plain function; "
            f"concurrency sets how many calls of an async def function run at once in each "
            f"worker (a plain function's worker runs one call at a time): use workers=N"
        )
    refuse_async_factories(per_worker, name)
