"""What the engine and the backends say to each other: chunks, runs and their outcomes.

A *run* is one ``map``/``imap``/... call. The engine cuts its input into *chunks* of
consecutive items and hands them to a backend's pool; the pool runs each chunk with
`call_chunk` (in a worker process, a thread, or the caller) and reports a `Done` or a
`Lost` event for it. The engine alone decides what to do with those events.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any, Final

from ._serialize import describe, short_repr

__all__ = [
    "ARGS",
    "ONE",
    "STAR",
    "Args",
    "Chunk",
    "Done",
    "Event",
    "Lost",
    "RunSpec",
    "call_args",
    "call_chunk",
]

#: How an item becomes a call: ``fn(item)``, ``fn(*item)``, or a tuple or `Args`.
ONE: Final = 0
STAR: Final = 1
ARGS: Final = 2


class Args:
    """The positional and keyword arguments of one call, for ``starmap``.

    Keywords given here are merged over those given to the whole map.

    Args:
        *args: Positional arguments of the call.
        **kwargs: Keyword arguments of the call.

    Examples:
        >>> from fanmap import Args, parallel
        >>> @parallel(backend="serial")
        ... def greet(name: str, *, punctuation: str = ".") -> str:
        ...     return "Hello " + name + punctuation
        >>> greet.starmap([Args("Ada"), Args("Bob", punctuation="!")])
        ['Hello Ada.', 'Hello Bob!']
    """

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Args({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Args):
            return NotImplemented
        return self.args == other.args and self.kwargs == other.kwargs

    def __hash__(self) -> int:
        return hash((self.args, tuple(sorted(self.kwargs.items()))))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_args, (self.args, self.kwargs))


def _make_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Args:
    return Args(*args, **kwargs)


@dataclasses.dataclass(slots=True)
class RunSpec:
    """What every chunk of a run shares: the function, how to call it, the policy."""

    fn: Callable[..., Any]
    #: What to pickle to send the function: the decorated object when it is importable.
    ref: Any
    mode: int
    kwargs: dict[str, Any]
    fail_fast: bool
    retries: int
    retry_on: tuple[type[BaseException], ...]
    timeout: float | None
    #: Shared objects to give every call as keywords (``@shared_state``), by name.
    state: dict[str, Any] = dataclasses.field(default_factory=dict)

    def with_state(self) -> RunSpec:
        """The spec with the shared objects merged into the keywords."""
        if not self.state:
            return self
        return dataclasses.replace(self, kwargs={**self.state, **self.kwargs}, state={})


@dataclasses.dataclass(slots=True, eq=False)
class Chunk:
    """Consecutive items ``start``, ``start + 1``, ... of a run's input."""

    start: int
    items: Sequence[Any]


@dataclasses.dataclass(slots=True)
class Done:
    """A chunk ran to its end (or, under fail-fast, to its first failure).

    ``results`` holds one entry per item that ran, ``None`` where ``errors`` holds the
    item's exception; under fail-fast it may stop short at the first error.
    """

    chunk: Chunk
    results: list[Any]
    errors: dict[int, BaseException] | None
    elapsed: float
    worker: str


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


Event = Done | Lost


def call_args(mode: int, item: Any, kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Return the positional and keyword arguments an item stands for."""
    if mode == ONE:
        return (item,), kwargs
    if type(item) is Args:
        return item.args, {**kwargs, **item.kwargs} if kwargs else item.kwargs
    if isinstance(item, str | bytes) or not hasattr(item, "__iter__"):
        raise TypeError(
            f"starmap() takes one tuple of arguments (or fanmap.Args) per item, "
            f"and this item is {describe(item)}: {short_repr(item)}; "
            f"to call the function with it as the only argument, use map()"
        )
    return tuple(item), kwargs


def _from_the_call(error: BaseException) -> BaseException:
    """Drop this module's frames from the front of a traceback: the function's remain."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return error.with_traceback(tb)


def _call_one(spec: RunSpec, item: Any, first: Exception) -> tuple[Any, BaseException | None]:
    """Retry one failed item as the spec says; return its value or its last error."""
    if spec.mode != ONE:
        try:
            call_args(spec.mode, item, spec.kwargs)
        except TypeError as exc:  # not a tuple of arguments: trying again cannot help
            exc.__context__ = None
            return None, exc.with_traceback(None)
    error: Exception = first
    for _ in range(spec.retries):
        if not isinstance(error, spec.retry_on):
            break
        args, kwargs = call_args(spec.mode, item, spec.kwargs)
        try:
            return spec.fn(*args, **kwargs), None
        except Exception as exc:
            error = exc
    return None, _from_the_call(error)


def _calls(spec: RunSpec, items: Sequence[Any]) -> Any:
    """An iterator of the results of calling the function on ``items``, lazily."""
    fn = spec.fn
    if spec.mode == ONE:
        return map(functools.partial(fn, **spec.kwargs) if spec.kwargs else fn, items)
    if spec.mode == STAR:
        return itertools.starmap(functools.partial(fn, **spec.kwargs) if spec.kwargs else fn, items)
    kwargs = spec.kwargs
    return (fn(*a, **k) for a, k in (call_args(ARGS, item, kwargs) for item in items))


def call_chunk(spec: RunSpec, items: Sequence[Any]) -> tuple[list[Any], dict[int, BaseException] | None]:
    """Call the function on every item of a chunk.

    The happy path is one ``list.extend(map(...))``: no Python-level loop per item.
    ``list.extend`` keeps what it had appended when the call raises, so the position
    of a failing item is simply the length of the results so far.

    Returns:
        The results (``None`` in a failed item's place) and the errors by position,
        or ``None`` when nothing failed.
    """
    results: list[Any] = []
    errors: dict[int, BaseException] | None = None
    position = 0
    count = len(items)
    while position < count:
        rest = items if position == 0 else items[position:]
        try:
            results.extend(_calls(spec, rest))
        except Exception as exc:
            position = len(results)
            value, error = _call_one(spec, items[position], exc)
            results.append(value)
            if error is not None:
                if errors is None:
                    errors = {}
                errors[position] = error
                if spec.fail_fast:
                    break
            position += 1
        else:
            break
    return results, errors
