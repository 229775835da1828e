"""How code defined in ``__main__`` travels to workers.

A script run as ``python script.py``, a notebook cell, ``python -c`` and ``python -m``
all define their functions and classes in ``__main__``. Workers never run that
module's top-level code: it would run the script again (load data, start maps, print)
in every worker. Instead:

```
caller                                         worker (one namespace per process)
  f, its helpers, its classes  ──by value──►   rebuilt with their real file name;
  + each global f uses, with a token           a global is set only when its token
    that changes when the caller rebinds it    changed: what a call stored stays
  items / results holding __main__ objects ◄──► by value too (both directions)
```

- Functions and classes of ``__main__`` travel by value (cloudpickle), keeping their
  real file name, so a worker's traceback shows the script's lines. For a notebook
  cell (a file name with no file behind it) the cell's source lines travel along, so
  tracebacks formatted in the worker (``log.exception``) show them too.
- Their globals live in one namespace per worker process, kept for its whole life: a
  lazily loaded global stays loaded across calls and maps. A global the caller
  *rebinds* (a redefined function, ``THRESHOLD = 10``) reaches the workers at the next
  map; one the caller leaves alone keeps the worker's own value, as an imported
  module's global would.
- Arguments and results that hold instances of ``__main__`` classes are pickled by
  value (found by looking for ``__main__`` in the standard pickle, which is tried first
  because it is the fastest), so they cross in both directions under every start method,
  even with a warm pool older than the class.
- Workers started with ``spawn`` or ``forkserver`` inside `without_main` are not told to
  import the main script, so a script without ``if __name__ == "__main__":`` works:
  its top-level code runs once, in the caller.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import importlib
import io
import itertools
import linecache
import os
import pickle
import sys
import threading
import types
from collections import ChainMap
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Final

__all__ = ["PROTOCOL", "dumps", "dumps_by_value", "forget_sent_values", "without_main"]

PROTOCOL: Final = pickle.HIGHEST_PROTOCOL
_MARK: Final = b"__main__"

# -- the caller's side --------------------------------------------------------------

_tokens_lock = threading.Lock()
#: name -> (the value last sent under that name, its token); a new object, a new token.
_tokens: dict[str, tuple[object, int]] = {}
_counter = itertools.count(1)


def _token(name: str, value: object) -> tuple[int, int]:
    """The token of the value bound to ``name`` here; (pid, n): two callers never share one."""
    with _tokens_lock:
        known = _tokens.get(name)
        if known is not None and known[0] is value:
            return os.getpid(), known[1]
        token = next(_counter)
        _tokens[name] = (value, token)
        return os.getpid(), token


def forget_sent_values() -> None:
    """Let go of the values kept to tell a rebinding (fanmap.shutdown: workers start afresh)."""
    with _tokens_lock:
        _tokens.clear()


def _main_dict() -> dict[str, Any] | None:
    main = sys.modules.get("__main__")
    return None if main is None else main.__dict__


def _is_main_function(func: types.FunctionType) -> bool:
    return func.__module__ == "__main__" or func.__globals__ is _main_dict()


def _source_of(filename: str) -> list[str] | None:
    """A notebook cell's lines (known to linecache, no file on disk), else None."""
    if os.path.exists(filename):
        return None
    entry = linecache.cache.get(filename)
    if not isinstance(entry, tuple) or len(entry) < 3 or not isinstance(entry[2], list):
        return None
    return list(entry[2])


class _Namespace:
    """Pickles as "the namespace of __main__'s globals" where it is unpickled."""

    __slots__ = ("origin",)

    def __init__(self, origin: int) -> None:
        self.origin = origin

    def __reduce__(self) -> tuple[Any, ...]:
        return (_namespace_for, (self.origin,))


@functools.cache
def _pickler() -> type[Any]:
    """The pickler class, made on first use: cloudpickle is imported only when needed."""
    import cloudpickle
    from cloudpickle import cloudpickle as cp

    _, args = cp._code_reduce(compile("pass", "x", "exec"))
    filename_at = list(args).index("<dynamic-code>")

    def code_reduce(code: types.CodeType) -> tuple[Any, ...]:
        # cloudpickle's reducer for code, keeping the real file name (for tracebacks).
        _, args = cp._code_reduce(code)
        args = list(args)
        args[filename_at] = code.co_filename
        return _make_code, tuple(args)

    def module_reduce(module: types.ModuleType) -> tuple[Any, ...]:
        # An importable module by name, imported with the standard library: a worker
        # unpickling a plain ``__main__`` function needs no cloudpickle.
        if cp._should_pickle_by_reference(module):
            return importlib.import_module, (module.__name__,)
        return cp._module_reduce(module)  # type: ignore[no-any-return]

    class MainPickler(cloudpickle.Pickler):  # type: ignore[misc]
        """cloudpickle, with ``__main__`` functions bound to a namespace that persists."""

        dispatch_table: ClassVar[ChainMap[Any, Any]] = ChainMap(
            {types.CodeType: code_reduce, types.ModuleType: module_reduce}, cloudpickle.Pickler.dispatch_table
        )

        def __init__(
            self,
            file: Any,
            protocol: int,
            buffer_callback: Any,
            reducers: dict[type, Callable[[Any], Any]] | None = None,
        ) -> None:
            if reducers:  # read by the pickler as it starts: set on the instance before
                self.__dict__["dispatch_table"] = ChainMap(reducers, MainPickler.dispatch_table)
            super().__init__(file, protocol=protocol, buffer_callback=buffer_callback)
            self._namespace = _Namespace(os.getpid())

        def _dynamic_function_reduce(self, func: types.FunctionType) -> tuple[Any, ...]:
            if not _is_main_function(func):
                return super()._dynamic_function_reduce(func)  # type: ignore[no-any-return]
            code = func.__code__
            closure = None
            if func.__closure__ is not None:
                closure = tuple(cp._make_empty_cell() for _ in code.co_freevars)
            state, slotstate = cp._function_getstate(func)
            used = slotstate.pop("__globals__")
            tokened = {name: (_token(name, value), value) for name, value in used.items()}
            extra = (tokened, os.getpid(), code.co_filename, _source_of(code.co_filename))
            return (
                _make_function,
                (code, self._namespace, None, None, closure),
                (state, slotstate, extra),
                None,
                None,
                _set_main_function_state,
            )

    return MainPickler


def dumps_by_value(
    obj: object,
    buffer_callback: Any = None,
    protocol: int = PROTOCOL,
    reducers: dict[type, Callable[[Any], Any]] | None = None,
) -> bytes:
    """Pickle with cloudpickle, ``__main__`` objects by value into a lasting namespace;
    ``reducers`` reduce objects of their exact type first."""
    with io.BytesIO() as file:
        _pickler()(file, protocol, buffer_callback, reducers).dump(obj)
        return file.getvalue()


def dumps(obj: object, protocol: int = PROTOCOL, buffer_callback: Any = None) -> bytes:
    """Pickle ``obj``: the standard pickler when it can, by value when it must.

    By value when the standard pickler fails (lambdas, closures) or when its pickle
    names something in ``__main__``, which the worker's ``__main__`` does not have.
    """
    try:
        blob = pickle.dumps(obj, protocol, buffer_callback=buffer_callback)
    except Exception:
        return dumps_by_value(obj, buffer_callback, protocol)
    if _MARK in blob:
        return dumps_by_value(obj, buffer_callback, protocol)
    return blob


# -- the worker's side --------------------------------------------------------------

#: The globals of ``__main__`` functions, in a process that is not their caller.
_NAMESPACE: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
#: name -> token of the value last set from the caller.
_seen: dict[str, tuple[int, int]] = {}
_seen_lock = threading.Lock()


def _namespace_for(origin: int) -> dict[str, Any]:
    if origin == os.getpid():
        main = _main_dict()
        if main is not None:
            return main
    return _NAMESPACE


def _make_code(*args: Any) -> types.CodeType:
    """A code object from cloudpickle's reduction of it (without importing cloudpickle)."""
    return types.CodeType(*args)


def _make_function(
    code: types.CodeType, globals: dict[str, Any], name: str | None, argdefs: Any, closure: Any
) -> types.FunctionType:
    """A function from its code, in ``globals`` (the worker's side of `_pickler`)."""
    globals.setdefault("__builtins__", builtins)
    return types.FunctionType(code, globals, name, argdefs, closure)


def _set_main_function_state(func: types.FunctionType, state: tuple[Any, ...]) -> None:
    inner, slotstate, (tokened, origin, filename, source) = state
    if origin != os.getpid():
        namespace = func.__globals__
        with _seen_lock:
            for name, (token, value) in tokened.items():
                if _seen.get(name) != token or name not in namespace:
                    namespace[name] = value
                    _seen[name] = token
        if source is not None and filename not in linecache.cache:
            linecache.cache[filename] = (sum(map(len, source)), None, source, filename)
    func.__dict__.update(inner)
    closure = slotstate.pop("__closure__")
    slotstate.pop("_cloudpickle_submodules", None)
    if closure is not None:
        for i, cell in enumerate(closure):
            with contextlib.suppress(ValueError):  # an empty cell stays empty
                func.__closure__[i].cell_contents = cell.cell_contents  # type: ignore[index]
    for key, value in slotstate.items():
        setattr(func, key, value)


# -- starting workers without the main script ----------------------------------------

_local = threading.local()
_patched = False
_patch_lock = threading.Lock()


def _install() -> None:
    global _patched
    with _patch_lock:
        if _patched:
            return
        import multiprocessing.spawn as spawn

        original: Callable[[str], dict[str, Any]] = spawn.get_preparation_data

        def get_preparation_data(name: str) -> dict[str, Any]:
            data = original(name)
            if getattr(_local, "active", False):
                data.pop("init_main_from_path", None)
                data.pop("init_main_from_name", None)
            return data

        spawn.get_preparation_data = get_preparation_data
        _patched = True


@contextlib.contextmanager
def without_main() -> Iterator[None]:
    """Start processes in this block without importing the main script in them.

    multiprocessing's spawn and forkserver start methods make every new process import
    the caller's ``__main__`` again, running a script's unguarded top-level code there.
    fanmap's workers need nothing from it (the pickler sends what they use), so the
    instruction is left out for them, and only for them.
    """
    _install()
    previous = getattr(_local, "active", False)
    _local.active = True
    try:
        yield
    finally:
        _local.active = previous
