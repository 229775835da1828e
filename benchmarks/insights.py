"""What ``fanmap.insights()`` costs: the same maps with and without it, in one run.

    python -m benchmarks.insights [--repeats N] [--save]

``--save`` writes the medians to benchmarks/results/insights.json, which the docs quote
(the suite checks that they do).

1. 200,000 calls of ``x * 2`` on 2 workers (the per-call throughput scenario): tiny
   calls, timed chunk by chunk.
2. 2,000 calls of 1 ms of work on 2 workers: calls slow enough to be timed one by one.

Warm pools, interleaved runs, medians; the ratio is "with insights" over "without".
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import machine, median, table, timed, versions
from benchmarks.workloads import double

TINY = 200_000
SLOW = 2_000
RESULTS = Path(__file__).parent / "results" / "insights.json"


def busy_ms(x: int) -> int:
    end = time.perf_counter() + 0.001
    while time.perf_counter() < end:
        pass
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--save", action="store_true", help="write benchmarks/results/insights.json")
    args = parser.parse_args()
    import fanmap
    from fanmap import parallel

    print(f"median of {args.repeats} interleaved runs; {machine()}")
    print(versions("fanmap"))
    rows = []
    saved: dict[str, Any] = {"machine": machine(), "versions": versions("fanmap"), "repeats": args.repeats}
    cases: list[tuple[str, Callable[[int], int], int]] = [
        (f"{TINY:,} calls of x * 2", double, TINY),
        (f"{SLOW:,} calls of 1 ms", busy_ms, SLOW),
    ]
    for name, fn, n in cases:
        pf = parallel(fn, workers=2, start_method="fork")
        items = list(range(n))
        pf.map(items)  # warm

        def plain(pf: fanmap.ParallelFunction[[int], int] = pf, items: list[int] = items) -> object:
            return pf.map(items)

        def observed(pf: fanmap.ParallelFunction[[int], int] = pf, items: list[int] = items) -> object:
            with fanmap.insights():
                return pf.map(items)

        without: list[float] = []
        with_: list[float] = []
        for _ in range(args.repeats):
            without.append(timed(plain))
            with_.append(timed(observed))
        a, b = median(without), median(with_)
        rows.append([name, f"{a:.4f} s", f"{b:.4f} s", f"{b / a:.3f}x"])
        saved["tiny" if fn is double else "slow"] = {"without": a, "with": b}
        fanmap.shutdown()
    print(table(["map", "without insights", "with insights", "with / without"], rows))
    if args.save:
        RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
        print(f"saved to {RESULTS}")


if __name__ == "__main__":
    main()
