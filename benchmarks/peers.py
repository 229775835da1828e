"""Each peer used the way its documentation recommends, behind one small interface."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from benchmarks import workloads

Fn = Callable[..., Any]


class Contender:
    """Opens a pool, maps over it, closes it."""

    name = ""
    ordered = True

    def __init__(self, workers: int, start_method: str = "fork") -> None:
        self.workers = workers
        self.start_method: Any = start_method  # a start method's name, checked by each peer

    def open(self) -> None:
        """Start the pool (the workers, where the peer starts them eagerly)."""

    def map(self, fn: Fn, items: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the pool."""

    def tuned_chunksize(self, n: int) -> int:
        return max(1, n // (4 * self.workers))


class Serial(Contender):
    name = "serial loop"

    def map(self, fn: Fn, items: Sequence[Any]) -> list[Any]:
        return [fn(x) for x in items]


class Fanmap(Contender):
    name = "fanmap"

    def open(self) -> None:
        from fanmap import parallel

        self._parallel = parallel
        # Start the workers now, like the pools that start eagerly.
        parallel(_noop, workers=self.workers, start_method=self.start_method).map([0])

    def map(self, fn: Fn, items: Sequence[Any]) -> list[Any]:
        pf = self._parallel(fn, workers=self.workers, start_method=self.start_method)
        result: list[Any] = pf.map(items)
        return result

    def close(self) -> None:
        from fanmap import _pools

        _pools.shutdown()


class FanmapPerWorker(Fanmap):
    """fanmap with a `@per_worker` value given to every call (``x * 2`` as ``x * factor``)."""

    name = "fanmap @per_worker"

    def map(self, fn: Fn, items: Sequence[Any]) -> list[Any]:
        from fanmap import per_worker

        assert fn is workloads.double, "this contender maps x * 2 only"
        pf = self._parallel(
            per_worker(factor=workloads.two)(workloads.double_with),
            workers=self.workers,
            start_method=self.start_method,
        )
        result: list[Any] = pf.map(items)
        return result


class FanmapInsights(Fanmap):
    """fanmap with every map inside ``fanmap.insights()``."""

    name = "fanmap in insights()"

    def map(self, fn: Fn, items: Sequence[Any]) -> list[Any]:
        from fanmap import insights

        with insights():
            return super().map(fn, items)


class FanmapCheckpoint(Fanmap):
    """fanmap recording every result in a new checkpoint file."""

    name = "fanmap checkpoint="

    def map(self, fn: Fn, items: Sequence[Any]) -> list[Any]:
        with tempfile.TemporaryDirectory() as folder:
            pf = self._parallel(
                fn,
                workers=self.workers,
                start_method=self.start_method,
                checkpoint=os.path.join(folder, "run.sqlite"),
            )
            result: list[Any] = pf.map(items)
            return result


class FanmapLazy(Fanmap):
    """fanmap as users write it: the first map starts the pool."""

    name = "fanmap"

    def open(self) -> None:
        from fanmap import parallel

        self._parallel = parallel


class PoolMap(Contender):
    name = "Pool.map"

    def open(self) -> None:
        self._pool = multiprocessing.get_context(self.start_method).Pool(self.workers)

    def map(self, fn: Fn, items: Sequence[Any]) -> list[Any]:
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()


class PoolImapUnordered(PoolMap):
    name = "Pool.imap_unordered"
    ordered = False

    def map(self, fn: Fn, items: Sequence[Any]) -> list[Any]:
        return list(self._pool.imap_unordered(fn, items, chunksize=self.tuned_chunksize(len(items))))


class Executor(Contender):
    name = "ProcessPoolExecutor(chunksize=1)"
    chunks = False

    def open(self) -> None:
        context = multiprocessing.get_context(self.start_method)
        self._ex = ProcessPoolExecutor(self.workers, mp_context=context)

    def map(self, fn: Fn, items: Sequence[Any]) -> list[Any]:
        chunksize = self.tuned_chunksize(len(items)) if self.chunks else 1
        return list(self._ex.map(fn, items, chunksize=chunksize))

    def close(self) -> None:
        self._ex.shutdown(wait=True, cancel_futures=True)


class ExecutorTuned(Executor):
    name = "ProcessPoolExecutor(tuned)"
    chunks = True


class Joblib(Contender):
    name = "joblib"
    ordered = False

    def open(self) -> None:
        from joblib import Parallel, delayed

        self._delayed = delayed
        self._parallel = Parallel(n_jobs=self.workers, return_as="generator_unordered")

    def map(self, fn: Fn, items: Sequence[Any]) -> list[Any]:
        return list(self._parallel(self._delayed(fn)(x) for x in items))


class Loky(Contender):
    name = "loky"

    def open(self) -> None:
        from loky import get_reusable_executor

        self._ex = get_reusable_executor(max_workers=self.workers)

    def map(self, fn: Fn, items: Sequence[Any]) -> list[Any]:
        return list(self._ex.map(fn, items, chunksize=self.tuned_chunksize(len(items))))

    def close(self) -> None:
        self._ex.shutdown(wait=True)


class Mpire(Contender):
    name = "mpire"

    def open(self) -> None:
        from mpire import WorkerPool

        self._pool = WorkerPool(n_jobs=self.workers, start_method=self.start_method, keep_alive=True)

    def map(self, fn: Fn, items: Sequence[Any]) -> list[Any]:
        return list(self._pool.map(fn, items, progress_bar=False))

    def close(self) -> None:
        self._pool.terminate()


class Pebble(Contender):
    name = "pebble"

    def open(self) -> None:
        from pebble import ProcessPool

        context = multiprocessing.get_context(self.start_method)
        self._pool = ProcessPool(max_workers=self.workers, context=context)

    def map(self, fn: Fn, items: Sequence[Any]) -> list[Any]:
        future = self._pool.map(fn, items, chunksize=self.tuned_chunksize(len(items)))
        return list(future.result())

    def close(self) -> None:
        self._pool.stop()
        self._pool.join()


def _noop(x: Any) -> Any:
    return x


PEERS: tuple[type[Contender], ...] = (
    PoolMap,
    PoolImapUnordered,
    Executor,
    ExecutorTuned,
    Joblib,
    Loky,
    Mpire,
    Pebble,
)


def contenders(names: Iterable[type[Contender]], workers: int, start_method: str = "fork") -> list[Contender]:
    return [cls(workers, start_method) for cls in names]
