"""Pickling for the trip to and from a worker, and messages that name what failed.

The standard pickler is tried first because it is the fastest; cloudpickle takes over
for what it cannot do by reference (lambdas, closures, and everything of ``__main__``:
see `_mainmod`).
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = [
    "PROTOCOL",
    "describe",
    "dumps",
    "dumps_function",
    "find_unpicklable",
    "find_unpicklable_capture",
    "pickling_error",
    "short_repr",
]

from ._mainmod import PROTOCOL
from ._mainmod import dumps as dumps


class _Repr(reprlib.Repr):
    """reprlib's short reprs, with a dict's keys in their own order (not sorted)."""

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        parts = [
            f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
            for k, v in list(x.items())[: self.maxdict]
        ]
        if len(x) > self.maxdict:
            parts.append("...")
        return "{" + ", ".join(parts) + "}"


_repr = _Repr()
_repr.maxstring = 40
_repr.maxother = 40
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 4
_repr.maxlevel = 2


def short_repr(obj: object) -> str:
    """Return a repr short enough for an error message."""
    try:
        return _repr.repr(obj)
    except Exception:  # a broken __repr__ must not hide the real error
        return f"<{type(obj).__qualname__} object>"


def describe(obj: object) -> str:
    """Name an object's type the way a message should: 'a generator object'."""
    name = type(obj).__qualname__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{article} {name} object"


def dumps_function(fn: object) -> bytes:
    """Pickle a function to send to workers: by reference when importable."""
    return dumps(fn)


def pickling_error(obj: object) -> BaseException | None:
    """The error pickling ``obj`` raises, or None if it pickles."""
    try:
        dumps(obj)
    except Exception as exc:
        return exc
    return None


def find_unpicklable(
    args: tuple[Any, ...], kwargs: dict[str, Any], names: list[str] | None = None
) -> tuple[str, object, BaseException] | None:
    """Find the first argument of a call that cannot be pickled.

    Args:
        args: The positional arguments.
        kwargs: The keyword arguments.
        names: The function's positional parameter names, if known.

    Returns:
        ``(what, value, error)``, where ``what`` names the argument for a message
        (``"argument b"``, ``"argument at position 2"``, ``"keyword argument b="``),
        or ``None`` when every value pickles.
    """
    for position, value in enumerate(args):
        error = pickling_error(value)
        if error is not None:
            if names is not None and position < len(names):
                return f"argument {names[position]}", value, error
            return f"argument at position {position} (counting from 0)", value, error
    for name, value in kwargs.items():
        error = pickling_error(value)
        if error is not None:
            return f"keyword argument {name}=", value, error
    return None


def find_unpicklable_capture(fn: Any) -> tuple[str, object, BaseException] | None:
    """Find a variable a function captures (closure or global) that cannot be pickled."""
    fn = getattr(fn, "__wrapped__", fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        error = pickling_error(value)
        if error is not None:
            return name, value, error
    globals_ = getattr(fn, "__globals__", {})
    for name in code.co_names:
        if name in globals_:
            value = globals_[name]
            error = pickling_error(value)
            if error is not None:
                return name, value, error
    return None
