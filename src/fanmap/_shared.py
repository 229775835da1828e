"""``@shared_state``: hand shared objects to a function as keyword arguments, in every worker.

``@shared_state(name=obj)`` gives each object to the function as the keyword argument
``name``. Worker processes receive the objects once, when they start (never pickled
per call); threads and the serial backend simply share them. The objects themselves
are `Value` and `Array` (shared memory, `_values`) and `Dict`, `List` and `Queue`
(a Manager process, `_managed`).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any, Final, TypeVar

from ._errors import SharedStateError
from ._managed import Dict, List, Queue
from ._values import Array, Value

__all__ = ["SharedState", "check_parameters", "shared_state"]

T = TypeVar("T")
_SHARED_TYPES: Final = (Value, Array, Dict, List, Queue)
_state_keys = itertools.count()


class SharedState:
    """The shared objects of a function, by name: ``fn.state.hits``.

    Examples:
        >>> from fanmap import Value, shared_state
        >>> @shared_state(total=Value("d", 0.0))
        ... def add(x: float, *, total: Value[float]) -> None:
        ...     total.add(x)
        >>> add(2.5)
        >>> add.state.total.value
        2.5
    """

    def __init__(self, objects: dict[str, Any]) -> None:
        self._objects = dict(objects)
        #: Unique for the life of the process (an id() could be reused after collection).
        self.key = next(_state_keys)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self.__dict__["_objects"][name]
        except KeyError:
            names = ", ".join(self.__dict__["_objects"]) or "none"
            raise AttributeError(f"no shared object named {name!r}; this function shares: {names}") from None

    def objects(self) -> dict[str, Any]:
        """Return the shared objects by the parameter name they are given as."""
        return dict(self._objects)

    def prepare(self) -> dict[str, Any]:
        """Allocate every object (start the Manager if needed); return them by name."""
        for obj in self._objects.values():
            obj._prepare()
        return self.objects()

    def merged(self, other: SharedState) -> SharedState:
        """Both sets of objects (from two decorators), as one."""
        return SharedState({**self._objects, **other.objects()})

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._objects.items())
        return f"SharedState({inner})"


def layers(fn: Any) -> tuple[Any, SharedState | None, Any]:
    """Look through ``@shared_state`` and ``@per_worker`` wrappers, in any order.

    Returns:
        The plain function, its shared state (or None) and its `PerWorker` (or None).
    """
    state: SharedState | None = None
    per_worker: Any = None
    while True:
        found_state = getattr(fn, "__fanmap_state__", None)
        found_per_worker = getattr(fn, "__fanmap_per_worker__", None)
        if found_state is None and found_per_worker is None:
            return fn, state, per_worker
        if found_state is not None:
            state = found_state if state is None else state.merged(found_state)
        if found_per_worker is not None:
            per_worker = found_per_worker if per_worker is None else per_worker.merged(found_per_worker)
        fn = fn.__fanmap_call__


def check_parameters(fn: Callable[..., Any], names: list[str], what: str = "shared object") -> None:
    """Make sure ``fn`` can receive each value (shared object, per-worker value) by keyword."""
    import inspect  # here: a spawned worker never needs it, and it is slow to import

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: trust the user
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepting = [
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    for name in names:
        if name not in accepting:
            label = getattr(fn, "__qualname__", repr(fn))
            raise SharedStateError(
                f"{label}() has no parameter {name!r} to receive the {what}; "
                f"add a keyword-only parameter '*, {name}: ...' or rename it "
                f"(its parameters are: {', '.join(params) or 'none'})"
            )


def shared_state(**objects: Any) -> Callable[[T], T]:
    """Give a function shared objects as keyword arguments, in every worker.

    Each object is handed to the function as the keyword argument of its name. Worker
    processes receive them once, when they start; threads and the serial backend share
    them directly. Works above or below ``@parallel``; the caller reads the objects
    afterwards through ``fn.state.name``.

    Args:
        **objects: `Value`, `Array`, `Dict`, `List` or `Queue` objects, by parameter name.

    Returns:
        A decorator.

    Raises:
        TypeError: Something other than a shared object was given.
        SharedStateError: The function has no parameter of that name.

    Examples:
        >>> from fanmap import Value, parallel, shared_state
        >>> @parallel(workers=2)
        ... @shared_state(calls=Value("i", 0))
        ... def work(x: int, *, calls: Value[int]) -> int:
        ...     calls.add(1)
        ...     return x * 2
        >>> work.map(range(5))
        [0, 2, 4, 6, 8]
        >>> work.state.calls.value
        5
    """
    if not objects:
        raise TypeError("shared_state() needs at least one name=shared object")
    for name, obj in objects.items():
        if not isinstance(obj, _SHARED_TYPES):
            raise TypeError(
                f"shared_state({name}=...) takes a fanmap Value, Array, Dict, List or Queue, "
                f"not {type(obj).__name__}"
            )
    state = SharedState(objects)

    def decorate(fn: T) -> T:
        attach = getattr(fn, "_with_state", None)
        if attach is not None:  # a ParallelFunction: below @shared_state
            result: T = attach(state)
            return result
        if not callable(fn):
            raise TypeError(f"shared_state() decorates a function, not {type(fn).__name__}")
        check_parameters(fn, list(objects))
        _, _, per_worker = layers(fn)
        taken = sorted(set(objects) & set(per_worker.names() if per_worker is not None else ()))
        if taken:
            raise SharedStateError(
                f"{', '.join(map(repr, taken))} is given by @per_worker already; "
                f"a parameter gets its value from one decorator only"
            )

        @functools.wraps(fn)
        def with_state(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **{**state.objects(), **kwargs})

        with_state.state = state  # type: ignore[attr-defined]
        with_state.__fanmap_state__ = state  # type: ignore[attr-defined]
        # What a worker calls: it gives the shared objects itself, as its own copies.
        with_state.__fanmap_call__ = fn  # type: ignore[attr-defined]
        return with_state  # type: ignore[return-value]

    return decorate
