"""Shared state: counters, arrays, dicts, lists and queues that every worker sees.

``Value`` and ``Array`` live in shared memory (``multiprocessing.sharedctypes``), each
guarded by its own lock: ``add`` and ``update`` never lose an update, and ``with
x.lock:`` makes a compound update atomic. ``Dict``, ``List`` and ``Queue`` are proxies
to one ``multiprocessing`` Manager process, started the first time one of them is
used and stopped when fanmap shuts its pools down (at exit).

``@shared_state(name=obj)`` hands each object to the function as the keyword argument
``name``. Worker processes receive the objects once, when they start (never pickled per
call); threads and the serial backend simply share them.

Storage is allocated on first use, so a module that creates shared objects at import
time costs nothing in a spawned worker that imports it.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import multiprocessing.context
import multiprocessing.sharedctypes
import queue
import threading
import typing
from collections.abc import Callable, Iterator, MutableMapping, MutableSequence
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, overload

from ._errors import SharedStateError

if TYPE_CHECKING:
    import multiprocessing.managers
    from multiprocessing.synchronize import RLock as LockType

__all__ = ["Array", "Dict", "List", "Queue", "SharedState", "Value", "shared_state", "stop_manager"]

# Type parameters with defaults (PEP 696), so that a bare ``Value``, ``Array``, ``Dict``,
# ``List`` or ``Queue`` annotation is complete: ``hits: Value`` reads as ``Value[float]``
# (an int is a float to a type checker), ``seen: Dict`` as ``Dict[Any, Any]``.
if TYPE_CHECKING:
    from typing_extensions import TypeVar
else:

    def TypeVar(name: str, *constraints: Any, default: Any = None, **kwargs: Any) -> Any:
        return typing.TypeVar(name, *constraints, **kwargs)


N = TypeVar("N", int, float, default=float)
K = TypeVar("K", default=Any)
V = TypeVar("V", default=Any)
T = TypeVar("T", default=Any)

IntCode = Literal["b", "B", "h", "H", "i", "I", "l", "L", "q", "Q"]
FloatCode = Literal["f", "d"]
_CODES: Final = ("b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "f", "d")

# A lock made by the spawn context is a named semaphore: every start method can hand
# it to a worker (a fork-context lock cannot be sent to a spawned worker).
_SPAWN = multiprocessing.get_context("spawn")
_init_lock = threading.Lock()
_manager: multiprocessing.managers.SyncManager | None = None


def _check_code(typecode: object) -> None:
    if typecode not in _CODES:
        listed = ", ".join(repr(c) for c in _CODES)
        raise ValueError(f"typecode {typecode!r} is not valid; use one of {listed}")


def _only_through_shared_state(obj: object) -> None:
    if multiprocessing.context.get_spawning_popen() is None:
        raise TypeError(
            f"{type(obj).__name__} objects reach workers through @shared_state(name=...), "
            f"not as arguments: they are shared once when a worker starts, never pickled per call"
        )


class _Locked:
    """What every shared object has: its own lock, made on first use."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock: LockType | None = None

    @property
    def lock(self) -> LockType:
        """The object's lock: ``with x.lock:`` makes a compound update atomic.

        It is reentrant: inside ``with x.lock:``, reading and setting ``x.value`` (or an
        element of an Array), ``x.add`` and ``x.update`` take it again without waiting.
        """
        if self._lock is None:
            with _init_lock:
                if self._lock is None:
                    self._lock = _SPAWN.RLock()
        return self._lock

    def _prepare(self) -> None:
        """Allocate everything now, before workers inherit the object."""
        _ = self.lock


class Value(_Locked, Generic[N]):
    """A number in shared memory that every worker updates without losing an update.

    Args:
        typecode: A ``ctypes`` type code as in `multiprocessing`: ``"i"``, ``"l"``,
            ``"q"`` and their unsigned and smaller kin for integers, ``"f"`` and ``"d"``
            for floats.
        initial: The starting value.

    Examples:
        >>> from fanmap import Value, parallel, shared_state
        >>> @parallel(workers=2)
        ... @shared_state(seen=Value("i", 0))
        ... def visit(page: str, *, seen: Value[int]) -> int:
        ...     return seen.add(1)
        >>> _ = visit.map(["a", "b", "c"])
        >>> visit.state.seen.value
        3
    """

    __slots__ = ("_initial", "_raw", "typecode")

    @overload
    def __init__(self: Value[int], typecode: IntCode, initial: int = 0) -> None: ...
    @overload
    def __init__(self: Value[float], typecode: FloatCode, initial: float = 0.0) -> None: ...
    def __init__(self, typecode: str, initial: float = 0) -> None:
        _check_code(typecode)
        super().__init__()
        self.typecode = typecode
        self._initial = initial
        self._raw: Any = None

    def _cell(self) -> Any:
        if self._raw is None:
            with _init_lock:
                if self._raw is None:
                    self._raw = multiprocessing.sharedctypes.RawValue(self.typecode, self._initial)
        return self._raw

    def _prepare(self) -> None:
        super()._prepare()
        self._cell()

    @property
    def value(self) -> N:
        """The current value (setting it takes the lock)."""
        result: N = self._cell().value
        return result

    @value.setter
    def value(self, new: N) -> None:
        cell = self._cell()
        with self.lock:
            cell.value = new

    def add(self, amount: N) -> N:
        """Add ``amount`` atomically; return the new value."""
        cell = self._cell()
        with self.lock:
            cell.value += amount
            result: N = cell.value
        return result

    def update(self, fn: Callable[[N], N]) -> N:
        """Replace the value by ``fn(value)`` atomically; return the new value."""
        cell = self._cell()
        with self.lock:
            cell.value = fn(cell.value)
            result: N = cell.value
        return result

    def __repr__(self) -> str:
        return f"Value({self.typecode!r}, {self.value!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        _only_through_shared_state(self)
        return (_rebuild_value, (self.typecode, self._cell(), self.lock))


def _rebuild_value(typecode: str, raw: Any, lock: LockType) -> Value[Any]:
    value: Value[Any] = Value.__new__(Value)
    value.typecode, value._initial, value._raw, value._lock = typecode, 0, raw, lock
    return value


class Array(_Locked, Generic[N]):
    """A fixed-size array of numbers in shared memory, with atomic element updates.

    Args:
        typecode: A ``ctypes`` type code, as for `Value`.
        size_or_items: The length (filled with zeros) or the initial items.

    Examples:
        >>> from fanmap import Array, parallel, shared_state
        >>> @parallel(workers=2)
        ... @shared_state(hist=Array("i", 3))
        ... def bucket(x: int, *, hist: Array[int]) -> None:
        ...     hist.add(x % 3, 1)
        >>> _ = bucket.map(range(10))
        >>> bucket.state.hist.tolist()
        [4, 3, 3]
    """

    __slots__ = ("_init", "_raw", "typecode")

    @overload
    def __init__(self: Array[int], typecode: IntCode, size_or_items: int | list[int]) -> None: ...
    @overload
    def __init__(self: Array[float], typecode: FloatCode, size_or_items: int | list[float]) -> None: ...
    def __init__(self, typecode: str, size_or_items: int | list[Any]) -> None:
        _check_code(typecode)
        if isinstance(size_or_items, int) and size_or_items < 0:
            raise ValueError(f"an Array cannot have a negative size ({size_or_items})")
        super().__init__()
        self.typecode = typecode
        self._init = size_or_items if isinstance(size_or_items, int) else list(size_or_items)
        self._raw: Any = None

    def _cells(self) -> Any:
        if self._raw is None:
            with _init_lock:
                if self._raw is None:
                    self._raw = multiprocessing.sharedctypes.RawArray(self.typecode, self._init)
        return self._raw

    def _prepare(self) -> None:
        super()._prepare()
        self._cells()

    def __len__(self) -> int:
        return len(self._cells())

    @overload
    def __getitem__(self, index: int) -> N: ...
    @overload
    def __getitem__(self, index: slice) -> list[N]: ...
    def __getitem__(self, index: int | slice) -> N | list[N]:
        result: N | list[N] = self._cells()[index]
        return result

    def __setitem__(self, index: int | slice, value: Any) -> None:
        cells = self._cells()
        with self.lock:
            cells[index] = value

    def __iter__(self) -> Iterator[N]:
        return iter(self._cells()[:])

    def tolist(self) -> list[N]:
        """Return a copy of the items as a list."""
        result: list[N] = self._cells()[:]
        return result

    def add(self, index: int, amount: N) -> N:
        """Add ``amount`` to one element atomically; return its new value."""
        cells = self._cells()
        with self.lock:
            cells[index] += amount
            result: N = cells[index]
        return result

    def update(self, index: int, fn: Callable[[N], N]) -> N:
        """Replace one element by ``fn(element)`` atomically; return its new value."""
        cells = self._cells()
        with self.lock:
            cells[index] = fn(cells[index])
            result: N = cells[index]
        return result

    def numpy(self) -> Any:
        """Return a zero-copy NumPy view of the array (writes go to shared memory).

        Raises:
            ImportError: NumPy is not installed (``pip install 'fanmap[numpy]'``).
        """
        try:
            import numpy as np
        except ImportError:
            raise ImportError("Array.numpy() needs NumPy: pip install 'fanmap[numpy]'") from None
        return np.frombuffer(self._cells(), dtype=np.dtype(self.typecode))

    def __repr__(self) -> str:
        return f"Array({self.typecode!r}, {self.tolist()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        _only_through_shared_state(self)
        return (_rebuild_array, (self.typecode, self._cells(), self.lock))


def _rebuild_array(typecode: str, raw: Any, lock: LockType) -> Array[Any]:
    array: Array[Any] = Array.__new__(Array)
    array.typecode, array._init, array._raw, array._lock = typecode, 0, raw, lock
    return array


def _get_manager() -> multiprocessing.managers.SyncManager:
    global _manager
    with _init_lock:
        if _manager is None:
            _manager = multiprocessing.Manager()
        return _manager


def stop_manager() -> None:
    """Stop the Manager process behind Dict, List and Queue, if it was started."""
    global _manager
    with _init_lock:
        manager, _manager = _manager, None
    if manager is not None:
        manager.shutdown()


class _Proxied(_Locked):
    __slots__ = ("_proxy",)

    def __init__(self) -> None:
        super().__init__()
        self._proxy: Any = None

    def _make(self, manager: multiprocessing.managers.SyncManager) -> Any:
        raise NotImplementedError

    def _p(self) -> Any:
        if self._proxy is None:
            manager = _get_manager()
            with _init_lock:
                if self._proxy is None:
                    self._proxy = self._make(manager)
        return self._proxy

    def _prepare(self) -> None:
        super()._prepare()
        self._p()

    def __reduce__(self) -> tuple[Any, ...]:
        _only_through_shared_state(self)
        return (_rebuild_proxied, (type(self), self._p(), self.lock))


def _rebuild_proxied(cls: type[_Proxied], proxy: Any, lock: LockType) -> _Proxied:
    obj = cls.__new__(cls)
    obj._proxy, obj._lock = proxy, lock
    return obj


class Dict(_Proxied, MutableMapping[K, V]):
    """A dict every worker reads and writes (a Manager proxy; each access is a round trip).

    Single operations are atomic; use ``with d.lock:`` for read-modify-write.

    Examples:
        >>> from fanmap import Dict, parallel, shared_state
        >>> @parallel(workers=2)
        ... @shared_state(lengths=Dict())
        ... def measure(word: str, *, lengths: Dict[str, int]) -> None:
        ...     lengths[word] = len(word)
        >>> _ = measure.map(["fan", "map!"])
        >>> sorted(measure.state.lengths.items())
        [('fan', 3), ('map!', 4)]
    """

    __slots__ = ("_initial",)

    def __init__(self, initial: dict[K, V] | None = None) -> None:
        super().__init__()
        self._initial = dict(initial or {})

    def _make(self, manager: multiprocessing.managers.SyncManager) -> Any:
        return manager.dict(self._initial)

    def __getitem__(self, key: K) -> V:
        result: V = self._p()[key]
        return result

    def __setitem__(self, key: K, value: V) -> None:
        self._p()[key] = value

    def __delitem__(self, key: K) -> None:
        del self._p()[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._p().keys())

    def __len__(self) -> int:
        return len(self._p())

    def get(self, key: K, default: Any = None) -> Any:
        """Return the value for ``key``, or ``default``: one round trip."""
        return self._p().get(key, default)

    def copy(self) -> dict[K, V]:
        """Return a plain dict copy of the contents."""
        result: dict[K, V] = self._p().copy()
        return result

    def __repr__(self) -> str:
        return f"Dict({self.copy()!r})"


class List(_Proxied, MutableSequence[T]):
    """A list every worker reads and appends to (a Manager proxy).

    Examples:
        >>> from fanmap import List, parallel, shared_state
        >>> @parallel(workers=2)
        ... @shared_state(log=List())
        ... def note(x: int, *, log: List[int]) -> None:
        ...     log.append(x)
        >>> _ = note.map(range(4))
        >>> sorted(note.state.log)
        [0, 1, 2, 3]
    """

    __slots__ = ("_initial",)

    def __init__(self, initial: list[T] | None = None) -> None:
        super().__init__()
        self._initial = list(initial or [])

    def _make(self, manager: multiprocessing.managers.SyncManager) -> Any:
        return manager.list(self._initial)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        result: T | list[T] = self._p()[index]
        return result

    def __setitem__(self, index: Any, value: Any) -> None:
        self._p()[index] = value

    def __delitem__(self, index: int | slice) -> None:
        del self._p()[index]

    def __len__(self) -> int:
        return len(self._p())

    def insert(self, index: int, value: T) -> None:
        """Insert ``value`` before ``index``."""
        self._p().insert(index, value)

    def append(self, value: T) -> None:
        """Append ``value``: one round trip, atomic."""
        self._p().append(value)

    def extend(self, values: Any) -> None:
        """Append every value: one round trip, atomic."""
        self._p().extend(list(values))

    def __iter__(self) -> Iterator[T]:
        return iter(self._p()[:])

    def tolist(self) -> list[T]:
        """Return a plain list copy of the contents."""
        result: list[T] = self._p()[:]
        return result

    def __repr__(self) -> str:
        return f"List({self.tolist()!r})"


class Queue(_Proxied, Generic[T]):
    """A queue between the caller and the workers (a Manager proxy).

    Examples:
        >>> from fanmap import Queue, parallel, shared_state
        >>> @parallel(workers=2)
        ... @shared_state(out=Queue())
        ... def produce(x: int, *, out: Queue[int]) -> None:
        ...     out.put(x * 10)
        >>> _ = produce.map(range(3))
        >>> sorted(produce.state.out.get() for _ in range(3))
        [0, 10, 20]
    """

    __slots__ = ("_maxsize",)

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__()
        self._maxsize = maxsize

    def _make(self, manager: multiprocessing.managers.SyncManager) -> Any:
        return manager.Queue(self._maxsize)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Put an item, waiting for room if the queue is bounded."""
        self._p().put(item, block, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return an item, waiting for one if needed.

        Raises:
            queue.Empty: Nothing came within ``timeout`` (or at once if not ``block``).
        """
        result: T = self._p().get(block, timeout)
        return result

    def get_nowait(self) -> T:
        """Remove and return an item if one is there; else raise ``queue.Empty``."""
        return self.get(False)

    def qsize(self) -> int:
        """The number of items in the queue now."""
        size: int = self._p().qsize()
        return size

    def empty(self) -> bool:
        """Whether the queue is empty now."""
        empty: bool = self._p().empty()
        return empty

    def __repr__(self) -> str:
        return f"Queue(maxsize={self._maxsize})"


_ = queue  # queue.Empty is what Queue.get raises; named in its docstring

Shared = Value[Any] | Array[Any] | Dict[Any, Any] | List[Any] | Queue[Any]
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

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._objects.items())
        return f"SharedState({inner})"


def check_parameters(fn: Callable[..., Any], names: list[str]) -> None:
    """Make sure ``fn`` can receive each shared object as a keyword argument."""
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
                f"{label}() has no parameter {name!r} to receive the shared object; "
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

        @functools.wraps(fn)
        def with_state(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **{**state.objects(), **kwargs})

        with_state.state = state  # type: ignore[attr-defined]
        with_state.__fanmap_state__ = (fn, state)  # type: ignore[attr-defined]
        return with_state  # type: ignore[return-value]

    return decorate
