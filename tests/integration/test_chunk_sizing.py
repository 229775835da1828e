"""Chunk sizes on real worker processes: what the sizer learns from the workers."""

from __future__ import annotations

import time
from typing import Any

import fanmap
from fanmap import parallel


def _built(i: int) -> SlowToUnpickle:
    time.sleep(0.002)  # in the worker, while it unpickles the chunk's items
    return SlowToUnpickle(i)


class SlowToUnpickle:
    """An item that takes 2 ms to rebuild in the worker, and no time to call."""

    def __init__(self, i: int) -> None:
        self.i = i

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return _built, (self.i,)


def _index(item: SlowToUnpickle) -> int:
    return item.i


def _length(text: str) -> int:
    return len(text)


def test_a_workers_time_unpickling_items_counts_toward_the_size_of_its_chunks() -> None:
    # The calls take microseconds; unpickling each item, 2 ms. Sized by the calls alone,
    # the second chunk would hold 64 items (128 ms in one worker); by the worker's whole
    # time, a chunk holds at most 50 ms of it: 25 items.
    fn = parallel(_index, workers=2)
    with fanmap.insights() as seen:
        assert fn.map([SlowToUnpickle(i) for i in range(200)]) == list(range(200))
    chunks = seen.to_dict()["maps"][0]["chunks"]
    assert chunks["max"] <= 25, chunks
    fanmap.shutdown()


def test_chunks_of_large_items_stay_within_a_workers_spare_memory() -> None:
    # 2,000-character strings and fast calls: 10 ms of calls would be thousands of items
    # (megabytes that each worker page-faults in again for every chunk). A chunk's items
    # and results stay near 512 KiB: about 250 strings.
    fn = parallel(_length, workers=2)
    texts = [str(i).rjust(2000, "x") for i in range(20_000)]
    with fanmap.insights() as seen:
        assert fn.map(texts) == [2000] * 20_000
    chunks = seen.to_dict()["maps"][0]["chunks"]
    assert 64 <= chunks["max"] <= (512 * 1024) // 2000, chunks
    fanmap.shutdown()


def _first(row: Any) -> float:
    return float(row[0])


def test_arrays_in_shared_memory_do_not_count_as_pickled_bytes() -> None:
    import numpy as np

    # 1 MiB rows that reach the workers as views of shared memory: the chunk's pickle is a
    # few hundred bytes a row, and fast calls still go dozens to a chunk, not one by one.
    rows = fanmap.share(np.zeros((64, 1 << 17)))
    items = [rows[i % 64] for i in range(2000)]
    fn = parallel(_first, workers=2)
    with fanmap.insights() as seen:
        assert fn.map(items) == [0.0] * 2000
    chunks = seen.to_dict()["maps"][0]["chunks"]
    assert chunks["max"] >= 32, chunks  # by their whole size (1 MiB each), one a chunk
    del rows, items, seen  # the segment goes with the last view of it
    fanmap.shutdown()


def _slow_factory() -> int:
    time.sleep(0.5)
    return 3


def _times(x: int, *, k: int) -> int:
    return x * k


def test_a_per_worker_factorys_time_does_not_count_toward_chunk_sizes() -> None:
    from fanmap import per_worker

    # The factories run before the first chunk's calls; were their 0.5 s counted as that
    # chunk's, fast calls would then go one by one for a long while.
    fn = parallel(per_worker(k=_slow_factory)(_times), workers=2)
    with fanmap.insights() as seen:
        assert fn.map(range(20_000)) == [x * 3 for x in range(20_000)]
    chunks = seen.to_dict()["maps"][0]["chunks"]
    assert chunks["median"] > 1, chunks
    fanmap.shutdown()
