"""How an item of the input becomes one call: `CallMode`, `Args` and `call_args`.

``map(f, xs)`` calls ``f(x)``; ``map(f, xs, ys)`` zips and calls ``f(x, y)``;
``starmap(f, items)`` takes a tuple of arguments, or an `Args` with keywords too, per
item. The keywords given to the map reach every call.
"""

from __future__ import annotations

import enum
from typing import Any

from ._serialize import describe, short_repr

__all__ = ["Args", "CallMode", "call_args"]


class CallMode(enum.IntEnum):
    """How an item becomes a call."""

    ONE = 0  #: ``fn(item)``: ``map`` over one iterable
    STAR = 1  #: ``fn(*item)``: ``map`` over several, zipped into tuples
    ARGS = 2  #: a tuple of arguments or an `Args`: ``starmap``


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

    def __init__(self, /, *args: Any, **kwargs: Any) -> None:
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


def call_args(mode: int, item: Any, kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Return the positional and keyword arguments an item stands for.

    Raises:
        TypeError: A ``starmap`` item is neither a tuple of arguments nor an `Args`.
    """
    if mode == CallMode.ONE:
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


def arguments_of(mode: int, item: Any, kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """`call_args`, except that a starmap item that is not a tuple stands as itself."""
    try:
        return call_args(mode, item, kwargs)
    except TypeError:
        return (item,), kwargs
