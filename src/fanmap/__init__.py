"""fanmap: turn plain functions into parallel maps.

Examples:
    >>> from fanmap import parallel
    >>> @parallel(backend="serial")
    ... def square(x: int) -> int:
    ...     return x * x
    >>> square.map(range(4))
    [0, 1, 4, 9]
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from ._api import ParallelFunction as ParallelFunction
    from ._args import Args as Args
    from ._backends._dask import DaskBackend as DaskBackend
    from ._bigargs import share as share
    from ._checkpoint import Checkpoint as Checkpoint
    from ._checkpoint import CheckpointError as CheckpointError
    from ._config import config as config
    from ._errors import BackendUnavailableError as BackendUnavailableError
    from ._errors import Failure as Failure
    from ._errors import FanmapError as FanmapError
    from ._errors import RemoteError as RemoteError
    from ._errors import SerializationError as SerializationError
    from ._errors import SharedStateError as SharedStateError
    from ._errors import TaskTimeoutError as TaskTimeoutError
    from ._errors import WorkerCrashedError as WorkerCrashedError
    from ._errors import WorkerInitError as WorkerInitError
    from ._executor import Executor as Executor
    from ._insights import Report as Report
    from ._insights import insights as insights
    from ._managed import Dict as Dict
    from ._managed import List as List
    from ._managed import Queue as Queue
    from ._parallel import AsyncParallelFunction as AsyncParallelFunction
    from ._parallel import parallel as parallel
    from ._parallel import pmap as pmap
    from ._perworker import per_worker as per_worker
    from ._pools import shutdown as shutdown
    from ._shared import shared_state as shared_state
    from ._values import Array as Array
    from ._values import Value as Value

# Names are imported when first used: a worker process imports `fanmap._worker` (and so
# this package) without the API, the engine, asyncio or sqlite3, which keeps its start-up
# under spawn and forkserver short.
_LAZY: dict[str, str] = {
    "ParallelFunction": "._api",
    "Args": "._args",
    "Checkpoint": "._checkpoint",
    "CheckpointError": "._checkpoint",
    "config": "._config",
    "BackendUnavailableError": "._errors",
    "Failure": "._errors",
    "FanmapError": "._errors",
    "RemoteError": "._errors",
    "SerializationError": "._errors",
    "SharedStateError": "._errors",
    "TaskTimeoutError": "._errors",
    "WorkerCrashedError": "._errors",
    "WorkerInitError": "._errors",
    "Executor": "._executor",
    "Report": "._insights",
    "insights": "._insights",
    "Dict": "._managed",
    "List": "._managed",
    "Queue": "._managed",
    "AsyncParallelFunction": "._parallel",
    "parallel": "._parallel",
    "pmap": "._parallel",
    "per_worker": "._perworker",
    "shutdown": "._pools",
    "shared_state": "._shared",
    "Array": "._values",
    "Value": "._values",
    "DaskBackend": "._backends._dask",
    "share": "._bigargs",
}

__version__ = "0.1.0"

__all__ = [
    "Args",
    "Array",
    "AsyncParallelFunction",
    "BackendUnavailableError",
    "Checkpoint",
    "CheckpointError",
    "DaskBackend",
    "Dict",
    "Executor",
    "Failure",
    "FanmapError",
    "List",
    "ParallelFunction",
    "Queue",
    "RemoteError",
    "Report",
    "SerializationError",
    "SharedStateError",
    "TaskTimeoutError",
    "Value",
    "WorkerCrashedError",
    "WorkerInitError",
    "config",
    "insights",
    "parallel",
    "per_worker",
    "pmap",
    "share",
    "shared_state",
    "shutdown",
]


if not _typing.TYPE_CHECKING:  # hidden from type checkers, so that `fanmap.typo` is an error

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'fanmap' has no attribute {name!r}")
        value = getattr(_importlib.import_module(module, __name__), name)
        globals()[name] = value  # asked once
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
