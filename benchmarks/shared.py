"""Shared state and large inputs, beside the peers.

Run: .venv/bin/python -m benchmarks.shared [--increments N] [--repeats R]

1. Increments per second from 2 worker processes: fanmap's Value.add, a compound
   update of fanmap's Manager-backed Dict under its lock, and a raw
   multiprocessing.Value updated under its own lock (handed over by a Pool initializer).
2. One 200 MB NumPy array given to 16 calls that each sum it, on 2 workers: wall time
   and the peak memory of all processes together (PSS, with shared memory counted once
   from the machine's total; sampled every 10 ms) above what the caller held before,
   for fanmap (the array as it is, and placed in shared memory beforehand with
   fanmap.share), multiprocessing.Pool.map, joblib and mpire. Each contender runs in a
   fresh interpreter.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from typing import Any

from benchmarks._common import machine, median, table, versions

WORKERS = 2
CALLS = 16
SIZE = 25_000_000  # float64: 200 MB


# -- increments ------------------------------------------------------------------------


def _fanmap_value(n: int) -> float:
    from fanmap import Value, parallel, shared_state

    counter: Value[int] = Value("q", 0)

    def bump(k: int, *, counter: Value[int]) -> None:
        for _ in range(k):
            counter.add(1)

    pf = parallel(shared_state(counter=counter)(bump), workers=WORKERS, start_method="fork", chunksize=1)
    pf.map([1, 1])
    began = time.perf_counter()
    pf.map([n // WORKERS] * WORKERS)
    took = time.perf_counter() - began
    assert counter.value == n - n % WORKERS + 2
    return n / took


def _fanmap_dict(n: int) -> float:
    from fanmap import Dict, parallel, shared_state

    seen: Dict[str, int] = Dict({"n": 0})

    def bump(k: int, *, seen: Dict[str, int]) -> None:
        for _ in range(k):
            with seen.lock:
                seen["n"] = seen["n"] + 1

    pf = parallel(shared_state(seen=seen)(bump), workers=WORKERS, start_method="fork", chunksize=1)
    pf.map([1, 1])
    began = time.perf_counter()
    pf.map([n // WORKERS] * WORKERS)
    took = time.perf_counter() - began
    assert seen["n"] == n - n % WORKERS + 2
    return n / took


_raw: Any = None


def _init_raw(value: Any) -> None:
    global _raw
    _raw = value


def _bump_raw(k: int) -> None:
    for _ in range(k):
        with _raw.get_lock():
            _raw.value += 1


def _raw_value(n: int) -> float:
    ctx = multiprocessing.get_context("fork")
    value = ctx.Value("q", 0)
    with ctx.Pool(WORKERS, initializer=_init_raw, initargs=(value,)) as pool:
        pool.map(_bump_raw, [1, 1], chunksize=1)
        began = time.perf_counter()
        pool.map(_bump_raw, [n // WORKERS] * WORKERS, chunksize=1)
        took = time.perf_counter() - began
    assert value.value == n - n % WORKERS + 2
    return n / took


# -- big array ------------------------------------------------------------------------


def _total(i: int, arr: Any) -> float:
    return float(arr.sum())


def _total_of(arr: Any) -> float:
    return float(arr.sum())


def _total_shared(arr: Any, i: int) -> float:
    return float(arr.sum())  # mpire passes its shared objects first


def _pss_kb(pid: int) -> int:
    """A process's proportional set size, less its share of shared-memory pages."""
    fields = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Pss_Shmem"):
                    fields[key] = int(rest.split()[0])
    except OSError:
        pass
    return fields.get("Pss", 0) - fields.get("Pss_Shmem", 0)


def _shmem_kb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1])
    return 0


def _memory_kb() -> int:
    """Memory held by this process tree: each process's PSS without shared memory, plus
    the machine's shared memory once. (Summing PSS alone overcounts shared pages while
    workers are mapping them: a page read in one process before another maps it counts
    for more than its share.)"""
    return sum(_pss_kb(p) for p in _tree(os.getpid())) + _shmem_kb()


def _tree(pid: int) -> list[int]:
    out, todo = [pid], [pid]
    while todo:
        parent = todo.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as f:
                kids = [int(p) for p in f.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


class _Peak:
    """Samples the memory of this process tree (see `_memory_kb`) until stopped."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _memory_kb())
            time.sleep(0.01)

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _big_run(contender: str, size: int = SIZE) -> dict[str, float]:
    import numpy as np

    if contender == "fanmap.share":
        from fanmap import share

        big = share(np.ones(size))  # placed once, before the baseline: the array lives there
    else:
        big = np.ones(size)
    expected = float(size)
    baseline = _memory_kb()
    with _Peak() as peak:
        began = time.perf_counter()
        if contender in ("fanmap", "fanmap.share"):
            from fanmap import parallel

            out = parallel(_total, workers=WORKERS, start_method="fork").map(range(CALLS), arr=big)
        elif contender == "multiprocessing.Pool":
            with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
                out = pool.map(_total_of, [big] * CALLS)
        elif contender == "joblib":
            from joblib import Parallel, delayed

            out = Parallel(n_jobs=WORKERS)(delayed(_total)(i, big) for i in range(CALLS))
        elif contender == "mpire":
            from mpire import WorkerPool

            with WorkerPool(n_jobs=WORKERS, shared_objects=big, start_method="fork") as pool:
                out = pool.map(_total_shared, range(CALLS))
        took = time.perf_counter() - began
    assert out == [expected] * CALLS
    return {"seconds": took, "extra_mb": (peak.peak - baseline) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--increments", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big", metavar="CONTENDER", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=SIZE, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.big:
        print(json.dumps(_big_run(args.big, args.size)))
        return

    n = args.increments
    rates: dict[str, list[float]] = {
        "fanmap Value.add": [],
        "fanmap Dict under .lock": [],
        "raw multiprocessing.Value": [],
    }
    for _ in range(args.repeats):
        rates["fanmap Value.add"].append(_fanmap_value(n))
        rates["fanmap Dict under .lock"].append(_fanmap_dict(max(2000, n // 20)))
        rates["raw multiprocessing.Value"].append(_raw_value(n))
    best = median(rates["raw multiprocessing.Value"])
    rows = [[name, f"{median(r):,.0f}", f"{median(r) / best:.2f}x"] for name, r in rates.items()]
    print(f"{machine()}  {versions('fanmap', 'numpy', 'joblib', 'mpire')}\n")
    print(f"Increments per second from {WORKERS} worker processes (median of {args.repeats}):\n")
    print(table(["shared object", "increments/s", "vs raw multiprocessing.Value"], rows))

    print(
        f"\n{CALLS} calls each summing the same 200 MB array, {WORKERS} workers (median of {args.repeats}):\n"
    )
    big_rows = []
    for contender in ("fanmap", "fanmap.share", "joblib", "mpire", "multiprocessing.Pool"):
        runs = []
        for _ in range(args.repeats):
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.shared", "--big", contender],
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        big_rows.append(
            [
                contender,
                f"{median([r['seconds'] for r in runs]):.2f} s",
                f"{median([r['extra_mb'] for r in runs]):.0f} MB",
            ]
        )
    print(table(["contender", "wall time", "peak memory above the caller's (all processes)"], big_rows))


if __name__ == "__main__":
    main()
