"""The functions the benchmarks map: importable by every worker of every peer."""

from __future__ import annotations

import time
from typing import Any


def double(x: int) -> int:
    return x * 2


def two() -> int:
    """A per-worker factory: what a model loaded once per worker stands for."""
    return 2


def double_with(x: int, *, factor: int) -> int:
    return x * factor


def spin(seconds: float) -> float:
    """Pure-Python CPU work for about ``seconds`` (holds the GIL, like real Python code)."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return seconds


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def cpu_work(iterations: int) -> int:
    """A fixed amount of pure-Python work (deterministic, unlike a time-based spin)."""
    total = 0
    for i in range(iterations):
        total = (total + i * i) % 1_000_003
    return total


def fail_at(i: int, bad: int = 100, seconds: float = 0.001) -> int:
    if i == bad:
        raise ValueError(f"item {i} fails")
    spin(seconds)
    return i


def array_total(i: int, arr: Any) -> float:
    return float(arr.sum())


def array_total_first(arr: Any, i: int) -> float:
    return float(arr.sum())


def array_total_of(arr: Any) -> float:
    return float(arr.sum())
