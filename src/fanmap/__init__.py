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

from ._api import ParallelFunction as ParallelFunction
from ._api import parallel as parallel
from ._api import pmap as pmap
from ._backends._dask import DaskBackend as DaskBackend
from ._chunk import Args as Args
from ._config import config as config
from ._errors import BackendUnavailableError as BackendUnavailableError
from ._errors import Failure as Failure
from ._errors import FanmapError as FanmapError
from ._errors import RemoteError as RemoteError
from ._errors import SerializationError as SerializationError
from ._errors import SharedStateError as SharedStateError
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import WorkerCrashedError as WorkerCrashedError
from ._pools import shutdown as shutdown
from ._shared import Array as Array
from ._shared import Dict as Dict
from ._shared import List as List
from ._shared import Queue as Queue
from ._shared import Value as Value
from ._shared import shared_state as shared_state

__version__ = "0.1.0"

__all__ = [
    "Args",
    "Array",
    "BackendUnavailableError",
    "DaskBackend",
    "Dict",
    "Failure",
    "FanmapError",
    "List",
    "ParallelFunction",
    "Queue",
    "RemoteError",
    "SerializationError",
    "SharedStateError",
    "TaskTimeoutError",
    "Value",
    "WorkerCrashedError",
    "config",
    "parallel",
    "pmap",
    "shared_state",
    "shutdown",
]
