"""The Dask backend beside the process backend and joblib's Dask backend.

Run: .venv/bin/python -m benchmarks.dask_compare [--items N] [--repeats R]

One LocalCluster of 2 single-threaded worker processes serves both Dask contenders;
the process backend runs its own 2 workers. Scenarios: per-call overhead (`x * 2` over
a list) and CPU-bound work (calls of about 5 ms of pure Python). Medians of interleaved
repeats.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from benchmarks import workloads
from benchmarks._common import machine, median, table, timed, versions
from benchmarks.suite import _calibrate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import distributed
    from joblib import Parallel, delayed, parallel_config

    from fanmap import DaskBackend, _pools, parallel

    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
    )
    client = distributed.Client(cluster)  # the default client: joblib's Dask backend uses it
    iterations = _calibrate(0.005)
    overhead_items = list(range(args.items))
    cpu_items = [iterations] * args.calls

    def fanmap_dask(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        out: list[Any] = parallel(fn, backend=DaskBackend(client)).map(items)
        return out

    def fanmap_process(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        out: list[Any] = parallel(fn, workers=2).map(items)
        return out

    def joblib_dask(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        with parallel_config(backend="dask"):
            return list(Parallel()(delayed(fn)(x) for x in items))

    contenders = {
        "fanmap, backend=DaskBackend(client)": fanmap_dask,
        "fanmap, process backend": fanmap_process,
        "joblib, Dask backend": joblib_dask,
    }
    scenarios = {
        "overhead": (workloads.double, overhead_items),
        "cpu": (workloads.cpu_work, cpu_items),
    }
    serial = median(
        [
            timed(functools.partial(lambda: [workloads.cpu_work(x) for x in cpu_items]))
            for _ in range(args.repeats)
        ]
    )
    times: dict[str, dict[str, list[float]]] = {s: {c: [] for c in contenders} for s in scenarios}
    for run in contenders.values():  # warm every contender up once
        for fn, items in scenarios.values():
            run(fn, items[:100])
    for r in range(args.repeats):
        order = list(contenders.items())
        order = order[r % len(order) :] + order[: r % len(order)]
        for scenario, (fn, items) in scenarios.items():
            for name, run in order:
                times[scenario][name].append(timed(functools.partial(run, fn, items)))
    rows = []
    for name in contenders:
        over = median(times["overhead"][name])
        cpu = median(times["cpu"][name])
        rows.append([name, f"{args.items / over / 1e3:,.0f} k", f"{cpu:.3f} s", f"{serial / cpu:.2f}x"])
    print(f"{machine()}  {versions('fanmap', 'distributed', 'dask', 'joblib')}\n")
    print(
        f"overhead: {args.items:,} calls of `x * 2`; cpu: {args.calls} calls of about 5 ms "
        f"(serial loop: {serial:.3f} s); median of {args.repeats}.\n"
    )
    print(table(["contender", "overhead: calls/s", "cpu: time", "cpu: speedup vs serial"], rows))
    _pools.shutdown()
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
