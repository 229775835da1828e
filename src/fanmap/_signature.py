"""Checks a map's call against the function's signature before any work starts.

``double.map(xs, ys)`` for a one-parameter function, or ``f.map(xs, chunksize=2)``
where ``chunksize`` was meant as fanmap's option, would otherwise fail in every worker,
once per item. Here they fail at once, with a message that says what to do.
"""

from __future__ import annotations

from typing import Any

from ._config import OPTION_NAMES

__all__ = ["check_call", "signature_of"]


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
        keywords = f" and the keywords {', '.join(sorted(kwargs))}" if kwargs else ""
        raise TypeError(f"{what}() cannot call {label}{signature} with {given}{keywords}: {exc}") from None
