"""Exceptions across the process boundary: captured in a worker, rebuilt in the caller.

tblib turns a traceback into plain data and back. It is used only here, explicitly,
and never installed globally: the user's own pickling is left as it was.

An exception travels as a dict: the pickled exception (without its traceback), the
traceback as tblib data with each frame's column positions, the formatted text (for a
``RemoteError`` if rebuilding fails), and the same again for its ``__cause__`` and
``__context__``.

Each rebuilt frame is a tiny code object that raises at the frame's line (tblib's
method); its line table is written here so that it also carries the frame's columns,
and the ``^^^^`` markers Python prints under a source line sit where they would have
in the worker (or are left out when the columns are not known).
"""

from __future__ import annotations

import itertools
import os
import pickle
import sys
import threading
import traceback
import types
from typing import Any

from ._mainmod import dumps

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
        blob = dumps(exc)
        pickle.loads(blob)  # an exception that cannot be rebuilt is caught here, not later
        data["exc"] = blob
    except Exception as err:
        data["reason"] = f"{type(err).__name__}: {err}"
        data["exc"] = _without_init(exc)
    if exc.__traceback__ is not None:
        from tblib import Traceback

        try:
            data["tb"] = Traceback(exc.__traceback__).as_dict()
        except Exception:  # pragma: no cover - tblib copes with every real frame
            data["tb"] = None
        data["positions"] = _positions(exc.__traceback__)
    if _depth < _MAX_CHAIN:
        if exc.__cause__ is not None:
            data["cause"] = capture(exc.__cause__, _depth + 1)
        if exc.__context__ is not None and exc.__context__ is not exc.__cause__:
            data["context"] = capture(exc.__context__, _depth + 1)
    return data


def _without_init(exc: BaseException) -> bytes | None:
    """An exception whose ``__init__`` takes other arguments than its ``args`` cannot be
    rebuilt by pickle (``CodeError(code, msg)`` calling ``super().__init__(msg)``): send
    its type, ``args`` and attributes, to be put together without calling ``__init__``."""
    try:
        blob = dumps((type(exc), exc.args, dict(getattr(exc, "__dict__", {}))))
        _rebuilt_without_init(*pickle.loads(blob))
    except Exception:
        return None
    return blob


def _rebuilt_without_init(
    cls: type[BaseException], args: tuple[Any, ...], attrs: dict[str, Any]
) -> BaseException:
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(attrs)
    return exc


def rebuild(data: dict[str, Any]) -> BaseException:
    """Turn data from `capture` back into an exception with the worker's frames."""
    from ._errors import RemoteError  # here: a worker process does not load `_errors`

    exc: BaseException
    if data["exc"] is None:
        exc = RemoteError(data["type"], data["text"], data["reason"])
    else:
        try:
            exc = pickle.loads(data["exc"])
            if isinstance(exc, tuple):  # made by _without_init
                exc = _rebuilt_without_init(*exc)
        except Exception as err:
            exc = RemoteError(data["type"], data["text"], f"{type(err).__name__}: {err}")
        else:
            if data["tb"] is not None:
                from tblib import Traceback

                exc = exc.with_traceback(
                    _as_traceback(Traceback.from_dict(data["tb"]), data.get("positions"))
                )
    if data["cause"] is not None:
        exc.__cause__ = rebuild(data["cause"])
    if data["context"] is not None:
        exc.__context__ = rebuild(data["context"])
    elif data["context_is_cause"]:
        exc.__context__ = exc.__cause__
    exc.__suppress_context__ = data["suppress_context"]
    return exc


#: (line, end line, column, end column, first line of the code) of a frame's instruction.
Position = tuple[int | None, int | None, int | None, int | None, int]


def _positions(tb: types.TracebackType | None) -> list[Position | None]:
    """Where each frame was: its instruction's lines and columns, its code's first line."""
    out: list[Position | None] = []
    while tb is not None:
        found: Position | None = None
        code = tb.tb_frame.f_code
        try:
            unit = tb.tb_lasti // 2
            at = next(itertools.islice(code.co_positions(), unit, unit + 1), None)
            if at is not None:
                found = (*at, code.co_firstlineno)
        except Exception:  # pragma: no cover - an odd code object: no columns then
            found = None
        out.append(found)
        tb = tb.tb_next
    return out


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 64:
        out.append(64 | (value & 63))
        value >>= 6
    out.append(value)
    return bytes(out)


def _svarint(value: int) -> bytes:
    return _varint(((-value) << 1) | 1 if value < 0 else value << 1)


def _line_table(units: int, position: Position | None, line: int, first: int) -> bytes:
    """A line table (PEP 626, 3.11+ format) giving every code unit one position."""
    table = bytearray()
    columns = None
    if position is not None and position[0] == line:
        _, end_line, col, end_col, _ = position
        if end_line is not None and end_line >= line and col is not None and end_col is not None:
            columns = (end_line - line, col + 1, end_col + 1)
    delta = line - first
    while units > 0:
        length = min(units, 8)
        units -= length
        if columns is not None:
            table.append(0x80 | (14 << 3) | (length - 1))  # long form: lines and columns
            table += _svarint(delta) + _varint(columns[0]) + _varint(columns[1]) + _varint(columns[2])
        else:
            table.append(0x80 | (13 << 3) | (length - 1))  # a line, no columns
            table += _svarint(delta)
        delta = 0
    return bytes(table)


_STUB = compile("raise __traceback_maker", "<string>", "exec")


def _as_traceback(tb: Any, positions: list[Position | None] | None) -> types.TracebackType | None:
    """tblib's ``as_traceback``, with each frame's real first line and columns.

    The frames are made in `_maker`, a generator that never ends (see `_frames`): a
    frame that outlives its call keeps the frame that called it (``f_back``), and that
    one its own caller once it returns, and so on up. Made here, a rebuilt frame's
    ``f_back`` would lead through fanmap's frames to the map's, whose locals hold the
    map's items and keywords, and to the exception itself: a cycle that kept them all
    (a shared array's segment too) until the garbage collector ran. Made in `_maker`,
    the chain ends at its frame, which never returns.
    """
    with _making:
        try:
            made: types.TracebackType | BaseException | None = _maker.send((tb, positions))
        except BaseException:
            _new_maker()  # it ended after all (it was closed): the next traceback needs one
            raise
    if isinstance(made, BaseException):
        raise made
    return made


def _frames() -> Any:
    """Makes the frames of rebuilt tracebacks (see `_as_traceback`), each by `exec` right
    here: this frame is the last of every chain. It never ends (an error is handed back,
    not raised: on Python 3.12 and later a generator that ends links its frame to its
    caller's), and it holds nothing of a traceback once it is handed back."""
    box: list[types.TracebackType | BaseException | None] = [None]
    units = len(_STUB.co_code) // 2
    while True:
        tb, positions = yield box.pop()
        top: types.TracebackType | None = None
        last: types.TracebackType | None = None
        try:
            for i in itertools.count():
                if not tb:
                    break
                f_code = tb.tb_frame.f_code
                position = positions[i] if positions is not None and i < len(positions) else None
                first = position[4] if position is not None and position[4] <= tb.tb_lineno else tb.tb_lineno
                code = _STUB.replace(
                    co_firstlineno=first,
                    co_filename=f_code.co_filename,
                    co_name=f_code.co_name,
                    co_linetable=_line_table(units, position, tb.tb_lineno, first),
                )
                try:
                    exec(code, dict(tb.tb_frame.f_globals), dict(tb.tb_frame.f_locals))
                except NameError:
                    made = sys.exc_info()[2]
                    assert made is not None
                    entry = made.tb_next
                    if top is None:
                        top = entry
                    if last is not None:
                        last.tb_next = entry
                    last = entry
                    del made, entry
                tb = tb.tb_next
            box.append(top)
        except GeneratorExit:
            raise
        except BaseException as exc:  # a Ctrl-C, or memory: the caller raises it
            box.append(exc)
        del tb, positions, top, last


def _new_maker() -> None:
    global _maker
    maker = _frames()
    next(maker)
    _maker = maker


def _after_fork() -> None:
    global _making
    _making = threading.Lock()  # another thread may have held it, or been in the generator
    _new_maker()


_maker: Any = None
_making = threading.Lock()  # one thread at a time: a generator runs in one
_new_maker()
os.register_at_fork(after_in_child=_after_fork)
