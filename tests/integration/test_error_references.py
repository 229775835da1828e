"""A failed map on the process backend lets go of its keywords with its exception.

A rebuilt worker traceback used to lead, frame by frame (``f_back``), back to the map's
own frames and to the exception itself: a reference cycle that kept the map's items and
keywords (a shared array's segment among them) until Python's garbage collector next ran.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import fanmap
from tests import funcs
from tests.conftest import shm_segments


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _map(pf: Any, payload: funcs.Payload) -> Any:
    return pf.map(range(8), payload=payload)


def _starmap(pf: Any, payload: funcs.Payload) -> Any:
    return pf.starmap([(i,) for i in range(8)], payload=payload)


def _imap(pf: Any, payload: funcs.Payload) -> Any:
    return list(pf.imap(range(8), payload=payload))


def _imap_unordered(pf: Any, payload: funcs.Payload) -> Any:
    return list(pf.imap_unordered(range(8), payload=payload))


@pytest.mark.parametrize("run", [_map, _starmap, _imap, _imap_unordered])
def test_a_failed_maps_keywords_are_freed_with_its_exception(
    run: Callable[[Any, funcs.Payload], Any], no_collector: None
) -> None:
    pf = fanmap.parallel(funcs.fail_on_with, workers=2)
    payload = funcs.Payload(10)
    alive = weakref.ref(payload)
    with pytest.raises(funcs.CustomError, match="bad item 3 of 10") as caught:
        run(pf, payload)
    frames = []
    tb = caught.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "fail_on_with"  # the worker's frames came back
    del payload, caught, tb
    assert alive() is None, "the map's keyword outlived its exception (a reference cycle)"


def test_a_shared_array_is_freed_at_once_after_a_map_that_raised(no_collector: None) -> None:
    np = pytest.importorskip("numpy")
    arr = fanmap.share(np.ones(1000))
    alive = weakref.ref(arr)
    pf = fanmap.parallel(funcs.fail_on_with, workers=2)
    with pytest.raises(funcs.CustomError, match="bad item 3 of 1000"):
        pf.map(range(8), payload=arr)  # anything with a .size does
    segments = [n for n in shm_segments() if n.startswith("fanmap_")]
    assert segments  # the array's own
    del arr
    assert alive() is None
    assert not set(segments) & shm_segments()  # its segment went with it
