"""Per-call throughput of a tiny function: fanmap against multiprocessing.Pool.map.

Run: .venv/bin/python -m benchmarks.throughput [--items N] [--repeats R] [--workers W] [--list]

Both run 2 workers with fork on the same input; contenders are interleaved and the
median of the repeats is reported, warm (pool already started) and including start.
"""

from __future__ import annotations

import argparse
import multiprocessing

from benchmarks._common import machine, median, table, timed, versions
from fanmap import _pools, parallel


def double(x: int) -> int:
    return x * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--list", action="store_true", help="map over a list instead of a range")
    args = parser.parse_args()
    n, workers = args.items, args.workers
    items: range | list[int] = list(range(n)) if args.list else range(n)
    expected = [x * 2 for x in items]
    fan = parallel(double, workers=workers, start_method="fork")
    ctx = multiprocessing.get_context("fork")

    warm: dict[str, list[float]] = {"fanmap": [], "Pool.map": []}
    cold: dict[str, list[float]] = {"fanmap": [], "Pool.map": []}
    with ctx.Pool(workers) as pool:
        pool.map(double, [0])
        fan.map([0])
        for _ in range(args.repeats):
            warm["fanmap"].append(timed(lambda: fan.map(items)))
            warm["Pool.map"].append(timed(lambda: pool.map(double, items)))
    assert fan.map(items) == expected

    for _ in range(args.repeats):
        _pools.shutdown()
        cold["fanmap"].append(timed(lambda: fan.map(items)))

        def pool_once() -> None:
            with ctx.Pool(workers) as pool:
                pool.map(double, items)

        cold["Pool.map"].append(timed(pool_once))
    _pools.shutdown()

    rows = []
    for label, samples in (("warm", warm), ("including start", cold)):
        best = median(samples["Pool.map"])
        for name in ("fanmap", "Pool.map"):
            t = median(samples[name])
            rows.append([label, name, f"{t * 1000:.1f} ms", f"{n / t / 1e6:.2f} M/s", f"{best / t:.2f}x"])
    kind = "a list" if args.list else "a range"
    print(
        f"{n:,} calls of x * 2 over {kind} on {workers} workers (fork), median of {args.repeats}; {machine()}"
    )
    print(versions("fanmap"))
    print(table(["pool", "contender", "time", "calls/s", "vs Pool.map"], rows))


if __name__ == "__main__":
    main()
