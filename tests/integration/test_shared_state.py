"""Shared state across real worker processes, threads and the caller."""

from __future__ import annotations

import queue
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fanmap
from fanmap import (
    Array,
    Dict,
    List,
    Queue,
    SerializationError,
    SharedStateError,
    Value,
    parallel,
    shared_state,
)
from tests import funcs


def test_no_update_is_lost_under_every_start_method(start_method: Any) -> None:
    before = funcs.COUNTER.value
    hist_before = funcs.HIST.tolist()
    pf = funcs.count_everything.options(start_method=start_method, chunksize=1)
    assert pf.map(range(400)) == list(range(400))
    assert funcs.COUNTER.value - before == 400
    assert [a - b for a, b in zip(funcs.HIST.tolist(), hist_before, strict=True)] == [50] * 8
    assert sum(funcs.SEEN.values()) == funcs.COUNTER.value


def test_many_adds_from_many_workers_give_the_exact_total(local_backend: Any) -> None:
    counter = Value("q", 0)
    bump = shared_state(counter=counter)(funcs.bump_many)
    pf = parallel(bump, workers=2, backend=local_backend, chunksize=1)
    pf.map([2000] * 8)
    assert counter.value == 16_000


def test_the_lost_update_that_add_prevents_is_real() -> None:
    # Shows what .add() is for: a read and a write apart lose updates across processes.
    counter = Value("q", 0)
    pf = parallel(shared_state(counter=counter)(funcs.bump_unsafely), workers=2, chunksize=1)
    pf.map([20_000] * 4)
    assert counter.value <= 80_000  # usually far less; never more


def test_compound_update_under_the_dict_lock(start_method: Any) -> None:
    seen: Dict[str, int] = Dict()

    def tally(x: int, *, seen: Dict[str, int]) -> None:
        with seen.lock:
            seen["n"] = seen.get("n", 0) + 1

    pf = parallel(shared_state(seen=seen)(tally), workers=2, start_method=start_method, chunksize=1)
    pf.map(range(200))
    assert seen["n"] == 200


def test_decorator_order_does_not_matter() -> None:
    # @shared_state above @parallel
    before = funcs.add_to_total.state.total.value
    funcs.add_to_total.map([1.5] * 10)
    assert funcs.add_to_total.state.total.value == before + 15.0
    # and the plain call gets the object too
    assert funcs.add_to_total(1.0) == before + 16.0  # type: ignore[call-arg]


def test_queue_and_list_between_workers_and_caller(local_backend: Any) -> None:
    out: Queue[int] = Queue()
    log: List[int] = List()
    pf = parallel(shared_state(out=out, log=log)(funcs.produce), workers=2, backend=local_backend)
    pf.map(range(5))
    got = sorted(out.get(timeout=10) for _ in range(5))
    assert got == [0, 1, 4, 9, 16]
    assert sorted(log) == [0, 1, 2, 3, 4]
    with pytest.raises(queue.Empty):
        out.get_nowait()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 4), st.integers(-50, 50)), max_size=30), min_size=1, max_size=12
    ),
    backend=st.sampled_from(["process", "thread", "serial"]),
)
def test_array_updates_match_a_serial_model(batches: list[list[tuple[int, int]]], backend: Any) -> None:
    array = Array("q", 5)
    pf = parallel(shared_state(array=array)(funcs.apply_updates), workers=2, backend=backend, chunksize=1)
    pf.map(batches)
    model = [0] * 5
    for batch in batches:
        for index, amount in batch:
            model[index] += amount
    assert array.tolist() == model


def test_unknown_parameter_is_refused_at_decoration() -> None:
    with pytest.raises(SharedStateError, match=r"has no parameter 'hitz'.*parameters are: n, counter"):
        shared_state(hitz=Value("i", 0))(funcs.bump_many)
    with pytest.raises(SharedStateError, match="no parameter 'hitz'"):
        shared_state(hitz=Value("i", 0))(parallel(funcs.bump_many))


def test_only_shared_objects_are_accepted() -> None:
    with pytest.raises(TypeError, match="takes a fanmap Value, Array, Dict, List or Queue, not int"):
        shared_state(counter=3)


def test_a_shared_object_passed_as_an_argument_is_refused() -> None:
    counter = Value("i", 0)
    with pytest.raises(SerializationError, match=r"through @shared_state"):
        parallel(funcs.identity, workers=1).map([counter])


def test_state_given_twice_is_refused() -> None:
    counter = Value("i", 0)
    pf = parallel(shared_state(counter=counter)(funcs.bump_many), workers=1)
    with pytest.raises(SharedStateError, match="'counter' is shared state"):
        pf.map([1], counter=counter)


def test_a_backend_that_cannot_share_memory_refuses_before_any_work() -> None:
    # DaskBackend() opens nothing until a pool is leased: the refusal comes first.
    counter = Value("i", 0)
    pf = parallel(shared_state(counter=counter)(funcs.bump_many), backend=fanmap.DaskBackend())
    with pytest.raises(SharedStateError, match=r"dask backend cannot share memory.*process"):
        pf.map(iter([1]))


def test_only_built_in_backends_are_accepted() -> None:
    class Remote:
        name = "remote"

    with pytest.raises(TypeError, match=r"or a fanmap.DaskBackend\(...\), not"):
        parallel(funcs.bump_many, backend=cast(Any, Remote()))


def test_state_attribute() -> None:
    assert funcs.count_everything.state.counter is funcs.COUNTER
    with pytest.raises(AttributeError, match="no shared object named 'nope'; this function shares: counter"):
        _ = funcs.count_everything.state.nope
    with pytest.raises(AttributeError, match="has no shared state"):
        _ = parallel(funcs.square).state


def test_value_and_array_api() -> None:
    v = Value("d", 1.5)
    assert v.add(1) == 2.5
    assert v.update(lambda x: x * 2) == 5.0
    v.value = 7.0
    assert v.value == 7.0
    with v.lock:
        pass
    a = Array("i", [1, 2, 3])
    assert len(a) == 3
    assert a[1] == 2
    assert a[0:2] == [1, 2]
    a[2] = 10
    assert list(a) == [1, 2, 10]
    assert a.update(0, lambda x: x - 5) == -4
    assert repr(a) == "Array('i', [-4, 2, 10])"
    with pytest.raises(ValueError, match="typecode 'z' is not valid"):
        Value("z", 0)  # type: ignore[call-overload]


def test_array_numpy_view_is_zero_copy() -> None:
    np = pytest.importorskip("numpy")
    a = Array("d", 4)
    view = a.numpy()
    view[2] = 3.5
    assert a[2] == 3.5
    assert view.dtype == np.float64
