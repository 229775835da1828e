"""Exceptions captured in one place and rebuilt in another, as between processes."""

from __future__ import annotations

import pickle
import traceback

from fanmap import RemoteError
from fanmap._traceback import capture, rebuild
from tests import funcs


def _raised(fn: object, *args: object) -> BaseException:
    try:
        fn(*args)  # type: ignore[operator]
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def _travel(exc: BaseException) -> BaseException:
    return rebuild(pickle.loads(pickle.dumps(capture(exc))))


def test_type_message_frames_and_notes_survive() -> None:
    original = _raised(funcs.fail_on, 3)
    original.add_note("a note")
    back = _travel(original)
    assert type(back) is funcs.CustomError
    assert str(back) == "bad item 3"
    assert back.__notes__ == ["a note"]
    names = [f.name for f in traceback.extract_tb(back.__traceback__)]
    assert names == [f.name for f in traceback.extract_tb(original.__traceback__)]


def test_explicit_cause_survives() -> None:
    back = _travel(_raised(funcs.chained, 1))
    assert isinstance(back.__cause__, KeyError)
    assert back.__context__ is back.__cause__
    assert back.__suppress_context__


def test_cause_without_context() -> None:
    exc = ValueError("outer")
    exc.__cause__ = KeyError("inner")
    exc.__suppress_context__ = True
    back = _travel(exc)
    assert isinstance(back.__cause__, KeyError)
    assert back.__context__ is None


def test_implicit_context_survives() -> None:
    def inner() -> None:
        try:
            raise OSError("first")
        except OSError:
            raise RuntimeError("second")  # noqa: B904 - the implicit context is the point

    back = _travel(_raised(inner))
    assert isinstance(back.__context__, OSError)
    assert back.__cause__ is None
    assert not back.__suppress_context__


def test_an_exception_with_its_own_init_is_rebuilt_without_calling_it() -> None:
    back = _travel(_raised(funcs.raise_unrebuildable, 1))
    assert isinstance(back, funcs.NeedsTwoArgs)
    assert str(back) == "1/2"
    assert back.__traceback__ is not None


def test_unpicklable_exception_becomes_remote_error() -> None:
    back = _travel(_raised(funcs.raise_unpicklable, 1))
    assert isinstance(back, RemoteError)
    assert "lock" in back.reason


def test_a_chain_that_loops_is_cut() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    back = _travel(a)
    depth = 0
    while back.__context__ is not None:
        back, depth = back.__context__, depth + 1
    assert depth <= 17
