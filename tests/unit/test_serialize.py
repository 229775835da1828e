"""Pickling for workers: the fast path, by-value fallbacks, and messages naming what failed."""

from __future__ import annotations

import pickle
import threading

from fanmap._mainmod import dumps
from fanmap._serialize import describe, find_unpicklable, find_unpicklable_capture, short_repr


def test_plain_data_takes_the_standard_pickler() -> None:
    data = {"a": [1, 2.5, "x"], "b": (None, True)}
    assert dumps(data) == pickle.dumps(data, pickle.HIGHEST_PROTOCOL)


def test_what_only_cloudpickle_can_send_goes_by_value() -> None:
    offset = 3
    blob = dumps(lambda x: x + offset)
    assert pickle.loads(blob)(1) == 4


def test_find_unpicklable_names_the_parameter_or_the_keyword() -> None:
    gen = (i for i in range(3))
    found = find_unpicklable((1, gen), {}, ["a", "b"])
    assert found is not None
    assert found[0] == "argument b"
    assert found[1] is gen
    assert find_unpicklable((gen,), {}, None) is not None
    assert find_unpicklable((gen,), {}, None)[0] == "argument at position 0 (counting from 0)"  # type: ignore[index]
    lock = threading.Lock()
    found = find_unpicklable((1,), {"guard": lock})
    assert found is not None
    assert found[0] == "keyword argument guard="
    assert find_unpicklable((1, "x"), {"k": 2}) is None
    assert list(gen) == [0, 1, 2]  # the user's generator was not drained


def test_find_unpicklable_capture_names_a_closure_variable() -> None:
    lock = threading.Lock()

    def uses() -> bool:
        return lock.locked()

    found = find_unpicklable_capture(uses)
    assert found is not None
    assert found[0] == "lock"


def test_messages_name_types_and_keep_reprs_short() -> None:
    assert describe(iter([])) == "a list_iterator object"
    assert describe(object()) == "an object object"
    assert len(short_repr(list(range(1000)))) < 40
