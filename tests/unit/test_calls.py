"""The call loop every backend runs: each call made once, each failure by position."""

from __future__ import annotations

import functools
import keyword
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanmap import Args, _calls
from fanmap._args import CallMode, call_args
from fanmap._calls import Calls, _bound, call_chunk, callable_of


def half(x: int, *, by: int = 2) -> float:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x / by


def test_every_item_is_called_once_and_failures_keep_their_position() -> None:
    calls = Calls(half, CallMode.ONE, {"by": 4})
    results, errors, _ = call_chunk(calls, [4, -1, 8, -2])
    assert results == [1.0, None, 2.0, None]
    assert errors is not None
    assert sorted(errors) == [1, 3]
    assert str(errors[1]) == "negative: -1"


def test_nothing_failed_means_no_errors() -> None:
    assert call_chunk(Calls(half, CallMode.ONE, {}), [2, 4]) == ([1.0, 2.0], None, None)


def test_stop_on_error_ends_the_chunk_at_the_first_failure() -> None:
    results, errors, _ = call_chunk(Calls(half, CallMode.ONE, {}, stop_on_error=True), [2, -1, 4])
    assert results == [1.0, None]
    assert errors is not None
    assert list(errors) == [1]


def test_the_traceback_starts_at_the_users_function() -> None:
    _, errors, _ = call_chunk(Calls(half, CallMode.ONE, {}), [-1])
    assert errors is not None
    tb = errors[0].__traceback__
    assert tb is not None
    assert tb.tb_frame.f_code.co_name == "half"


def test_with_keywords_the_traceback_still_starts_at_the_users_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_calls, "_MAKERS", {})
    assert not isinstance(_bound(half, {"by": 3}), functools.partial)  # passed by name
    _, errors, _ = call_chunk(Calls(half, CallMode.ONE, {"by": 3}), [3, -1])
    assert errors is not None
    tb = errors[1].__traceback__
    assert tb is not None
    assert tb.tb_frame.f_code.co_name == "half"


def collect(x: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    return x, kwargs


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n) and n != "x"
)


@given(
    st.dictionaries(names | st.sampled_from(["class", "a-b", "_fanmap_fn", "é"]), st.integers(), max_size=5)
)
def test_keywords_reach_every_call_as_given(kwargs: dict[str, Any]) -> None:
    # Keywords that are names are passed by name by a compiled function; any others
    # (a Python keyword, a dash, one of that function's own names) through a partial.
    results, errors, _ = call_chunk(Calls(collect, CallMode.ONE, kwargs), [1, 2])
    assert errors is None
    assert results == [(1, kwargs), (2, kwargs)]
    assert _bound(collect, kwargs)(3) == (3, kwargs)


def test_star_and_args_modes() -> None:
    assert call_chunk(Calls(pow, CallMode.STAR, {}), [(2, 3), (3, 2)]) == ([8, 9], None, None)
    results, errors, _ = call_chunk(Calls(half, CallMode.ARGS, {"by": 1}), [(3,), Args(8, by=4), 7])
    assert results[:2] == [3.0, 2.0]
    assert errors is not None
    assert "this item is an int object: 7" in str(errors[2])
    assert errors[2].__context__ is None


def test_call_args_merges_keywords_and_explains_bad_items() -> None:
    assert call_args(CallMode.ARGS, Args(1, a=2), {"a": 0, "b": 1}) == ((1,), {"a": 2, "b": 1})
    assert call_args(CallMode.ONE, (1, 2), {}) == (((1, 2),), {})
    assert call_args(CallMode.ARGS, [1, 2], {}) == ((1, 2), {})


def test_callable_of_unwraps_a_decorated_object() -> None:
    class Decorated:
        __fanmap_call__ = staticmethod(half)

    assert callable_of(Decorated()) is half
    assert callable_of(half) is half


def test_timed_calls_give_each_calls_seconds_and_keep_positions() -> None:
    calls = Calls(half, CallMode.ONE, {"by": 4}, timed=True)
    results, errors, times = call_chunk(calls, [4, -1, 8])
    assert results == [1.0, None, 2.0]
    assert errors is not None
    assert list(errors) == [1]
    assert times is not None
    assert len(times) == 3
    assert all(t >= 0 for t in times)
    big = [4] * 1000  # a chunk of tiny calls is timed whole, not call by call
    assert call_chunk(calls, big)[2] is None
