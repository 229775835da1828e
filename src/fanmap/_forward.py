"""What a worker process says goes to the caller: its log records and its prints.

In a worker, `forward_output` routes the root logger and ``sys.stdout``/``sys.stderr``
to the reply pipe, so that they arrive in the caller in order, before the reply of
the chunk during which they were written, and survive a crash of the worker. In the
caller, `deliver` hands each to the caller's own loggers and streams: a notebook shows
a worker's ``print`` in the cell that ran the map, a terminal in its own output.

```
worker                                       caller
  logging.info(...)  -> (LOG, record)   ---->  logging.getLogger(name).handle(record)
  print(...)         -> (OUT, 1, text)  ---->  sys.stdout.write(text)
```

A print is sent when its line ends (or the buffer grows large), and whatever is left
is sent before each chunk's reply. Only Python-level writes are forwarded: what a C
library writes to file descriptor 1 or 2 goes where the worker's descriptors point.
"""

from __future__ import annotations

import io
import logging
import pickle
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any, Final

__all__ = ["LOG", "OUT", "deliver", "flush_output", "forward_output"]

#: A reply that is a log record, not a chunk's outcome: (LOG, pickled record attributes).
LOG: Final = "log"
#: A reply that is text a worker wrote: (OUT, 1 or 2, text).
OUT: Final = "out"

_PROTOCOL: Final = pickle.HIGHEST_PROTOCOL
_FLUSH_AT: Final = 1 << 13
#: Handlers taken from loggers inherited by fork: kept, so that closing them neither
#: flushes the caller's buffered records a second time nor warns of an unclosed file.
_detached: list[logging.Handler] = []
_streams: list[_ForwardStream] = []


class _ForwardLogging(logging.Handler):
    """Sends every log record to the caller over the reply pipe, as it is emitted."""

    def __init__(self, replies: Connection, lock: threading.Lock) -> None:
        super().__init__()
        self._replies = replies
        self._lock = lock

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = dict(record.__dict__)
            data["msg"] = record.getMessage()
            data["args"] = None
            if record.exc_info:
                data["exc_text"] = self.formatException(record.exc_info)
                data["exc_info"] = None
            try:
                inner = pickle.dumps(data, _PROTOCOL)
            except Exception:  # an unpicklable `extra=` value: send its repr
                data = {k: v if _plain(v) else repr(v) for k, v in data.items()}
                inner = pickle.dumps(data, _PROTOCOL)
            # The record travels as bytes inside its message, so that one the caller
            # cannot rebuild never passes for a chunk's reply.
            blob = pickle.dumps((LOG, inner), _PROTOCOL)
            flush_output()  # what was printed before the record comes before it
            with self._lock:
                self._replies.send_bytes(blob)
        except Exception:
            self.handleError(record)

    def formatException(self, exc_info: Any) -> str:
        return logging.Formatter().formatException(exc_info)


def _plain(value: object) -> bool:
    try:
        pickle.dumps(value, _PROTOCOL)
    except Exception:
        return False
    return True


class _ForwardStream(io.TextIOBase):
    """A ``sys.stdout`` or ``sys.stderr`` that sends its lines to the caller."""

    def __init__(self, replies: Connection, lock: threading.Lock, which: int, original: Any) -> None:
        super().__init__()
        self._replies = replies
        self._send_lock = lock
        self._which = which
        self._original = original
        self._parts: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        fileno: int = self._original.fileno()  # faulthandler and C code write there
        return fileno

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            full = "\n" in text or self._size >= _FLUSH_AT
        if full:
            self.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if not self._parts:
                return
            text = "".join(self._parts)
            self._parts.clear()
            self._size = 0
        blob = pickle.dumps((OUT, self._which, text), _PROTOCOL)
        try:
            with self._send_lock:
                self._replies.send_bytes(blob)
        except OSError:  # the caller is gone: nobody to tell
            pass


def forward_output(replies: Connection, lock: threading.Lock) -> None:
    """Route this worker's logging and prints to the caller, and only there."""
    forward = _ForwardLogging(replies, lock)
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        _detached.append(handler)
    root.addHandler(forward)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.handlers:
            _detached.extend(logger.handlers)  # inherited by fork: they would write twice
            logger.handlers.clear()
            if not logger.propagate:
                logger.addHandler(forward)
    out = _ForwardStream(replies, lock, 1, sys.__stdout__ or sys.stdout)
    err = _ForwardStream(replies, lock, 2, sys.__stderr__ or sys.stderr)
    _streams[:] = [out, err]
    sys.stdout, sys.stderr = out, err


def flush_output() -> None:
    """Send what the worker printed and has not sent yet (before a chunk's reply)."""
    for stream in _streams:
        stream.flush()


def apply_levels(levels: dict[str, int]) -> None:
    """Give the worker's loggers the caller's levels, so the same records are made."""
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)


def log_levels() -> dict[str, int]:
    """The caller's logging levels, for workers to create the same records."""
    levels = {"": logging.getLogger().level}
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


def deliver(message: tuple[Any, ...]) -> bool:
    """Hand a worker's log record or text to the caller's own; False if it is neither."""
    kind = message[0]
    if kind == LOG:
        try:
            attributes = pickle.loads(message[1])
        except Exception as exc:  # an `extra=` value that cannot be rebuilt here
            attributes = {
                "name": "fanmap",
                "levelno": logging.WARNING,
                "levelname": "WARNING",
                "msg": f"fanmap: a worker's log record could not be read here ({exc!r})",
            }
        record = logging.makeLogRecord(attributes)
        logging.getLogger(record.name if record.name != "root" else None).handle(record)
        return True
    if kind == OUT:
        stream = sys.stdout if message[1] == 1 else sys.stderr
        if stream is not None:
            stream.write(message[2])
            stream.flush()
        return True
    return False
