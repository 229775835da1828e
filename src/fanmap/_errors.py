"""The exceptions fanmap raises, and the `Failure` it returns in a failed item's place.

```
FanmapError(Exception)
├── WorkerCrashedError        a worker died while running an item (also a BrokenProcessPool)
├── TaskTimeoutError          also a TimeoutError
├── SerializationError        something could not be sent to or from a worker (also a PicklingError)
├── RemoteError               a worker exception that could not be rebuilt
├── BackendUnavailableError   also an ImportError; says which extra to install
├── SharedStateError          shared state misused (wrong backend, unknown name)
├── CheckpointError           a checkpoint file of another function, or not a checkpoint
└── WorkerInitError           a @per_worker factory (or an Executor's initializer) failed in
                              a worker (also a BrokenProcessPool)
```

A user's own exception raised in a worker is never wrapped: it comes back as its own
type, with the worker's frames in its traceback and a note naming the item.
"""

from __future__ import annotations

import dataclasses
import pickle
from concurrent.futures.process import BrokenProcessPool
from typing import Any

__all__ = [
    "BackendUnavailableError",
    "Failure",
    "FanmapError",
    "RemoteError",
    "SerializationError",
    "SharedStateError",
    "TaskTimeoutError",
    "WorkerCrashedError",
    "WorkerInitError",
]


class FanmapError(Exception):
    """Base class of every error fanmap raises on its own account.

    Examples:
        >>> from fanmap import FanmapError, TaskTimeoutError
        >>> issubclass(TaskTimeoutError, FanmapError)
        True
    """


class WorkerCrashedError(FanmapError, BrokenProcessPool):
    """A worker process died while it was running an item.

    The message names the item, the worker and how it died (exit code or signal).

    Attributes:
        exitcode: The worker's exit code; negative for a signal (``-9`` is SIGKILL).

    Examples:
        >>> from fanmap import WorkerCrashedError
        >>> err = WorkerCrashedError("worker 1 (pid 42) was killed by SIGKILL", exitcode=-9)
        >>> err.exitcode
        -9
    """

    def __init__(self, message: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.exitcode))


class TaskTimeoutError(FanmapError, TimeoutError):
    """A call ran longer than the ``timeout`` option; its worker was stopped.

    Examples:
        >>> from fanmap import TaskTimeoutError
        >>> isinstance(TaskTimeoutError("item 3 ran past 1s"), TimeoutError)
        True
    """


class SerializationError(FanmapError, pickle.PicklingError):
    """A function, argument, keyword or result could not be pickled or unpickled.

    Examples:
        >>> from fanmap import SerializationError
        >>> raise SerializationError("cannot pickle argument 1 of item 0 (a generator)")
        Traceback (most recent call last):
        ...
        fanmap.SerializationError: cannot pickle argument 1 of item 0 (a generator)
    """


class RemoteError(FanmapError):
    """A worker's exception that could not be sent back as itself.

    Raised in place of an exception that cannot be pickled or rebuilt in the caller
    (an unpicklable attribute, an ``__init__`` that needs other arguments).

    Attributes:
        type_name: The qualified name of the original exception's type.
        remote_traceback: The original traceback, formatted in the worker.

    Examples:
        >>> from fanmap import RemoteError
        >>> err = RemoteError("mod.Odd", "Traceback (most recent call last): ...")
        >>> err.type_name
        'mod.Odd'
    """

    def __init__(self, type_name: str, remote_traceback: str, reason: str = "") -> None:
        message = f"{type_name} raised in a worker could not be sent back as itself"
        if reason:
            message += f" ({reason})"
        message += "; its traceback in the worker was:\n" + remote_traceback
        super().__init__(message)
        self.type_name = type_name
        self.remote_traceback = remote_traceback
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, self.remote_traceback, self.reason))


class BackendUnavailableError(FanmapError, ImportError):
    """A backend needs a package that is not installed; the message names the extra.

    Examples:
        >>> from fanmap import BackendUnavailableError
        >>> isinstance(BackendUnavailableError("pip install 'fanmap[dask]'"), ImportError)
        True
    """


class SharedStateError(FanmapError):
    """Shared state was misused: an unknown parameter name, or a backend that cannot share.

    Examples:
        >>> from fanmap import FanmapError, SharedStateError
        >>> issubclass(SharedStateError, FanmapError)
        True
    """


class WorkerInitError(FanmapError, BrokenProcessPool):
    """A ``@per_worker`` factory raised, or ran past its timeout, in a worker.

    The map stops at once, whatever its ``on_error``: without its per-worker values no
    call of the function can run there. The factory's own exception is the
    ``__cause__``, with the worker's frames; the message names the factory and the
    worker. The next map tries the factory again.

    Examples:
        >>> from fanmap import FanmapError, WorkerInitError
        >>> issubclass(WorkerInitError, FanmapError)
        True
    """


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """What stands in a failed item's place when ``on_error="return"``.

    Attributes:
        exception: The exception the call raised (or a fanmap error for a crash,
            a timeout or an argument that could not be sent).
        index: The item's position in the input.
        args: The positional arguments of the call.
        kwargs: The keyword arguments of the call, those given to the whole map included.

    Examples:
        >>> from fanmap import parallel
        >>> @parallel(backend="serial", on_error="return")
        ... def inverse(x: float) -> float:
        ...     return 1 / x
        >>> inverse.map([1, 0, 4])
        [1.0, Failure(ZeroDivisionError('division by zero'), index=1, args=(0,)), 0.25]
    """

    exception: BaseException
    index: int
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:
        extra = f", kwargs={self.kwargs!r}" if self.kwargs else ""
        return f"Failure({self.exception!r}, index={self.index}, args={self.args!r}{extra})"

    def reraise(self) -> None:
        """Raise the stored exception again.

        Raises:
            BaseException: Always: the exception this failure holds.
        """
        raise self.exception


# Show (and pickle) them under the name users import them by: fanmap.TaskTimeoutError.
for _cls in (
    FanmapError,
    WorkerCrashedError,
    TaskTimeoutError,
    SerializationError,
    RemoteError,
    BackendUnavailableError,
    SharedStateError,
    WorkerInitError,
    Failure,
):
    _cls.__module__ = "fanmap"
