"""Shared helpers for the benchmarks: timing, medians, machine facts, tables."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


def compile_fanmap() -> None:
    """Compile fanmap's modules to bytecode, as pip does when it installs a package.

    An editable install (this repository's) compiles on first import, unless
    ``PYTHONDONTWRITEBYTECODE`` is set: then every spawned worker would compile fanmap's
    modules again (some 20 ms here), which no installed fanmap does, while the peers'
    modules come compiled. Python still ignores a compiled file older than its source.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("fanmap")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            compileall.compile_dir(folder, quiet=1)


compile_fanmap()


def timed(fn: Callable[[], Any]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def versions(*packages: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> dict[str, Any]:
    return {
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render a markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def descendants(pid: int) -> list[int]:
    """The live processes started by ``pid``, and by them, and so on (Linux: /proc)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == parent and fields[0] != "Z":
                found.append(int(entry))
                todo.append(int(entry))
    return found
