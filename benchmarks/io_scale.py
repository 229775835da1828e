"""Many workers on I/O-bound calls: fanmap's thread and process backends beside the stdlib.

    python -m benchmarks.io_scale [--repeats N]

2,000 calls of ``time.sleep(0.01)``: threads at 64 and 256 beside ``ThreadPoolExecutor``
with the same count, processes at 32 and 64 (fork) beside ``ProcessPoolExecutor``
(``chunksize=1``). Pools are warm; the ideal is 2,000 x 10 ms / workers. Medians of
interleaved runs; the order rotates every round.

The thread rows also show bare threads: the same number of threads, started beforehand,
each woken by its own queue and then pulling items from one shared iterator under a
lock, with no pool code at all; the last to finish wakes the caller. They are the
reference for what threads can do here: every call's thread needs the GIL once when its
sleep ends, and hundreds wake together.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks._common import machine, median, table, timed, versions

CALLS = 2000
NAP = 0.01


def nap(x: int) -> int:
    time.sleep(NAP)
    return x


HEADERS = [
    "backend",
    "workers",
    "ideal",
    "fanmap (of ideal)",
    "stdlib (of ideal)",
    "fanmap vs stdlib",
    "bare threads (of ideal)",
]

BARE = "bare threads"


class BareThreads:
    """Threads started beforehand that pull items from one iterator: no pool code at all."""

    def __init__(self, count: int) -> None:
        self._inboxes: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(count)]
        self._threads = [threading.Thread(target=self._serve, args=(q,), daemon=True) for q in self._inboxes]
        self._lock = threading.Lock()
        self._items: Any = iter(())
        self._results: list[Any] = []
        # The last thread to finish wakes the caller alone: a barrier would wake every
        # thread at once, and their race for the GIL would still run into the next
        # contender's measurement after this one's has ended.
        self._running = 0
        self._done = threading.Event()
        for t in self._threads:
            t.start()

    def _serve(self, inbox: queue.SimpleQueue[Any]) -> None:
        while inbox.get() is not None:
            while True:
                with self._lock:
                    x = next(self._items, None)
                if x is None:
                    break
                self._results[x] = nap(x)
            with self._lock:
                self._running -= 1
                if not self._running:
                    self._done.set()

    def map(self, count: int) -> list[Any]:
        self._items, self._results = iter(range(count)), [None] * count
        self._running = len(self._inboxes)
        self._done.clear()
        for inbox in self._inboxes:
            inbox.put(True)
        self._done.wait()
        return self._results

    def close(self) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
        for t in self._threads:
            t.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{CALLS} calls of sleep({NAP}); median of {args.repeats} interleaved runs; {machine()}")
    print(versions("fanmap"))
    rows, _ = measure(args.repeats)
    print(table(HEADERS, rows))


def measure(repeats: int) -> tuple[list[list[object]], dict[str, dict[str, float]]]:
    """Table rows, and the share of the ideal each got, by case (``thread-256``...)."""
    import fanmap
    from fanmap import parallel

    rows: list[list[object]] = []
    shares: dict[str, dict[str, float]] = {}
    cases: list[tuple[Any, int]] = [("thread", 64), ("thread", 256), ("process", 32), ("process", 64)]
    for backend, workers in cases:
        fn = parallel(nap, backend=backend, workers=workers, start_method="fork")
        fn.map(range(workers))  # warm
        if backend == "thread":
            peer: Any = cf.ThreadPoolExecutor(workers)
            name = "ThreadPoolExecutor"
        else:
            peer = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
            name = "ProcessPoolExecutor(chunksize=1)"
        list(peer.map(nap, range(workers)))  # warm
        runs: dict[str, Callable[[], object]] = {
            "fanmap": lambda fn=fn: fn.map(range(CALLS)),  # type: ignore[misc]
            name: lambda peer=peer: list(peer.map(nap, range(CALLS))),  # type: ignore[misc]
        }
        bare = BareThreads(workers) if backend == "thread" else None
        if bare is not None:
            bare.map(workers)  # warm
            runs[BARE] = lambda bare=bare: bare.map(CALLS)  # type: ignore[misc]
        samples: dict[str, list[float]] = {k: [] for k in runs}
        order = list(runs)
        for r in range(repeats):
            # Each contender in turn runs first, and after each of the others: one that
            # leaves threads busy past its end would slow the next, always the same one.
            for key in order[r % len(order) :] + order[: r % len(order)]:
                samples[key].append(timed(runs[key]))
        peer.shutdown()
        fanmap.shutdown()
        if bare is not None:
            bare.close()
        ideal = CALLS * NAP / workers
        ours, theirs = median(samples["fanmap"]), median(samples[name])
        shares[f"{backend}-{workers}"] = {"fanmap": ideal / ours, name: ideal / theirs}
        alone = f"{ideal / median(samples[BARE]):.0%}" if bare is not None else "—"
        if bare is not None:
            shares[f"{backend}-{workers}"][BARE] = ideal / median(samples[BARE])
        rows.append(
            [
                backend,
                workers,
                f"{ideal:.3f} s",
                f"{ours:.3f} s ({ideal / ours:.0%})",
                f"{name}: {theirs:.3f} s ({ideal / theirs:.0%})",
                f"{theirs / ours:.2f}x",
                alone,
            ]
        )
    return rows, shares


if __name__ == "__main__":
    main()
