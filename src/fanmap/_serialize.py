"""Pickling for the trip to and from a worker, and messages that name what failed.

The standard pickler is tried first because it is the fastest; cloudpickle takes over
for what it cannot do by reference (lambdas, closures, functions of ``__main__``).
"""

from __future__ import annotations

import pickle
import reprlib
from typing import Any

__all__ = ["describe", "dumps", "dumps_function", "find_unpicklable", "short_repr"]

PROTOCOL = pickle.HIGHEST_PROTOCOL

_repr = reprlib.Repr()
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


def dumps(obj: object) -> bytes:
    """Pickle ``obj``, falling back to cloudpickle for what pickles only by value."""
    try:
        return pickle.dumps(obj, PROTOCOL)
    except Exception:
        import cloudpickle

        blob: bytes = cloudpickle.dumps(obj, PROTOCOL)
        return blob


def dumps_function(fn: object) -> bytes:
    """Pickle a function to send to workers: by reference when importable."""
    import cloudpickle

    blob: bytes = cloudpickle.dumps(fn, PROTOCOL)
    return blob


def _picklable(obj: object) -> BaseException | None:
    try:
        dumps(obj)
    except Exception as exc:
        return exc
    return None


def find_unpicklable(values: Any) -> tuple[int | str, object, BaseException] | None:
    """Find the first positional or keyword value of a call that cannot be pickled.

    Args:
        values: A tuple of positional arguments, or a ``(args, kwargs)`` pair.

    Returns:
        ``(position, value, error)`` with a 1-based position or a keyword name, or
        ``None`` when every value pickles.
    """
    if isinstance(values, tuple) and len(values) == 2 and isinstance(values[1], dict):
        args, kwargs = values
    else:
        args, kwargs = values, {}
    for position, value in enumerate(args, 1):
        error = _picklable(value)
        if error is not None:
            return position, value, error
    for name, value in kwargs.items():
        error = _picklable(value)
        if error is not None:
            return name, value, error
    return None
