"""What the decorated function is and accepts, checked before any work starts.

``double.map(xs, ys)`` for a one-parameter function, or ``f.map(xs, chunksize=2)``
where ``chunksize`` was meant as fanmap's option, would otherwise fail in every worker,
once per item. Here they fail at once, with a message that says what to do. For mypy,
`Fn1` ... `Fn4` say what ``map`` with one to four iterables asks of the function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ._config import OPTION_NAMES

__all__ = ["Fn1", "Fn2", "Fn3", "Fn4", "check_call", "label_of", "refuse_async_generator", "signature_of"]

A1 = TypeVar("A1", contravariant=True)
A2 = TypeVar("A2", contravariant=True)
A3 = TypeVar("A3", contravariant=True)
A4 = TypeVar("A4", contravariant=True)
Rc = TypeVar("Rc", covariant=True)


# What `map` and friends ask of the function, for mypy: its first positional parameters
# take the items of the iterables, and it gives one result (for an async def function,
# what its coroutine returns: a ParallelFunction says so in ``_fanmap_result``).
# ``*args: Any, **kwargs: Any`` leaves the rest open (PEP 612's ``Concatenate[A1, ...]``),
# so that keyword-only parameters given by @shared_state or by the map's keywords do not
# get in the way.
class Fn1(Protocol[A1, Rc]):
    def _fanmap_result(self, a1: A1, /, *args: Any, **kwargs: Any) -> Rc: ...


class Fn2(Protocol[A1, A2, Rc]):
    def _fanmap_result(self, a1: A1, a2: A2, /, *args: Any, **kwargs: Any) -> Rc: ...


class Fn3(Protocol[A1, A2, A3, Rc]):
    def _fanmap_result(self, a1: A1, a2: A2, a3: A3, /, *args: Any, **kwargs: Any) -> Rc: ...


class Fn4(Protocol[A1, A2, A3, A4, Rc]):
    def _fanmap_result(self, a1: A1, a2: A2, a3: A3, a4: A4, /, *args: Any, **kwargs: Any) -> Rc: ...


#: The flag of a code object made by ``async def`` with ``yield`` (inspect.CO_ASYNC_GENERATOR).
_ASYNC_GENERATOR = 0x200


def label_of(fn: Callable[..., Any]) -> str:
    """A name for messages and progress bars: any callable has one."""
    if isinstance(fn, functools.partial):
        return f"partial({label_of(fn.func)})"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if isinstance(name, str):
        return name
    return f"{type(fn).__qualname__} object"


def refuse_async_generator(fn: Callable[..., Any]) -> None:
    """Refuse an async generator function: its calls give many values, not one result."""
    inner: Any = fn
    while isinstance(inner, functools.partial):
        inner = inner.func
    code = getattr(getattr(inner, "__wrapped__", inner), "__code__", None)
    if code is not None and code.co_flags & _ASYNC_GENERATOR:
        name = label_of(fn)
        raise TypeError(
            f"{name} is an async generator function (async def with yield); fanmap maps "
            f"functions that return one result per call: collect its values in an async def "
            f"function (return [v async for v in {name}(x)]) and map that"
        )


def signature_of(fn: Any) -> Any:
    """The function's `inspect.Signature`, or None when it has none to read."""
    import inspect  # here: slow to import, and never needed in a worker

    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins: trust the caller
        return None


def _takes_by_name(signature: Any, name: str) -> bool:
    import inspect

    parameter = signature.parameters.get(name)
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def _has_var_keywords(signature: Any) -> bool:
    import inspect

    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def check_call(
    signature: Any, label: str, positional: int | None, kwargs: dict[str, Any], injected: list[str], what: str
) -> None:
    """Raise TypeError if ``positional`` arguments per call and ``kwargs`` cannot fit.

    Args:
        signature: From `signature_of` (None: nothing is checked).
        label: The function's name, for the message.
        positional: Positional arguments every call gets (the number of iterables),
            or None when it varies (``starmap``): then only the keywords are checked.
        kwargs: The keywords given to the map, for every call.
        injected: Keywords fanmap adds itself (``@shared_state`` names).
        what: The method called, for the message.
    """
    if signature is None:
        return
    for name in kwargs:
        if name in OPTION_NAMES and not _takes_by_name(signature, name):
            where = (
                f"{label}() would get it in its **kwargs"
                if _has_var_keywords(signature)
                else f"{label}() has no parameter of that name"
            )
            raise TypeError(
                f"{name}={kwargs[name]!r} was given to {what}(), which passes its keywords to "
                f"every call, and {where}; {name} is an option of fanmap: set it with "
                f"{label}.options({name}={kwargs[name]!r}).{what}(...)"
            )
    every = {**kwargs, **dict.fromkeys(injected)}
    try:
        if positional is None:
            signature.bind_partial(**every)
        else:
            signature.bind(*range(positional), **every)
    except TypeError as exc:
        given = f"{positional} positional argument{'s' if positional != 1 else ''} per call" + (
            " (one from each iterable)" if positional is not None else ""
        )
        if positional is None:
            given = "its per-item arguments"
        keywords = f" and the keywords {', '.join(f'{k}=' for k in sorted(kwargs))}" if kwargs else ""
        raise TypeError(f"{what}() cannot call {label}{signature} with {given}{keywords}: {exc}") from None
