"""Large buffers by shared memory: NumPy arrays reach workers as zero-copy views.

Pickle protocol 5 hands every large contiguous buffer (a NumPy array's data, a
``bytearray``) to a callback instead of copying it into the pickle. `Outbound` puts
each buffer of at least `THRESHOLD` bytes into a shared-memory segment, once per
object per run, and the message carries only the segment's name. `Inbound`, in the
worker, maps the segment and rebuilds the array on top of it, read-only: no copy.

The caller owns the segments and unlinks them when the run ends, fails or is
interrupted; if the caller itself is killed, multiprocessing's resource tracker
unlinks them.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import pickle
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from multiprocessing import shared_memory

__all__ = ["THRESHOLD", "Inbound", "Outbound"]

#: Buffers of at least this many bytes travel through shared memory.
THRESHOLD: Final = 1 << 20

_names = itertools.count()

Descriptor = tuple[str, int]


class Outbound:
    """Pickles for workers, moving large buffers into shared memory (caller side)."""

    def __init__(self, threshold: int = THRESHOLD) -> None:
        self.threshold = threshold
        self._segments: dict[int, tuple[shared_memory.SharedMemory, object, int]] = {}

    def dumps(self, obj: object) -> tuple[bytes, list[Descriptor]]:
        """Pickle ``obj``; return the pickle and the segments its large buffers are in."""
        descriptors: list[Descriptor] = []

        def place(buffer: pickle.PickleBuffer) -> bool:
            try:
                view = buffer.raw()
            except BufferError:  # not contiguous: stays in the pickle
                return True
            if view.nbytes < self.threshold:
                return True
            descriptors.append(self._segment_for(view))
            return False

        data = pickle.dumps(obj, 5, buffer_callback=place)
        if b"__main__" in data:  # names something of __main__, which workers lack: by value
            from ._mainmod import dumps_by_value

            descriptors.clear()
            data = dumps_by_value(obj, place, 5)
        return data, descriptors

    def _segment_for(self, view: memoryview) -> Descriptor:
        key = id(view.obj)
        known = self._segments.get(key)
        if known is not None and known[1] is view.obj:
            return known[0].name, known[2]
        import secrets
        from multiprocessing import shared_memory

        name = f"fanmap_{os.getpid()}_{next(_names)}_{secrets.token_hex(4)}"
        segment = shared_memory.SharedMemory(name=name, create=True, size=max(1, view.nbytes))
        buf = segment.buf
        assert buf is not None
        buf[: view.nbytes] = view.cast("B")
        self._segments[key] = (segment, view.obj, view.nbytes)
        return segment.name, view.nbytes

    def release(self) -> None:
        """Unlink every segment of the run (workers that still map one keep it until they let go)."""
        segments, self._segments = self._segments, {}
        for segment, _, _ in segments.values():
            with contextlib.suppress(BufferError, OSError):
                segment.close()
            with contextlib.suppress(FileNotFoundError):
                segment.unlink()


class Inbound:
    """Unpickles in a worker, mapping shared-memory segments read-only.

    Segments are mapped with ``PROT_READ`` (so even NumPy cannot write through them)
    and never registered with the resource tracker: the caller owns them. A mapping is
    dropped when the next run starts, or later if the function kept a view.
    """

    def __init__(self) -> None:
        self._maps: dict[str, memoryview] = {}

    def loads(self, data: bytes, descriptors: list[Descriptor]) -> Any:
        if not descriptors:
            return pickle.loads(data)
        return pickle.loads(data, buffers=[self._map(name, size) for name, size in descriptors])

    def _map(self, name: str, size: int) -> memoryview:
        view = self._maps.get(name)
        if view is None:
            view = self._maps[name] = _map_read_only(name, size)
        return view[:size]

    def release(self) -> None:
        """Forget the last run's mappings (each is unmapped once nothing uses it)."""
        self._maps = {}


def _map_read_only(name: str, size: int) -> memoryview:
    try:
        import _posixshmem  # type: ignore[import-not-found]  # CPython's own, behind SharedMemory
    except ImportError:  # pragma: no cover - Windows: no POSIX shared memory
        from multiprocessing import shared_memory

        buf = shared_memory.SharedMemory(name=name).buf
        assert buf is not None
        return buf.toreadonly()
    fd: int = _posixshmem.shm_open("/" + name, os.O_RDONLY, mode=0o600)
    try:
        return memoryview(mmap.mmap(fd, size, prot=mmap.PROT_READ))
    finally:
        os.close(fd)
