"""``@per_worker``: values made once per worker (a model, a connection), with teardown.

```
@per_worker(model=load_model, db=connect)      factories, by the parameter they fill

worker (process, thread, Dask worker)          the first call of the function there:
  values(spec) ──► load_model()                  each factory runs once, in order;
                   next(connect())               a generator factory runs to its yield
  kept in the worker's `Made`, by spec key       later calls and maps reuse the values
  worker stops normally ──► teardown()           generators resume after their yield,
                                                 last made first
```

A process worker keeps one `Made` for its life; a thread of the thread backend one of
its own; the caller one for plain calls and the serial backend (torn down when fanmap
shuts its pools down). The spec's key is made once, where the decorator ran, so that
``f.options(...)`` copies and maps sent again share the values.

A factory that raises ends the map with `WorkerInitError` (its exception as the
cause); one that runs past the spec's ``timeout`` gets its worker stopped by the pool,
which reports the same error.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from . import _pools
from ._calls import Calls, Ran, call_chunk

if TYPE_CHECKING:
    from ._errors import WorkerInitError

__all__ = [
    "Made",
    "PerWorker",
    "call_with_values",
    "made_here",
    "per_worker",
    "teardown_process",
    "teardown_thread",
]

T = TypeVar("T")
_log = logging.getLogger("fanmap")


def _label(factory: Callable[..., Any]) -> str:
    inner: Any = factory
    while isinstance(inner, functools.partial):
        inner = inner.func
    return str(
        getattr(inner, "__qualname__", None) or getattr(inner, "__name__", None) or type(inner).__name__
    )


def _unwrapped(factory: Callable[..., Any]) -> Any:
    inner: Any = factory
    while isinstance(inner, functools.partial):
        inner = inner.func
    return inner


# `inspect` (and `uuid`, `_errors`) are imported where used: a worker process loads this
# module for every map, and a plain one needs none of them.


def _is_generator_function(factory: Callable[..., Any]) -> bool:
    import inspect

    return inspect.isgeneratorfunction(_unwrapped(factory))


def _is_async_generator_function(factory: Callable[..., Any]) -> bool:
    import inspect

    return inspect.isasyncgenfunction(_unwrapped(factory))


def is_async_factory(factory: Callable[..., Any]) -> bool:
    """Whether a factory must be awaited: ``async def``, or an async generator function."""
    import inspect

    inner = _unwrapped(factory)
    return inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner)


class PerWorker:
    """The factories of one decorated function, and their key in every worker."""

    __slots__ = ("factories", "inject", "is_async", "key", "timeout")

    def __init__(
        self, factories: dict[str, Callable[[], Any]], timeout: float | None, inject: bool = True
    ) -> None:
        self.factories = dict(factories)
        self.timeout = timeout
        #: Whether the values go to the function as keywords (an initializer's do not).
        self.inject = inject
        #: Whether some factory must be awaited (in the worker's event loop).
        self.is_async = any(is_async_factory(f) for f in self.factories.values())
        import uuid

        self.key = uuid.uuid4().hex

    def names(self) -> list[str]:
        return list(self.factories)

    def merged(self, other: PerWorker) -> PerWorker:
        """Both sets of factories (from two decorators), as one with a key of its own."""
        both = PerWorker({**self.factories, **other.factories}, self.timeout or other.timeout, self.inject)
        both.key = f"{self.key}+{other.key}"  # stable: the same two make the same key
        return both

    def describe(self, name: str) -> str:
        """``model=load_model``: a factory as a message names it."""
        return f"{name}={_label(self.factories[name])}"

    def __repr__(self) -> str:
        return f"PerWorker({', '.join(self.describe(n) for n in self.factories)})"


class Made:
    """The values made in one worker, by spec key, and the generators to resume."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}
        self.generators: list[_Opened] = []
        self.seconds = 0.0
        self._lock = threading.RLock()
        self._making: dict[str, Any] = {}  # async makings under way, by spec key

    def values_for(self, spec: PerWorker, step: Callable[[str], None] | None = None) -> dict[str, Any]:
        """The values of ``spec`` here, made now if this is the worker's first call.

        Plain functions only: an async function's values are made in its worker's event
        loop (`avalues_for`); async factories are refused for plain functions at decoration.

        Args:
            spec: The factories.
            step: Told each factory's ``name=label`` before it runs (a process worker
                tells its caller, which enforces the spec's timeout).

        Raises:
            WorkerInitError: A factory raised; its exception is the cause.
        """
        known = self.values.get(spec.key)
        if known is not None:
            return known
        with self._lock:  # several threads of one process may ask at once: made once
            known = self.values.get(spec.key)
            if known is None:
                known = self._make(spec, step)
            return known

    def is_new(self, spec: PerWorker) -> bool:
        """Whether asking for ``spec``'s values now would make them (nobody has, or is)."""
        return spec.key not in self.values and spec.key not in self._making

    async def avalues_for(self, spec: PerWorker, step: Callable[[str], None] | None = None) -> dict[str, Any]:
        """`values_for` in the worker's event loop: async factories are awaited there.

        Calls of one loop that ask at once share one making of the values.
        """
        import asyncio

        known = self.values.get(spec.key)
        if known is not None:
            return known
        making = self._making.get(spec.key)
        if making is None:
            making = self._making[spec.key] = asyncio.ensure_future(self._amake(spec, step))
            making.add_done_callback(lambda _: self._making.pop(spec.key, None))
        return await asyncio.shield(making)

    def _failed(self, spec: PerWorker, name: str, exc: BaseException) -> WorkerInitError:
        from ._errors import WorkerInitError

        if isinstance(exc, StopIteration | StopAsyncIteration):
            error = WorkerInitError(
                f"the per-worker factory {spec.describe(name)} is a generator that ended without "
                f"yielding its value; yield the value once, then tear down after the yield"
            )
        else:
            error = WorkerInitError(
                f"the per-worker factory {spec.describe(name)} raised {type(exc).__name__}: {exc}; "
                f"no call can run in that worker without it, so the calls waiting for it failed "
                f"(the next map or call tries the factory again)"
            )
        error.__cause__ = exc
        return error

    def _make(self, spec: PerWorker, step: Callable[[str], None] | None) -> dict[str, Any]:
        began = time.perf_counter()
        made: dict[str, Any] = {}
        opened: list[_Opened] = []
        for name, factory in spec.factories.items():
            if step is not None:
                step(spec.describe(name))
            try:
                if _is_generator_function(factory):
                    generator = factory()
                    value = next(generator)
                    opened.append((spec.describe(name), generator, None))
                else:
                    value = factory()
            except Exception as exc:
                _close_all(opened)  # what this attempt set up is torn down again
                raise self._failed(spec, name, exc) from exc
            made[name] = value
        self.generators.extend(opened)
        self.seconds += time.perf_counter() - began
        self.values[spec.key] = made
        return made

    async def _amake(self, spec: PerWorker, step: Callable[[str], None] | None) -> dict[str, Any]:
        import asyncio
        import inspect

        began = time.perf_counter()
        made: dict[str, Any] = {}
        opened: list[_Opened] = []
        loop = asyncio.get_running_loop()
        for name, factory in spec.factories.items():
            if step is not None:
                step(spec.describe(name))
            try:
                if _is_generator_function(factory):
                    generator = factory()
                    value = next(generator)
                    opened.append((spec.describe(name), generator, None))
                elif _is_async_generator_function(factory):
                    agen = factory()
                    value = await agen.__anext__()
                    opened.append((spec.describe(name), agen, loop))
                else:
                    value = factory()
                    if inspect.isawaitable(value):
                        value = await value
            except Exception as exc:
                await _aclose_all(opened)
                raise self._failed(spec, name, exc) from exc
            made[name] = value
        self.generators.extend(opened)
        self.seconds += time.perf_counter() - began
        self.values[spec.key] = made
        return made

    def teardown(self) -> None:
        """Resume every generator factory after its ``yield``, the last made first."""
        generators, self.generators = self.generators, []
        self.values.clear()
        _close_all(generators)


#: A generator factory to resume at teardown: its label, the generator, and for an async
#: generator the event loop it belongs to.
_Opened = tuple[str, Any, Any]


def _resume(generator: Any, loop: Any) -> None:
    """Resume a factory's generator once, wherever it lives; raise what it raised."""
    if loop is None:
        next(generator)
        return
    import asyncio

    if loop.is_closed():
        raise RuntimeError("its event loop was closed first")
    if loop.is_running():
        asyncio.run_coroutine_threadsafe(generator.__anext__(), loop).result(_TEARDOWN_WAIT)
    else:
        loop.run_until_complete(generator.__anext__())


#: Seconds an async factory's teardown may take, at most.
_TEARDOWN_WAIT = 30.0


async def _aclose_all(generators: list[_Opened]) -> None:
    """`_close_all` from inside the loop: async generators are awaited."""
    for label, generator, loop in reversed(generators):
        try:
            if loop is None:
                next(generator)
            else:
                await generator.__anext__()
        except (StopIteration, StopAsyncIteration):
            continue
        except Exception:
            _log.exception("fanmap: the teardown of the per-worker factory %s raised", label)
            continue
        _log.warning("fanmap: the per-worker factory %s yielded more than once; it was closed", label)


def _close_all(generators: list[_Opened]) -> None:
    """Resume each generator after its ``yield`` (its teardown), the last made first."""
    for label, generator, loop in reversed(generators):
        try:
            _resume(generator, loop)
        except (StopIteration, StopAsyncIteration):
            continue
        except Exception:
            _log.exception("fanmap: the teardown of the per-worker factory %s raised", label)
            continue
        if loop is None:
            generator.close()
        _log.warning("fanmap: the per-worker factory %s yielded more than once; it was closed", label)


#: The values made in this process: a process worker's, a Dask worker's, the caller's.
_process = Made()
_threads = threading.local()


def is_init_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a `WorkerInitError` (without importing `_errors` before one exists)."""
    errors = sys.modules.get("fanmap._errors")
    return errors is not None and isinstance(exc, errors.WorkerInitError)


def call_with_values(calls: Calls, per_worker: PerWorker | None, items: Sequence[Any], scope: str) -> Ran:
    """`call_chunk` with the per-worker values of this worker (made first if need be).

    A factory that fails fails every item of the chunk with the same `WorkerInitError`.
    """
    if per_worker is not None:
        try:
            values = made_here(scope).values_for(per_worker)
        except Exception as exc:
            if not is_init_error(exc):
                raise
            return [None] * len(items), dict.fromkeys(range(len(items)), exc), None
        if per_worker.inject:
            calls = calls.with_keywords(values)
    return call_chunk(calls, items)


@contextlib.asynccontextmanager
async def values_for_one_call(spec: PerWorker) -> AsyncIterator[dict[str, Any]]:
    """Per-worker values for one plain call of an async function, torn down after it.

    The caller's event loops come and go (each ``asyncio.run`` makes one), and a value
    made in one (a session, a connection pool) must not outlive it: a plain call makes
    its own and closes them when it returns.
    """
    made = Made()
    values = await made.avalues_for(spec)
    try:
        yield values
    finally:
        await _aclose_all(made.generators)
        made.generators = []


def made_here(scope: str) -> Made:
    """The `Made` of this process (``"process"``) or of this thread (``"thread"``)."""
    if scope == "thread":
        made: Made | None = getattr(_threads, "made", None)
        if made is None:
            made = _threads.made = Made()
        return made
    return _process


def teardown_thread() -> None:
    """Tear down what this thread made (a thread of the thread backend, as it stops)."""
    made: Made | None = getattr(_threads, "made", None)
    if made is not None:
        made.teardown()


def teardown_process() -> None:
    """Tear down what this process made (a worker as it stops; the caller at shutdown)."""
    _process.teardown()


def _forget_after_fork() -> None:
    # A forked worker must not use (or tear down) what its parent made: its own, afresh.
    global _process, _threads
    _process = Made()
    _threads = threading.local()


os.register_at_fork(after_in_child=_forget_after_fork)
_pools.on_shutdown(teardown_process)


def refuse_async_factories(spec: PerWorker | None, name: str) -> None:
    """Refuse async factories for a plain function (they are made in an event loop)."""
    if spec is not None and spec.is_async:
        raise TypeError(
            f"{spec!r} has async factories, which are made in the event loop of an async def "
            f"function's worker; {name} is a plain function: make the factories plain functions"
        )


def check_factories(factories: dict[str, Any], timeout: object) -> None:
    """Refuse, at decoration, what cannot be a factory."""
    if not factories:
        raise TypeError("per_worker() needs at least one name=factory")
    for name, factory in factories.items():
        if not callable(factory):
            raise TypeError(
                f"per_worker({name}=...) takes a factory: a function of no arguments that makes "
                f"the value (or a generator function that yields it), not {type(factory).__name__}"
            )
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise ValueError(f"per_worker(timeout=...) must be a number of seconds > 0 or None, not {timeout!r}")


def per_worker(*, timeout: float | None = None, **factories: Callable[[], Any]) -> Callable[[T], T]:
    """Give a function values made once per worker, as keyword arguments.

    Each factory runs once in each worker (each process of the process backend, each
    thread of the thread backend, each Dask worker process), the first time that worker
    runs a call of the function; its value is kept for the worker's whole life, across
    maps. A generator function is a factory with teardown: the code before its ``yield``
    sets up, the code after it runs when the worker stops normally (idle exit,
    ``max_tasks_per_worker`` recycling, `fanmap.shutdown`, interpreter exit). A plain
    call and the serial backend use one value made in the caller.

    Works above or below ``@parallel`` and ``@shared_state``, in any order.

    Args:
        timeout: Seconds all factories of one worker may take together; past it the
            worker is stopped and the map fails with `WorkerInitError`. The time
            factories take never counts against the map's own ``timeout``.
        **factories: Functions of no arguments (or generator functions), by the name of
            the keyword parameter they fill.

    Returns:
        A decorator.

    Raises:
        TypeError: A factory is not callable, or is async (``async def`` or an async
            generator) for a plain function: async factories serve ``async def``
            functions, and are made in their worker's event loop.
        SharedStateError: The function has no parameter of that name, or
            ``@shared_state`` gives it already.

    Examples:
        >>> from fanmap import parallel, per_worker
        >>> def load_table() -> dict[str, int]:
        ...     return {"fan": 3, "map": 7}  # once per worker, however many calls
        >>> @parallel(backend="thread", workers=2)
        ... @per_worker(table=load_table)
        ... def lookup(word: str, *, table: dict[str, int]) -> int:
        ...     return table[word]
        >>> lookup.map(["fan", "map"])
        [3, 7]
    """
    check_factories(factories, timeout)
    spec = PerWorker(factories, timeout)

    def decorate(fn: T) -> T:
        from ._shared import check_parameters, layers

        attach = getattr(fn, "_with_per_worker", None)
        if attach is not None:  # a ParallelFunction: below @per_worker
            result: T = attach(spec)
            return result
        if not callable(fn):
            raise TypeError(f"per_worker() decorates a function, not {type(fn).__name__}")
        check_parameters(fn, spec.names(), what="per-worker value")
        _, state, _ = layers(fn)
        taken = sorted(set(spec.names()) & set(state.objects() if state is not None else ()))
        if taken:
            from ._errors import SharedStateError

            raise SharedStateError(
                f"{', '.join(map(repr, taken))} is given by @shared_state already; "
                f"a parameter gets its value from one decorator only"
            )

        from ._aio import is_async_function

        with_values: Any
        if is_async_function(fn):

            @functools.wraps(fn)
            async def with_values(*args: Any, **kwargs: Any) -> Any:
                async with values_for_one_call(spec) as values:
                    return await fn(*args, **{**values, **kwargs})

        else:
            refuse_async_factories(spec, _label(fn))

            @functools.wraps(fn)
            def with_values(*args: Any, **kwargs: Any) -> Any:
                return fn(*args, **{**_process.values_for(spec), **kwargs})

        with_values.__fanmap_per_worker__ = spec
        with_values.__fanmap_call__ = fn
        wrapped: T = with_values
        return wrapped

    return decorate
