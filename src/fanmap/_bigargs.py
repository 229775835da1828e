"""Large buffers by shared memory: NumPy arrays reach workers as zero-copy views.

Pickle protocol 5 hands every large contiguous buffer (a NumPy array's data, a
``bytearray``) to a callback instead of copying it into the pickle. `Outbound` puts
each buffer of at least `THRESHOLD` bytes into a shared-memory segment, once per
object per run, and the message carries only the segment's name. `Inbound`, in the
worker, maps the segment and rebuilds the array on top of it, read-only: no copy.

The caller owns the segments and unlinks them when the run ends, fails or is
interrupted; if the caller itself is killed, multiprocessing's resource tracker
unlinks them.

`share` places an array in shared memory once, for as long as the caller keeps it (or
a view of it): its buffer, or any slice's, travels by the segment's name and an offset,
with no copy at all, to every map.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import itertools
import mmap
import os
import pickle
import weakref
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

try:
    import _posixshmem  # type: ignore[import-not-found]  # CPython's own, behind SharedMemory
except ImportError:  # pragma: no cover - Windows
    _posixshmem = None

if TYPE_CHECKING:
    from multiprocessing import shared_memory

    import numpy as np

__all__ = ["THRESHOLD", "Inbound", "Outbound", "share"]

#: Buffers of at least this many bytes travel through shared memory.
THRESHOLD: Final = 1 << 20

_names = itertools.count()

#: A buffer in a segment: the segment's name and size, the buffer's offset and length.
Descriptor = tuple[str, int, int, int]

ShapeT = TypeVar("ShapeT", bound="tuple[int, ...]")
DTypeT = TypeVar("DTypeT", bound="np.dtype[Any]")

#: Arrays placed by `share`, by start address: (end address, segment name, segment size).
#: No lock: each use is one dict operation (or a copy of its items), and `_free` runs
#: from finalizers, in whatever thread a garbage collection happens to start.
_placed: dict[int, tuple[int, str, int]] = {}


def share(array: np.ndarray[ShapeT, DTypeT]) -> np.ndarray[ShapeT, DTypeT]:
    """Place a NumPy array in shared memory once, so that maps pass it with no copy.

    Returns a new array, equal to ``array``, whose memory is a shared-memory segment.
    Give it (or any slice or view of it, strided or not) to any number of maps on the
    process backend: each worker maps the same memory, read-only, instead of receiving
    a copy, whatever the start method. Without `share`, an array of 1 MiB or more is
    copied into shared memory once per map; with it, not even that. Keep using the
    returned array in the caller: what the caller writes to it, workers see in the next
    calls they start.

    The segment is freed when the returned array and every view of it are gone (or
    when the caller exits, even killed). On the thread and serial backends the array
    is simply passed; on Dask, it is sent like any other argument.

    Args:
        array: a NumPy array.

    Returns:
        A C-contiguous ``numpy.ndarray`` with the same shape, dtype and values.

    Raises:
        ImportError: NumPy is not installed (``pip install 'fanmap[numpy]'``).
        TypeError: ``array`` is not a plain ``numpy.ndarray`` (a list, a masked array,
            a matrix: convert it first), or its dtype holds Python objects.
        OSError: the system has no POSIX shared memory, or no room in it.

    Examples:
        >>> import numpy as np
        >>> import fanmap
        >>> table = fanmap.share(np.arange(6.0).reshape(2, 3))
        >>> table.sum(), table.shape
        (np.float64(15.0), (2, 3))
    """
    try:
        import numpy as np
    except ImportError:
        raise ImportError("fanmap.share needs NumPy: pip install 'fanmap[numpy]'") from None
    if type(array) is not np.ndarray:
        what = type(array).__qualname__
        hint = "np.asarray(x)" if not isinstance(array, np.ndarray) else "x.view(np.ndarray)"
        raise TypeError(
            f"fanmap.share takes a numpy.ndarray, not a {what}: pass {hint} if the plain array "
            "is what workers need (a subclass's extra data, like a mask, would be lost)"
        )
    if array.dtype.hasobject:
        raise TypeError(
            f"fanmap.share cannot place an array of dtype {array.dtype} in shared memory: it "
            "holds references to Python objects, which live in the caller's memory only; "
            "pass it to the map as it is (it is pickled), or convert it to a numeric dtype"
        )
    name = f"fanmap_{os.getpid()}_s{next(_names)}_{_token()}"
    size = max(1, array.nbytes)
    memory = _create(name, size)
    try:
        placed = np.frombuffer(memory, dtype=array.dtype, count=array.size).reshape(array.shape)
        placed[...] = array
    except BaseException:
        memory.close()
        _free(0, name)
        raise
    start = placed.ctypes.data
    _placed[start] = (start + size, name, size)
    weakref.finalize(memory, _free, start, name)  # when the last view of it is gone
    return cast("np.ndarray[ShapeT, DTypeT]", placed)


def _token() -> str:
    import secrets

    return secrets.token_hex(4)


def _create(name: str, size: int) -> mmap.mmap:
    """A new shared-memory segment, mapped read-write; the resource tracker unlinks it
    if this process dies before `_free` does."""
    from multiprocessing import resource_tracker

    if _posixshmem is None:  # pragma: no cover - Windows
        raise OSError("fanmap.share needs POSIX shared memory (Linux or macOS)")
    fd: int = _posixshmem.shm_open("/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    try:
        resource_tracker.register("/" + name, "shared_memory")
        os.ftruncate(fd, size)
        return mmap.mmap(fd, size)
    except BaseException:
        _free(0, name)
        raise
    finally:
        os.close(fd)


def _free(start: int, name: str) -> None:
    from multiprocessing import resource_tracker

    _placed.pop(start, None)
    if not name.startswith(f"fanmap_{os.getpid()}_"):  # a forked child's copy: not its own
        return
    with contextlib.suppress(FileNotFoundError):
        if _posixshmem is not None:
            _posixshmem.shm_unlink("/" + name)
        resource_tracker.unregister("/" + name, "shared_memory")


@atexit.register
def _free_all() -> None:
    for start, (_, name, _) in list(_placed.items()):
        _free(start, name)


def _placed_at(view: memoryview) -> Descriptor | None:
    """Where a buffer lies in a segment of `share`, if it does."""
    import numpy as np

    start = np.frombuffer(view, dtype=np.uint8).ctypes.data if view.nbytes else 0
    for first, (end, name, size) in list(_placed.items()):
        if first <= start and start + view.nbytes <= end:
            return name, size, start - first, view.nbytes
    return None


def _share_reducers() -> dict[type, Any]:
    """A dispatch table that sends strided views of `share`'s arrays as views."""
    import copyreg

    import numpy as np

    return {**copyreg.dispatch_table, np.ndarray: _reduce_array}


def _reduce_array(array: np.ndarray[Any, Any]) -> Any:
    """A strided view into `share`'s memory as the bytes it spans and its layout; any
    other array as NumPy pickles it (its contiguous buffer reaches `place` as it is)."""
    import numpy as np

    flags = array.flags
    if flags.c_contiguous or flags.f_contiguous or array.size == 0:
        return array.__reduce_ex__(5)
    first = array.ctypes.data
    low = first + sum((n - 1) * s for n, s in zip(array.shape, array.strides, strict=True) if s < 0)
    high = first + sum((n - 1) * s for n, s in zip(array.shape, array.strides, strict=True) if s > 0)
    owner: Any = array
    while isinstance(owner, np.ndarray) and owner.base is not None:
        owner = owner.base
    if isinstance(owner, np.ndarray):  # owns its memory: not in a segment of `share`
        return array.__reduce_ex__(5)
    try:
        whole = np.frombuffer(owner, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):  # made by as_strided, or not a buffer at all
        return array.__reduce_ex__(5)
    start = whole.ctypes.data
    known = _placed.get(start)
    if known is None or not start <= low <= high + array.itemsize <= known[0]:
        return array.__reduce_ex__(5)
    span = whole[low - start : high + array.itemsize - start]
    return _view, (pickle.PickleBuffer(span.data), first - low, array.shape, array.strides, array.dtype)


def _view(buffer: Any, offset: int, shape: Any, strides: Any, dtype: Any) -> Any:
    """A strided array over ``buffer`` (in a worker: the segment, mapped read-only)."""
    import numpy as np

    return np.ndarray(shape, dtype, buffer=buffer, offset=offset, strides=strides)


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
            placed = _placed_at(view) if _placed else None  # in `share`'s memory: any size
            if placed is None and view.nbytes < self.threshold:
                return True
            descriptors.append(placed or self._segment_for(view))
            return False

        reducers = _share_reducers() if _placed else None
        try:
            if reducers is None:
                data = pickle.dumps(obj, 5, buffer_callback=place)
            else:
                with io.BytesIO() as file:
                    pickler = pickle.Pickler(file, 5, buffer_callback=place)
                    pickler.dispatch_table = reducers
                    pickler.dump(obj)
                    data = file.getvalue()
            by_value = b"__main__" in data  # names something of __main__, which workers lack
        except Exception:  # a lambda, a closure...: cloudpickle may do it
            by_value = True
        if by_value:
            from ._mainmod import dumps_by_value

            descriptors.clear()
            data = dumps_by_value(obj, place, 5, reducers)
        return data, descriptors

    def _segment_for(self, view: memoryview) -> Descriptor:
        key = id(view.obj)
        known = self._segments.get(key)
        if known is not None and known[1] is view.obj:
            return known[0].name, known[2], 0, known[2]
        from multiprocessing import shared_memory

        name = f"fanmap_{os.getpid()}_{next(_names)}_{_token()}"
        segment = shared_memory.SharedMemory(name=name, create=True, size=max(1, view.nbytes))
        buf = segment.buf
        assert buf is not None
        buf[: view.nbytes] = view.cast("B")
        self._segments[key] = (segment, view.obj, view.nbytes)
        return segment.name, view.nbytes, 0, view.nbytes

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
        return pickle.loads(data, buffers=[self._map(*descriptor) for descriptor in descriptors])

    def _map(self, name: str, size: int, offset: int, length: int) -> memoryview:
        view = self._maps.get(name)
        if view is None:
            view = self._maps[name] = _map_read_only(name, size)
        return view[offset : offset + length]

    def release(self) -> None:
        """Forget the last run's mappings (each is unmapped once nothing uses it)."""
        self._maps = {}


def _map_read_only(name: str, size: int) -> memoryview:
    if _posixshmem is None:  # pragma: no cover - Windows: no POSIX shared memory
        from multiprocessing import shared_memory

        buf = shared_memory.SharedMemory(name=name).buf
        assert buf is not None
        return buf.toreadonly()
    fd: int = _posixshmem.shm_open("/" + name, os.O_RDONLY, mode=0o600)
    try:
        return memoryview(mmap.mmap(fd, size, prot=mmap.PROT_READ))
    finally:
        os.close(fd)
