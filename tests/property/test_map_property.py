"""Hypothesis: for any input and options, map is builtins.map (a multiset when unordered)."""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fanmap import Failure, parallel
from tests import funcs
from tests.conftest import BACKENDS

ONE_ARG: list[Callable[[Any], Any]] = [funcs.square, abs, str, funcs.identity, operator.neg]
TWO_ARGS: list[Callable[[Any, Any], Any]] = [operator.add, funcs.add, max]

options = st.fixed_dictionaries(
    {
        "backend": st.sampled_from(BACKENDS),
        "workers": st.integers(1, 3),
        "ordered": st.booleans(),
        "chunksize": st.none() | st.integers(1, 40),
    }
)
ints = st.lists(st.integers(-1000, 1000), max_size=300)
common = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(result: list[Any], expected: list[Any], ordered: bool) -> bool:
    return result == expected if ordered else Counter(map(repr, result)) == Counter(map(repr, expected))


@common
@given(fn=st.sampled_from(ONE_ARG), items=ints, opts=options, as_iterator=st.booleans())
def test_map_equals_builtin_map(
    fn: Callable[[Any], Any], items: list[int], opts: dict[str, Any], as_iterator: bool
) -> None:
    pf = parallel(fn, **opts)
    source = iter(items) if as_iterator else items
    assert same(pf.map(source), list(map(fn, items)), opts["ordered"])


@common
@given(fn=st.sampled_from(TWO_ARGS), a=ints, b=ints, opts=options)
def test_map_of_two_iterables_zips_like_builtin_map(
    fn: Callable[[Any, Any], Any], a: list[int], b: list[int], opts: dict[str, Any]
) -> None:
    pf = parallel(fn, **opts)
    assert same(pf.map(a, b), list(map(fn, a, b)), opts["ordered"])


@common
@given(items=ints, opts=options)
def test_imap_equals_builtin_map(items: list[int], opts: dict[str, Any]) -> None:
    pf = parallel(funcs.square, **opts)
    expected = list(map(funcs.square, items))
    assert list(pf.imap(iter(items))) == expected
    assert Counter(pf.imap_unordered(iter(items))) == Counter(expected)


@common
@given(items=ints, bad=st.integers(-1000, 1000), opts=options)
def test_error_policies_keep_every_other_result(items: list[int], bad: int, opts: dict[str, Any]) -> None:
    pf = parallel(funcs.fail_on, **opts)
    # map is typed list[R]; under on_error="return" an element may be a Failure.
    returned: list[object] = list(pf.options(on_error="return").map(items, bad=bad))
    failed = [r for r in returned if isinstance(r, Failure)]
    assert len(failed) == items.count(bad)
    assert all(f.args == (bad,) and items[f.index] == bad for f in failed)
    good = [x for x in items if x != bad]
    assert same([r for r in returned if not isinstance(r, Failure)], good, opts["ordered"])
    assert same(pf.options(on_error="skip").map(items, bad=bad), good, opts["ordered"])
