"""Large buffers through shared memory: pickled once per object, mapped read-only, freed."""

from __future__ import annotations

import os

import pytest

from fanmap._bigargs import Inbound, Outbound

np = pytest.importorskip("numpy")


def test_a_large_array_travels_as_a_read_only_view_and_is_freed() -> None:
    array = np.arange(300_000, dtype=np.float64)  # 2.4 MB
    outbound = Outbound()
    data, descriptors = outbound.dumps({"a": array, "small": 1})
    assert len(descriptors) == 1
    assert len(data) < 10_000  # the buffer is not in the pickle
    name = descriptors[0][0]
    assert os.path.exists(f"/dev/shm/{name}")
    inbound = Inbound()
    back = inbound.loads(data, descriptors)
    assert back["small"] == 1
    assert np.array_equal(back["a"], array)
    assert not back["a"].flags.writeable
    _, same = outbound.dumps(array)
    assert same == descriptors  # the same object reuses its segment
    del back
    inbound.release()
    outbound.release()
    assert not os.path.exists(f"/dev/shm/{name}")


def test_small_buffers_stay_in_the_pickle() -> None:
    outbound = Outbound()
    data, descriptors = outbound.dumps(np.arange(10))
    assert descriptors == []
    assert list(Inbound().loads(data, descriptors)) == list(range(10))


def test_a_shared_array_and_any_view_of_it_travel_by_name_alone() -> None:
    import gc

    from fanmap import share

    before = set(_placed_names())
    table = share(np.arange(60.0).reshape(6, 10))  # small: shared arrays go by name at any size
    [placed] = set(_placed_names()) - before
    name = f"/dev/shm/{placed}"
    outbound, inbound = Outbound(), Inbound()
    views = [table, table[2:4], table.T, table[:, ::3], table[::-2, 1:8:2], table[0]]
    for view in views:
        data, descriptors = outbound.dumps({"v": view})
        assert [d[0] for d in descriptors] == [placed]  # no segment of the run
        back = inbound.loads(data, descriptors)["v"]
        assert back.shape == view.shape
        assert np.array_equal(back, view)
        assert not back.flags.writeable
        del back
    assert outbound._segments == {}
    inbound.release()
    del table, view, views
    gc.collect()
    assert not os.path.exists(name)  # freed with the last view


def test_a_copy_of_a_shared_array_is_an_ordinary_array() -> None:
    from fanmap import share

    table = share(np.arange(10.0))
    _, descriptors = Outbound().dumps(table[::2].copy())
    assert descriptors == []  # small, and its own memory: in the pickle
    del table


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1.0, 2.0], "not a list: pass np.asarray"),
        (np.ma.masked_array([1.0], mask=[1]), "not a MaskedArray: pass x.view"),
        (np.array([1, None], dtype=object), "dtype object"),
    ],
)
def test_share_refuses_what_it_cannot_place_and_leaves_nothing(value: object, message: str) -> None:
    from fanmap import share

    before = set(os.listdir("/dev/shm"))
    with pytest.raises(TypeError, match=message):
        share(value)  # type: ignore[arg-type]
    assert set(os.listdir("/dev/shm")) == before


def _placed_names() -> list[str]:
    from fanmap import _bigargs

    return [name for _, name, _ in _bigargs._placed.values()]


def test_a_strided_shared_view_in_an_object_pickled_by_value_travels_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataclasses
    import sys

    from fanmap import share

    # A class of __main__ (as a script's would be) is pickled by value, by cloudpickle.
    Box = dataclasses.make_dataclass("Box", [("v", object)])
    Box.__module__ = "__main__"
    monkeypatch.setattr(sys.modules["__main__"], "Box", Box, raising=False)
    table = share(np.zeros((100, 50)))
    outbound = Outbound()
    data, descriptors = outbound.dumps(Box(table[::2]))
    assert len(descriptors) == 1
    assert len(data) < 10_000  # the view is not in the pickle
    back = Inbound().loads(data, descriptors)
    assert back.v.shape == (50, 50)
    assert not back.v.flags.writeable
    outbound.release()


def test_an_array_that_is_not_over_a_buffer_does_not_spoil_the_message() -> None:
    from numpy.lib.stride_tricks import as_strided

    from fanmap import share

    keep = share(np.ones(4))  # any shared array turns the shared-view path on
    windows = as_strided(np.arange(10.0), shape=(8, 3), strides=(8, 8))
    outbound = Outbound()
    data, descriptors = outbound.dumps((np.zeros(300_000), windows))
    assert len(descriptors) == 1  # the big array still goes by shared memory
    big, back = Inbound().loads(data, descriptors)
    assert not big.flags.writeable
    assert np.array_equal(back, windows)
    outbound.release()
    del keep


def test_what_the_standard_pickler_refuses_still_sends_big_arrays_by_shared_memory() -> None:
    outbound = Outbound()
    data, descriptors = outbound.dumps((lambda x: x, np.zeros(300_000)))
    assert len(descriptors) == 1
    fn, big = Inbound().loads(data, descriptors)
    assert fn(3) == 3
    assert not big.flags.writeable
    outbound.release()
