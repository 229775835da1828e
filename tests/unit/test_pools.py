"""The warm-pool cache: lent for a run, given back, dropped when unusable, closed on shutdown."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from fanmap import _pools
from fanmap._config import Options, resolve


class CountingPool:
    def __init__(self) -> None:
        self.usable = True
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class CountingBackend:
    name = "counting"
    shares_memory = True

    def __init__(self) -> None:
        self.opened: list[CountingPool] = []

    def pool_key(self, options: Options) -> Hashable:
        return ("counting", id(self), options.workers)

    def open_pool(self, options: Options) -> CountingPool:
        pool = CountingPool()
        self.opened.append(pool)
        return pool


def test_a_pool_is_reused_while_usable_and_dropped_when_not() -> None:
    backend = CountingBackend()
    options = resolve({"workers": 2})
    with _pools.lease(backend, options) as first:  # type: ignore[arg-type]
        pass
    with _pools.lease(backend, options) as second:  # type: ignore[arg-type]
        assert second is first
    backend.opened[0].usable = False  # e.g. its Dask client closed
    with _pools.lease(backend, options) as third:  # type: ignore[arg-type]
        assert third is not first
    assert backend.opened[0].closed == 1
    _pools.shutdown()
    assert backend.opened[1].closed == 1


def test_two_overlapping_runs_get_two_pools() -> None:
    backend = CountingBackend()
    options = resolve({"workers": 2})
    with _pools.lease(backend, options) as a, _pools.lease(backend, options) as b:  # type: ignore[arg-type]
        assert a is not b
    _pools.shutdown()


def test_a_pool_that_fails_to_close_is_dropped_with_a_warning() -> None:
    class Broken(CountingPool):
        def close(self) -> None:
            raise ValueError("cannot close")

    class BrokenBackend(CountingBackend):
        def open_pool(self, options: Options) -> CountingPool:
            return Broken()

    with _pools.lease(BrokenBackend(), resolve({})):  # type: ignore[arg-type]
        pass
    with pytest.warns(UserWarning, match="did not close cleanly"):
        _pools.shutdown()


def test_shutdown_hooks_run() -> None:
    ran: list[int] = []
    _pools.on_shutdown(lambda: ran.append(1))
    try:
        _pools.shutdown()
    finally:
        _pools._on_shutdown.pop()
    assert ran == [1]
