"""fanmap.Executor beside ProcessPoolExecutor and loky's reusable executor.

    python -m benchmarks.executor [--repeats N]

Two scenarios on 2 workers (fork): ``submit`` of 20,000 tiny calls collected with
``as_completed``, and ``executor.map`` of 200,000 tiny calls (chunksize 1,000). Each
contender makes its executor anew for every measurement (start included), and the
contenders are interleaved; the table gives medians and ratios to the fastest.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import multiprocessing
from collections.abc import Callable
from typing import Any

from benchmarks._common import machine, median, table, timed, versions

WORKERS = 2
SUBMITS = 20_000
MAPPED = 200_000


def double(x: int) -> int:
    return x * 2


def _fanmap() -> Any:
    from fanmap import Executor

    return Executor(max_workers=WORKERS, mp_context=multiprocessing.get_context("fork"))


def _stdlib() -> Any:
    return cf.ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("fork"))


def _loky() -> Any:
    from loky import get_reusable_executor

    return get_reusable_executor(max_workers=WORKERS)


def submit_all(make: Callable[[], Any]) -> None:
    ex = make()
    futures = [ex.submit(double, i) for i in range(SUBMITS)]
    assert sum(f.result() for f in cf.as_completed(futures)) == SUBMITS * (SUBMITS - 1)
    ex.shutdown(wait=True)


def map_all(make: Callable[[], Any]) -> None:
    ex = make()
    assert sum(ex.map(double, range(MAPPED), chunksize=1000)) == MAPPED * (MAPPED - 1)
    ex.shutdown(wait=True)


CONTENDERS: dict[str, Callable[[], Any]] = {
    "fanmap.Executor": _fanmap,
    "ProcessPoolExecutor": _stdlib,
    "loky reusable executor": _loky,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    available = dict(CONTENDERS)
    try:
        import loky  # noqa: F401
    except ImportError:
        del available["loky reusable executor"]
    print(f"{WORKERS} workers, fork; median of {args.repeats} interleaved runs; {machine()}")
    print(versions("fanmap", "loky"))
    for title, scenario, calls in (
        (f"submit + as_completed, {SUBMITS:,} calls", submit_all, SUBMITS),
        (f"executor.map, {MAPPED:,} calls, chunksize 1,000", map_all, MAPPED),
    ):
        samples: dict[str, list[float]] = {name: [] for name in available}
        for _ in range(args.repeats):
            for name, make in available.items():
                samples[name].append(timed(functools.partial(scenario, make)))
        medians = {name: median(s) for name, s in samples.items()}
        best = min(medians.values())
        rows = [
            [name, f"{seconds:.3f} s", f"{calls / seconds / 1000:.0f} k/s", f"{best / seconds:.2f}x"]
            for name, seconds in sorted(medians.items(), key=lambda kv: kv[1])
        ]
        print(f"\n{title}\n")
        print(table(["contender", "time", "calls/s", "vs fastest"], rows))


if __name__ == "__main__":
    main()
