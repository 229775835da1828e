"""Numbers that every worker updates: `Value` and `Array` in shared memory.

Each lives in shared memory (``multiprocessing.sharedctypes``), guarded by its own
reentrant lock: ``add`` and ``update`` never lose an update, and ``with x.lock:`` makes
a compound update atomic (reading and setting ``x.value`` inside it take the lock
again without waiting). Storage is allocated on first use, so a module that creates
shared objects at import time costs nothing in a spawned worker that imports it.

They reach workers through ``@shared_state`` (`_shared`), never as arguments.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.sharedctypes
import threading
import typing
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, overload

if TYPE_CHECKING:
    from multiprocessing.synchronize import RLock as LockType

__all__ = ["Array", "Locked", "TypeVar", "Value", "init_lock"]

# Type parameters with defaults (PEP 696), so that a bare ``Value``, ``Array``, ``Dict``,
# ``List`` or ``Queue`` annotation is complete: ``hits: Value`` reads as ``Value[float]``
# (an int is a float to a type checker), ``seen: Dict`` as ``Dict[Any, Any]``.
if TYPE_CHECKING:
    from typing_extensions import TypeVar
else:

    def TypeVar(name: str, *constraints: Any, default: Any = None, **kwargs: Any) -> Any:
        return typing.TypeVar(name, *constraints, **kwargs)


N = TypeVar("N", int, float, default=float)

IntCode = Literal["b", "B", "h", "H", "i", "I", "l", "L", "q", "Q"]
FloatCode = Literal["f", "d"]
_CODES: Final = ("b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "f", "d")

# A lock made by the spawn context is a named semaphore: every start method can hand
# it to a worker (a fork-context lock cannot be sent to a spawned worker).
_SPAWN = multiprocessing.get_context("spawn")
#: Guards the first allocation of every shared object.
init_lock = threading.Lock()


def _check_code(typecode: object) -> None:
    if typecode not in _CODES:
        listed = ", ".join(repr(c) for c in _CODES)
        raise ValueError(f"typecode {typecode!r} is not valid; use one of {listed}")


def only_through_shared_state(obj: object) -> None:
    if multiprocessing.context.get_spawning_popen() is None:
        raise TypeError(
            f"{type(obj).__name__} objects reach workers through @shared_state(name=...), "
            f"not as arguments: they are shared once when a worker starts, never pickled per call"
        )


class Locked:
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
            with init_lock:
                if self._lock is None:
                    self._lock = _SPAWN.RLock()
        return self._lock

    def _prepare(self) -> None:
        """Allocate everything now, before workers inherit the object."""
        _ = self.lock


class Value(Locked, Generic[N]):
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
            with init_lock:
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
        only_through_shared_state(self)
        return (_rebuild_value, (self.typecode, self._cell(), self.lock))


def _rebuild_value(typecode: str, raw: Any, lock: LockType) -> Value[Any]:
    value: Value[Any] = Value.__new__(Value)
    value.typecode, value._initial, value._raw, value._lock = typecode, 0, raw, lock
    return value


class Array(Locked, Generic[N]):
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
            with init_lock:
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
        only_through_shared_state(self)
        return (_rebuild_array, (self.typecode, self._cells(), self.lock))


def _rebuild_array(typecode: str, raw: Any, lock: LockType) -> Array[Any]:
    array: Array[Any] = Array.__new__(Array)
    array.typecode, array._init, array._raw, array._lock = typecode, 0, raw, lock
    return array
