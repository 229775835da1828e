"""What the public face does with the engine's output: collect it, stream it, and raise
a failure with the user's frames first (fanmap's own, where it waited, left out)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["by_name", "check_iterable", "collected", "stream", "without_our_frames"]


def check_iterable(value: object, what: str) -> None:
    if not isinstance(value, Iterable):
        raise TypeError(
            f"{what} must be iterable, not {type(value).__name__}; "
            f"to make one call with this value, wrap it: [{value!r}]"
        )


def by_name(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def without_our_frames(error: BaseException) -> BaseException:
    """Drop fanmap's own frames from the front of a traceback: the user's remain.

    A Ctrl-C lands wherever the caller waited (fanmap's frames, then the standard
    library's): none of those frames says anything to the user, so all are dropped.
    """
    if isinstance(error, KeyboardInterrupt):
        return error.with_traceback(None)
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return error.with_traceback(tb)


def collected(blocks: Iterator[tuple[int, list[Any]]]) -> list[Any]:
    out: list[Any] = []
    for _, values in blocks:
        out.extend(values)
    return out


def stream(blocks: Iterator[tuple[int, list[Any]]]) -> Iterator[Any]:
    try:
        for _, values in blocks:
            yield from values
    except (Exception, KeyboardInterrupt) as exc:
        error = exc
    else:
        return
    finally:
        blocks.close()  # type: ignore[attr-defined]  # a generator: stop its workers now
    # Raised outside the handler, so that its chain stays the one made in the worker; and
    # not kept here, where the traceback holds this frame: a cycle would keep the run's
    # items and keywords until the garbage collector ran.
    try:
        raise without_our_frames(error)
    finally:
        del error
