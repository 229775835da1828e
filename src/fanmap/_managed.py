"""Containers that every worker reads and writes: `Dict`, `List` and `Queue`.

Each is a proxy to one ``multiprocessing`` Manager process, started the first time one
of them is used and stopped when fanmap shuts its pools down (`fanmap.shutdown`, and
at exit). Each access is a round trip to that process; single operations are atomic,
and ``with d.lock:`` makes a read-modify-write atomic.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Iterator, MutableMapping, MutableSequence
from typing import TYPE_CHECKING, Any, Generic, overload

from . import _pools
from ._values import Locked, TypeVar, init_lock, only_through_shared_state

if TYPE_CHECKING:
    import multiprocessing.managers
    from multiprocessing.synchronize import RLock as LockType

__all__ = ["Dict", "List", "Queue", "stop_manager"]

K = TypeVar("K", default=Any)
V = TypeVar("V", default=Any)
T = TypeVar("T", default=Any)

_manager: multiprocessing.managers.SyncManager | None = None


def _get_manager() -> multiprocessing.managers.SyncManager:
    global _manager
    with init_lock:
        if _manager is None:
            import multiprocessing

            _manager = multiprocessing.Manager()
        return _manager


def stop_manager() -> None:
    """Stop the Manager process behind Dict, List and Queue, if it was started."""
    global _manager
    with init_lock:
        manager, _manager = _manager, None
    if manager is not None:
        manager.shutdown()


class _Proxied(Locked):
    __slots__ = ("_proxy",)

    def __init__(self) -> None:
        super().__init__()
        self._proxy: Any = None

    def _make(self, manager: multiprocessing.managers.SyncManager) -> Any:
        raise NotImplementedError

    def _p(self) -> Any:
        if self._proxy is None:
            manager = _get_manager()
            with init_lock:
                if self._proxy is None:
                    self._proxy = self._make(manager)
        return self._proxy

    def _prepare(self) -> None:
        super()._prepare()
        self._p()

    def __reduce__(self) -> tuple[Any, ...]:
        only_through_shared_state(self)
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


def _forget_after_fork() -> None:
    global _manager
    _manager = None  # the parent's Manager; its own finalizer ignores this process


_pools.on_shutdown(stop_manager)
os.register_at_fork(after_in_child=_forget_after_fork)
