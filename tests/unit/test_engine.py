"""The engine's own decisions: chunk sizes, ordering, windows, sources."""

from __future__ import annotations

import itertools

from fanmap._config import resolve
from fanmap._engine import _Orderer
from fanmap._sizing import Sizer as _Sizer
from fanmap._sources import Source


def test_first_chunks_probe_with_one_item() -> None:
    sizer = _Sizer(resolve({"workers": 2}), 2, 1000)
    assert sizer.size(0, None) == 1


def test_fast_calls_are_batched_and_growth_is_gradual() -> None:
    sizer = _Sizer(resolve({"workers": 2}), 2, None)
    sizer.size(0, None)
    sizer.measure(1, 1e-7)
    sizes = [sizer.size(0, None) for _ in range(4)]
    assert sizes == [64, 4096, 65536, 65536]  # 64-fold steps, up to 10 ms of work or 2**16 items


def test_chunks_shrink_toward_the_end_of_known_input() -> None:
    sizer = _Sizer(resolve({"workers": 2}), 2, 100_000)
    sizer.measure(1000, 0.01)  # 10 us a call
    sizer.last = 100_000
    assert sizer.size(0, None) == 5000  # far from the end: 50 ms of work
    assert sizer.size(60_000, None) == 2500  # 1/8 of a worker's share of what is left
    assert sizer.size(96_000, None) == 1000  # 10 ms of work
    assert sizer.size(99_000, None) == 250  # a quarter of what is left per worker...
    assert sizer.size(99_900, None) == 200  # ...but never under 2 ms of work


def test_long_maps_of_calls_of_a_few_ms_take_fewer_round_trips() -> None:
    sizer = _Sizer(resolve({"workers": 2}), 2, 400)
    sizer.measure(2, 0.01)  # 5 ms a call
    sizes, position = [], 0
    while position < 400:
        sizes.append(sizer.size(position, None))
        position += sizes[-1]
    assert sizes[0] == 10  # 50 ms of work, not 10 ms
    assert sizes == sorted(sizes, reverse=True)  # then shrinking...
    assert sizes[-1] == 1  # ...to one call at the end
    assert len(sizes) < 100  # chunks of 10 ms would take 200 round trips
    assert sizer.depth(0) == 2
    recorded = _Sizer(resolve({"workers": 2}), 2, 400, recorded=True)
    recorded.measure(2, 0.01)
    assert recorded.size(0, None) == 2  # a checkpoint's blocks stay at 10 ms of work
    lazy = _Sizer(resolve({"workers": 2}), 2, 400, lazy=True)
    lazy.measure(2, 0.01)
    assert lazy.size(0, None) == 2  # imap hands results on as they come: 10 ms
    dask = _Sizer(resolve({"workers": 2}), 2, 10_000, target=0.2)
    dask.measure(2, 0.02)
    dask.last = 100
    assert dask.size(0, None) == 20  # a pool's own longer target stays as it is


def test_slow_calls_go_one_by_one_and_are_queued_only_far_from_the_end() -> None:
    sizer = _Sizer(resolve({"workers": 2}), 2, 100)
    sizer.measure(1, 0.05)
    assert sizer.size(0, None) == 1
    assert sizer.depth(0) == 2  # 100 left: a queued call delays nobody
    assert sizer.depth(95) == 1  # 5 left: only a free worker gets one
    assert _Sizer(resolve({}), 2, None).depth(0) == 1  # nothing measured yet


def test_slow_calls_on_hundreds_of_workers_share_chunks_to_spare_the_caller() -> None:
    sizer = _Sizer(resolve({}), 256, None)
    sizer.measure(1, 0.01)
    assert sizer.size(0, None) == 7  # 256 workers / 10 ms a call = 25,600 calls/s: 7 a chunk
    sized = _Sizer(resolve({}), 256, 2000)
    sized.measure(1, 0.01)
    assert sized.size(0, None) == 4  # no more than 1 / (2 x 256) of what is left
    assert sized.size(1900, None) == 1  # near the end: one by one again
    few = _Sizer(resolve({}), 4, None)
    few.measure(1, 0.01)
    assert few.size(0, None) == 1  # 400 calls/s: one call a chunk


def test_a_shared_queue_always_holds_one_chunk_per_worker() -> None:
    sizer = _Sizer(resolve({}), 2, 100, shared=True)
    sizer.measure(1, 0.05)
    sizer.size(0, None)
    assert sizer.depth(95) == 2  # a chunk queued in a shared queue waits behind nobody
    assert _Sizer(resolve({}), 2, 100, shared=True).depth(0) == 2  # even before a measure
    assert _Sizer(resolve({}), 2, 100, shared=False).depth(0) == 1  # nothing measured yet


def test_unknown_length_slow_calls_are_not_queued() -> None:
    sizer = _Sizer(resolve({"workers": 2}), 2, None)
    sizer.measure(1, 0.05)
    sizer.size(0, None)
    assert sizer.depth(0) == 1


def test_fast_chunks_are_prefetched() -> None:
    sizer = _Sizer(resolve({"workers": 2}), 2, None)
    sizer.measure(100, 1e-5)
    sizer.size(0, None)
    assert sizer.depth(0) == 2


def test_fixed_chunksize_timeout_and_limit() -> None:
    assert _Sizer(resolve({"chunksize": 7}), 2, None).size(0, None) == 7
    assert _Sizer(resolve({"chunksize": 7, "timeout": 1}), 2, None).size(0, None) == 1
    assert _Sizer(resolve({"chunksize": 7}), 2, None).size(0, 3) == 3


def test_orderer_releases_in_input_order() -> None:
    orderer = _Orderer(True)
    assert orderer.push(2, ["c", "d"]) == []
    assert orderer.push(1, ["b"]) == []
    assert orderer.push(0, ["a"]) == [(0, ["a"]), (1, ["b"]), (2, ["c", "d"])]
    assert orderer.push(4, ["e"]) == [(4, ["e"])]
    assert orderer.pending == {}


def test_unordered_orderer_releases_at_once() -> None:
    assert _Orderer(False).push(5, ["x"]) == [(5, ["x"])]


def test_sequences_are_sliced_not_copied_and_iterators_are_read_lazily() -> None:
    source = Source(range(10))
    assert source.total == 10
    assert source.take(4, True) == range(4)
    assert source.take(100, True) == range(4, 10)
    assert source.take(1, True) is None
    counter = itertools.count()
    lazy = Source(counter)
    assert lazy.total is None
    assert lazy.take(3, True) == [0, 1, 2]
    assert next(counter) == 3  # nothing read beyond what was taken


def test_chunks_of_pickled_items_stay_within_what_a_worker_holds_without_page_faults() -> None:
    sizer = _Sizer(resolve({"workers": 2}), 2, 1_000_000)
    sizer.measure(1000, 1e-4, pickled=1000 * 200)  # 100 ns a call; 200 bytes an item and result
    sizer.last = 100_000
    assert sizer.size(0, None) == (1 << 19) // (200 + 64)  # 1,985: not 500,000 (50 ms of work)
    threads = _Sizer(resolve({"workers": 2}), 2, 1_000_000)
    threads.measure(1000, 1e-4)  # nothing pickled: nothing is allocated again in a worker
    threads.last = 100_000
    assert threads.size(0, None) == 65_536  # 10 ms of work, up to 2**16 items
