"""What a checkpoint costs: maps with and without ``checkpoint=``, beside joblib.Memory.

    python -m benchmarks.checkpoint [--repeats N]

Two workloads on 2 workers (fork): 100,000 calls of ``x * 2`` and 2,000 calls of 1 ms of
work. fanmap runs each without a checkpoint and with a new checkpoint file (everything
recorded); joblib runs the same function wrapped in ``joblib.Memory`` (a cache folder,
one entry per call) inside ``joblib.Parallel``. Medians of interleaved runs, as ratios
to fanmap without a checkpoint.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks._common import machine, median, table, timed, versions

WORKERS = 2


def double(x: int) -> int:
    return x * 2


def one_ms(x: int) -> int:
    end = time.perf_counter() + 0.001
    while time.perf_counter() < end:
        pass
    return x


def fanmap_plain(fn: Callable[[int], int], n: int, scratch: Path) -> None:
    from fanmap import parallel

    assert len(parallel(fn, workers=WORKERS, start_method="fork").map(range(n))) == n


def fanmap_checkpointed(fn: Callable[[int], int], n: int, scratch: Path) -> None:
    from fanmap import parallel

    path = scratch / f"ck-{time.monotonic_ns()}.sqlite"
    assert len(parallel(fn, workers=WORKERS, start_method="fork", checkpoint=path).map(range(n))) == n


def joblib_memory(fn: Callable[[int], int], n: int, scratch: Path) -> None:
    from joblib import Memory, Parallel, delayed

    memory = Memory(scratch / f"joblib-{time.monotonic_ns()}", verbose=0)
    cached = memory.cache(fn)
    assert len(Parallel(n_jobs=WORKERS)(delayed(cached)(x) for x in range(n))) == n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    contenders = {
        "fanmap": fanmap_plain,
        "fanmap checkpoint=": fanmap_checkpointed,
        "joblib.Parallel + joblib.Memory": joblib_memory,
    }
    try:
        import joblib  # noqa: F401
    except ImportError:
        del contenders["joblib.Parallel + joblib.Memory"]
    print(f"{WORKERS} workers, fork; median of {args.repeats} interleaved runs; {machine()}")
    print(versions("fanmap", "joblib"))
    fanmap_plain(double, 1000, Path("."))  # warm the pool once: every row then pays the same
    for title, fn, n in (("100,000 calls of x * 2", double, 100_000), ("2,000 calls of 1 ms", one_ms, 2_000)):
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        scratch = Path(tempfile.mkdtemp(prefix="fanmap-bench-"))
        try:
            for _ in range(args.repeats):
                for name, run in contenders.items():
                    samples[name].append(timed(functools.partial(run, fn, n, scratch)))
        finally:
            shutil.rmtree(scratch)
        base = median(samples["fanmap"])
        rows = [[name, f"{median(s):.3f} s", f"{median(s) / base:.2f}x"] for name, s in samples.items()]
        print(f"\n{title}\n")
        print(table(["contender", "time", "vs fanmap without checkpoint"], rows))


if __name__ == "__main__":
    main()
