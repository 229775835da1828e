"""Options: their defaults, validation, the ``config()`` context and the environment.

Precedence, highest first: ``.options(...)`` or ``pmap(..., **options)``, then
``@parallel(...)``, then the innermost ``fanmap.config(...)``, then the environment
variables ``FANMAP_BACKEND``, ``FANMAP_WORKERS`` and ``FANMAP_START_METHOD``, then the
built-in defaults.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import multiprocessing
import os
import types
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, TypedDict, Unpack

if TYPE_CHECKING:
    from ._backends._dask import DaskBackend

__all__ = ["Options", "OptionsDict", "config", "cpu_count", "resolve", "validate"]

BackendName: TypeAlias = Literal["process", "thread", "serial", "dask"]
OnError: TypeAlias = Literal["raise", "return", "skip"]
StartMethod: TypeAlias = Literal["fork", "spawn", "forkserver"]

BACKENDS: Final = ("process", "thread", "serial", "dask")
ON_ERROR: Final = ("raise", "return", "skip")


class OptionsDict(TypedDict, total=False):
    """The options by name and type, as ``parallel``, ``.options``, ``pmap`` and ``config`` take them."""

    workers: int
    backend: BackendName | DaskBackend
    ordered: bool
    chunksize: int | None
    timeout: float | None
    on_error: OnError
    retries: int
    retry_on: type[BaseException] | tuple[type[BaseException], ...]
    progress: bool | Callable[[int, int | None], object]
    start_method: StartMethod
    max_tasks_per_worker: int | None
    buffersize: int | None
    checkpoint: str | os.PathLike[str] | None
    concurrency: int


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """Every option, resolved: no field is left unset."""

    workers: int
    backend: Any
    ordered: bool
    chunksize: int | None
    timeout: float | None
    on_error: OnError
    retries: int
    retry_on: tuple[type[BaseException], ...]
    progress: Any
    start_method: str
    max_tasks_per_worker: int | None
    buffersize: int | None
    checkpoint: Any
    #: Calls of an ``async def`` function in flight at once in each worker.
    concurrency: int = 16
    #: The function's shared objects (``@shared_state``); not an option users set.
    state: Any = None
    #: The function's per-worker factories (``@per_worker``); not an option users set.
    per_worker: Any = None
    #: Pools of an owner of their own (an Executor): never shared with other maps.
    pool_tag: Any = None


OPTION_NAMES: Final = tuple(
    f.name for f in dataclasses.fields(Options) if f.name not in ("state", "per_worker", "pool_tag")
)

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "fanmap_config", default=types.MappingProxyType({})
)


def cpu_count() -> int:
    """Return the CPUs this process may use: affinity and cgroup quota aware."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        count = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def _choices(name: str, value: object, valid: tuple[str, ...]) -> str:
    listed = ", ".join(repr(v) for v in valid)
    return f"{name}={value!r} is not valid; use one of {listed}"


def _positive_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def validate(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check option names and values; return them as a plain dict.

    Raises:
        TypeError: An unknown option name, or a value of the wrong type.
        ValueError: A value out of range or not among the valid choices.
    """
    out: dict[str, Any] = {}
    for name, value in options.items():
        if name not in OPTION_NAMES:
            valid = ", ".join(OPTION_NAMES)
            raise TypeError(f"unknown option {name!r}; the options are: {valid}")
        if name in ("workers", "concurrency"):
            _positive_int(name, value, minimum=1)
        elif name == "backend":
            if isinstance(value, str):
                if value not in BACKENDS:
                    raise ValueError(_choices(name, value, BACKENDS))
            else:
                from ._backends._dask import DaskBackend

                if not isinstance(value, DaskBackend):
                    raise TypeError(
                        f"backend must be one of {', '.join(map(repr, BACKENDS))} or a "
                        f"fanmap.DaskBackend(...), not {value!r}"
                    )
        elif name == "ordered":
            if not isinstance(value, bool):
                raise TypeError(f"ordered must be True or False, not {value!r}")
        elif name in ("chunksize", "max_tasks_per_worker", "buffersize"):
            if value is not None:
                _positive_int(name, value, minimum=1)
        elif name == "timeout":
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise TypeError(f"timeout must be a number of seconds or None, not {value!r}")
                if not value > 0:
                    raise ValueError(f"timeout must be > 0 seconds, got {value}")
                # No limit at all: calls are batched as without a timeout (with one, each
                # call goes alone, so that it has its own clock).
                value = None if value == math.inf else float(value)
        elif name == "on_error":
            if value not in ON_ERROR:
                raise ValueError(_choices(name, value, ON_ERROR))
        elif name == "retries":
            _positive_int(name, value, minimum=0)
        elif name == "retry_on":
            if isinstance(value, type):
                value = (value,)
            if not isinstance(value, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in value
            ):
                raise TypeError(f"retry_on must be an exception type or a tuple of them, not {value!r}")
        elif name == "progress":
            if not isinstance(value, bool) and not callable(value):
                raise TypeError(f"progress must be True, False or a callable (done, total), not {value!r}")
        elif name == "checkpoint":
            if value is not None and not isinstance(value, str | os.PathLike):
                raise TypeError(f"checkpoint must be a file path or None, not {type(value).__name__}")
        elif name == "start_method":
            methods = tuple(multiprocessing.get_all_start_methods())
            if value not in methods:
                raise ValueError(_choices(name, value, methods))
        out[name] = value
    return out


def _environment() -> dict[str, Any]:
    env: dict[str, Any] = {}
    backend = os.environ.get("FANMAP_BACKEND")
    if backend:
        if backend not in BACKENDS:
            raise ValueError("FANMAP_BACKEND: " + _choices("backend", backend, BACKENDS))
        env["backend"] = backend
    method = os.environ.get("FANMAP_START_METHOD")
    if method:
        methods = tuple(multiprocessing.get_all_start_methods())
        if method not in methods:
            raise ValueError("FANMAP_START_METHOD: " + _choices("start_method", method, methods))
        env["start_method"] = method
    workers = os.environ.get("FANMAP_WORKERS")
    if workers:
        try:
            env["workers"] = int(workers)
        except ValueError:
            raise ValueError(f"FANMAP_WORKERS must be a whole number, got {workers!r}") from None
        try:
            validate({"workers": env["workers"]})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"FANMAP_WORKERS: {exc}") from None
    return env


def resolve(*layers: Mapping[str, Any]) -> Options:
    """Merge defaults, environment, ``config()`` and the given layers (later wins)."""
    merged: dict[str, Any] = {
        "workers": None,
        "backend": "process",
        "ordered": True,
        "chunksize": None,
        "timeout": None,
        "on_error": "raise",
        "retries": 0,
        "retry_on": (Exception,),
        "progress": False,
        "start_method": None,
        "max_tasks_per_worker": None,
        "buffersize": None,
        "checkpoint": None,
        "concurrency": 16,
    }
    merged.update(_environment())
    merged.update(_context.get())
    for layer in layers:
        merged.update(layer)
    if merged["workers"] is None:
        merged["workers"] = cpu_count()
    if merged["start_method"] is None:
        merged["start_method"] = multiprocessing.get_start_method()
    return Options(**merged)


@contextlib.contextmanager
def config(**options: Unpack[OptionsDict]) -> Iterator[None]:
    """Set default options for every parallel function used inside the block.

    Options given to ``@parallel``, ``.options()`` or ``pmap`` still win. The setting
    follows the current context (like ``contextvars``): it holds in this thread and in
    code this thread runs, not in threads started elsewhere.

    Args:
        **options: Any of the options of ``parallel``.

    Raises:
        TypeError: An unknown option name or a value of the wrong type.
        ValueError: An option value out of range.

    Examples:
        >>> import fanmap
        >>> square = fanmap.parallel(lambda x: x * x)
        >>> with fanmap.config(backend="serial"):
        ...     square.map(range(4))
        [0, 1, 4, 9]
    """
    checked = validate(options)
    if "checkpoint" in checked:
        raise TypeError(
            "checkpoint cannot be set for every map: a checkpoint file belongs to one map; "
            "give it to that map: f.options(checkpoint=path).map(...) or pmap(..., checkpoint=path)"
        )
    token = _context.set({**_context.get(), **checked})
    try:
        yield
    finally:
        _context.reset(token)
