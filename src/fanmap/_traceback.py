"""Exceptions across the process boundary: captured in a worker, rebuilt in the caller.

tblib turns a traceback into plain data and back. It is used only here, explicitly,
and never installed globally: the user's own pickling is left as it was.

An exception travels as a dict: the pickled exception (without its traceback), the
traceback as tblib data, the formatted text (for a ``RemoteError`` if rebuilding
fails), and the same again for its ``__cause__`` and ``__context__``.
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any

from ._errors import RemoteError
from ._serialize import PROTOCOL

__all__ = ["capture", "rebuild"]

_MAX_CHAIN = 16


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def capture(exc: BaseException, _depth: int = 0) -> dict[str, Any]:
    """Turn an exception and its chain into picklable data."""
    data: dict[str, Any] = {
        "type": _type_name(exc),
        "text": "".join(traceback.format_exception(exc)),
        "suppress_context": exc.__suppress_context__,
        "exc": None,
        "reason": "",
        "tb": None,
        "cause": None,
        "context": None,
        "context_is_cause": exc.__context__ is not None and exc.__context__ is exc.__cause__,
    }
    try:
        blob = pickle.dumps(exc, PROTOCOL)
        pickle.loads(blob)  # an exception that cannot be rebuilt is caught here, not later
        data["exc"] = blob
    except Exception as err:
        data["reason"] = f"{type(err).__name__}: {err}"
    if exc.__traceback__ is not None:
        from tblib import Traceback

        try:
            data["tb"] = Traceback(exc.__traceback__).as_dict()
        except Exception:  # pragma: no cover - tblib copes with every real frame
            data["tb"] = None
    if _depth < _MAX_CHAIN:
        if exc.__cause__ is not None:
            data["cause"] = capture(exc.__cause__, _depth + 1)
        if exc.__context__ is not None and exc.__context__ is not exc.__cause__:
            data["context"] = capture(exc.__context__, _depth + 1)
    return data


def rebuild(data: dict[str, Any]) -> BaseException:
    """Turn data from `capture` back into an exception with the worker's frames."""
    exc: BaseException
    if data["exc"] is None:
        exc = RemoteError(data["type"], data["text"], data["reason"])
    else:
        try:
            exc = pickle.loads(data["exc"])
        except Exception as err:
            exc = RemoteError(data["type"], data["text"], f"{type(err).__name__}: {err}")
        else:
            if data["tb"] is not None:
                from tblib import Traceback

                exc = exc.with_traceback(Traceback.from_dict(data["tb"]).as_traceback())
    if data["cause"] is not None:
        exc.__cause__ = rebuild(data["cause"])
    if data["context"] is not None:
        exc.__context__ = rebuild(data["context"])
    elif data["context_is_cause"]:
        exc.__context__ = exc.__cause__
    exc.__suppress_context__ = data["suppress_context"]
    return exc
