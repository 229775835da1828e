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
