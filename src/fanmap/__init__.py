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

import typing as _typing

from ._api import ParallelFunction as ParallelFunction
from ._args import Args as Args
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

if _typing.TYPE_CHECKING:
    from ._backends._dask import DaskBackend as DaskBackend

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
    "shared_state",
    "shutdown",
]


def __getattr__(name: str) -> object:
    # DaskBackend is imported when first asked for: most programs never need it.
    if name == "DaskBackend":
        from ._backends._dask import DaskBackend

        return DaskBackend
    raise AttributeError(f"module 'fanmap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "DaskBackend"})
