"""Set up once per worker, then call many times: fanmap's @per_worker beside the peers.

    python -m benchmarks.per_worker [--repeats N]

Each contender loads a "model" that takes 0.3 s to make, once per worker, then runs
2,000 calls of 1 ms of work that use it, on 2 workers (fork), from a cold start (a new
pool each repetition). Ratios are against the fastest contender of the run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from benchmarks._common import machine, median, table, timed, versions

SETUP = 0.3
CALL = 0.001
CALLS = 2000
WORKERS = 2

_MODEL: dict[str, float] | None = None


def load_model() -> dict[str, float]:
    time.sleep(SETUP)
    return {"weight": 2.0}


def _work(x: int, model: dict[str, float]) -> float:
    end = time.perf_counter() + CALL
    while time.perf_counter() < end:
        pass
    return x * model["weight"]


def _initializer() -> None:
    global _MODEL
    _MODEL = load_model()


def _with_global(x: int) -> float:
    assert _MODEL is not None
    return _work(x, _MODEL)


def run_fanmap() -> None:
    import fanmap
    from fanmap import parallel, per_worker

    @per_worker(model=load_model)
    def score(x: int, *, model: dict[str, float]) -> float:
        return _work(x, model)

    fn = parallel(score, workers=WORKERS, start_method="fork")
    assert len(fn.map(range(CALLS))) == CALLS
    fanmap.shutdown()


def run_pool() -> None:
    with multiprocessing.get_context("fork").Pool(WORKERS, initializer=_initializer) as pool:
        assert len(pool.map(_with_global, range(CALLS), chunksize=16)) == CALLS


def run_executor() -> None:
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(WORKERS, mp_context=context, initializer=_initializer) as ex:
        assert len(list(ex.map(_with_global, range(CALLS), chunksize=16))) == CALLS


def _mpire_init(worker_state: dict[str, Any]) -> None:
    worker_state["model"] = load_model()


def _mpire_task(worker_state: dict[str, Any], x: int) -> float:
    return _work(x, worker_state["model"])


def run_mpire() -> None:
    from mpire import WorkerPool

    with WorkerPool(WORKERS, use_worker_state=True, start_method="fork") as pool:
        assert len(pool.map(_mpire_task, range(CALLS), worker_init=_mpire_init)) == CALLS


CONTENDERS: dict[str, Callable[[], None]] = {
    "fanmap @per_worker": run_fanmap,
    "Pool(initializer=...)": run_pool,
    "ProcessPoolExecutor(initializer=...)": run_executor,
    "mpire worker_state": run_mpire,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    available = dict(CONTENDERS)
    try:
        import mpire  # noqa: F401
    except ImportError:
        del available["mpire worker_state"]
    for _ in range(args.repeats):  # interleaved, so that drift hits every contender alike
        for name, run in available.items():
            samples[name].append(timed(run))
    ideal = SETUP + CALLS * CALL / WORKERS
    medians = {name: median(samples[name]) for name in available}
    best = min(medians.values())
    rows = [
        [name, f"{seconds:.3f} s", f"{ideal / seconds:.0%}", f"{seconds / best:.2f}x"]
        for name, seconds in sorted(medians.items(), key=lambda kv: kv[1])
    ]
    print(f"setup {SETUP} s per worker, {CALLS} calls of {CALL * 1000:.0f} ms, {WORKERS} workers, fork;")
    print(f"median of {args.repeats} interleaved runs; ideal {ideal:.2f} s; {machine()}")
    print(versions("mpire"))
    print(table(["contender", "wall time", "of ideal", "vs fastest"], rows))


if __name__ == "__main__":
    main()
