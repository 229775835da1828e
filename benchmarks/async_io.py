"""Processes x coroutines, and maps awaited from async code, beside the peers.

    python -m benchmarks.async_io [--repeats N] [--save]

``--save`` writes the medians to benchmarks/results/async_io.json, which the docs quote
(the suite checks that they do).

1. 10,000 calls of ``await asyncio.sleep(0.01)``, 2 processes x 64 coroutines: fanmap
   beside aiomultiprocess (same processes, same concurrency), fanmap's thread backend
   with 128 threads calling ``time.sleep(0.01)``, and one process running
   ``asyncio.gather`` under a semaphore of 128. The ideal is 10,000 x 0.01 / 128 s.
2. The cost per result of ``async for r in f.aimap(...)`` over 100,000 tiny calls of a
   plain function (2 processes), beside ``loop.run_in_executor`` on a
   ``ProcessPoolExecutor`` of 2 (one future per call, awaited together).

Pools are warm (each started and used once before timing); medians of interleaved runs.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import json
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import machine, median, table, timed, versions

CALLS = 10_000
NAP = 0.01
PROCESSES = 2
COROUTINES = 64
TINY = 100_000
RESULTS = Path(__file__).parent / "results" / "async_io.json"


async def anap(x: int) -> int:
    await asyncio.sleep(NAP)
    return x


def nap(x: int) -> int:
    time.sleep(NAP)
    return x


def double(x: int) -> int:
    return 2 * x


async def _gathered(n: int, limit: int) -> list[int]:
    semaphore = asyncio.Semaphore(limit)

    async def one(x: int) -> int:
        async with semaphore:
            return await anap(x)

    return list(await asyncio.gather(*(one(x) for x in range(n))))


def _nap_case(repeats: int, saved: dict[str, Any]) -> list[list[object]]:
    from aiomultiprocess import Pool

    from fanmap import parallel

    fan = parallel(anap, workers=PROCESSES, concurrency=COROUTINES, start_method="fork")
    threads = parallel(nap, backend="thread", workers=PROCESSES * COROUTINES)
    fan.map(range(256))  # warm
    threads.map(range(256))

    async def aiomp() -> list[int]:
        async with Pool(processes=PROCESSES, childconcurrency=COROUTINES) as pool:
            await pool.map(anap, range(256))  # its pool lives for one block: warm it there
            began = time.perf_counter()
            out: list[int] = await pool.map(anap, range(CALLS))
            aiomp_seconds.append(time.perf_counter() - began)
            return out

    aiomp_seconds: list[float] = []
    runs: dict[str, Callable[[], object]] = {
        "fanmap (2 processes x 64 coroutines)": lambda: fan.map(range(CALLS)),
        "fanmap thread backend (128 threads, time.sleep)": lambda: threads.map(range(CALLS)),
        "asyncio.gather, one process, Semaphore(128)": lambda: asyncio.run(_gathered(CALLS, 128)),
    }
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            samples[key].append(timed(run))
        multiprocessing.set_start_method("fork", force=True)
        asyncio.run(aiomp())
    samples["aiomultiprocess (2 processes x 64 coroutines)"] = aiomp_seconds
    ideal = CALLS * NAP / (PROCESSES * COROUTINES)
    ours = median(samples["fanmap (2 processes x 64 coroutines)"])
    saved["sleep"] = {"ideal": ideal, "seconds": {k: median(v) for k, v in samples.items()}}
    rows: list[list[object]] = []
    for key, values in samples.items():
        seconds = median(values)
        rows.append([key, f"{seconds:.3f} s", f"{seconds / ideal:.2f}x", f"{seconds / ours:.2f}x"])
    print(f"\n{CALLS} calls of sleep({NAP}); ideal {ideal:.3f} s")
    print(table(["", "time", "of the ideal", "vs fanmap"], rows))
    return rows


def _tiny_case(repeats: int, saved: dict[str, Any]) -> None:
    from fanmap import parallel

    fan = parallel(double, workers=PROCESSES, start_method="fork")
    executor = cf.ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("fork"))

    async def streamed() -> int:
        return sum([r async for r in fan.aimap(range(TINY))])

    async def run_in_executor() -> int:
        loop = asyncio.get_running_loop()
        futures = [loop.run_in_executor(executor, double, x) for x in range(TINY)]
        return sum(await asyncio.gather(*futures))

    asyncio.run(streamed())  # warm
    list(executor.map(double, range(100)))
    samples: dict[str, list[float]] = {"fanmap aimap (async for)": [], "run_in_executor + gather": []}
    for _ in range(repeats):
        samples["fanmap aimap (async for)"].append(timed(lambda: asyncio.run(streamed())))
        samples["run_in_executor + gather"].append(timed(lambda: asyncio.run(run_in_executor())))
    executor.shutdown()
    ours = median(samples["fanmap aimap (async for)"])
    saved["tiny"] = {"calls": TINY, "seconds": {k: median(v) for k, v in samples.items()}}
    rows = [
        [key, f"{median(v):.3f} s", f"{median(v) / TINY * 1e6:.1f} µs", f"{median(v) / ours:.2f}x"]
        for key, v in samples.items()
    ]
    print(f"\n{TINY} tiny calls (x * 2) of a plain function, awaited from async code, 2 processes")
    print(table(["", "time", "per result", "vs fanmap"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--save", action="store_true", help="write benchmarks/results/async_io.json")
    args = parser.parse_args()
    import fanmap

    print(f"median of {args.repeats} interleaved runs; {machine()}")
    print(versions("fanmap", "aiomultiprocess"))
    saved: dict[str, Any] = {"machine": machine(), "versions": versions("fanmap", "aiomultiprocess")}
    saved["repeats"] = args.repeats
    _nap_case(args.repeats, saved)
    _tiny_case(args.repeats, saved)
    fanmap.shutdown()
    if args.save:
        RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
        print(f"saved to {RESULTS}")


if __name__ == "__main__":
    main()
