"""Async functions the async tests map: importable by workers under every start method.

Concurrency is proven with barriers, never with durations: a call waits until a number
of calls is in flight at once (counted in its worker, or with files across workers),
and fails after a generous bound if that never happens.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from fanmap import Value
from tests import funcs

#: Seconds a barrier waits at most before it fails the call (it did not hang).
BOUND = 60.0

# In-flight calls of this worker process (or thread's loop), by map token.
_in_flight: dict[str, int] = {}
_peak: dict[str, int] = {}
_full: dict[str, asyncio.Event] = {}


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


async def in_worker_barrier(x: int, *, token: str, k: int) -> tuple[int, int]:
    """Wait until ``k`` calls of this map are in flight in this worker; return (x, pid)."""
    _in_flight[token] = _in_flight.get(token, 0) + 1
    _peak[token] = max(_peak.get(token, 0), _in_flight[token])
    full = _full.setdefault(token, asyncio.Event())
    if _in_flight[token] >= k:
        full.set()
    try:
        await asyncio.wait_for(full.wait(), BOUND)
    finally:
        _in_flight[token] -= 1
    return x, os.getpid()


async def files_barrier(x: int, *, folder: str, n: int) -> int:
    """Write a file, then wait until ``n`` calls (in any worker) have written theirs."""
    Path(folder, f"in-{x}").write_text(str(os.getpid()))
    deadline = time.monotonic() + BOUND
    while len(list(Path(folder).glob("in-*"))) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(Path(folder).glob('in-*')))} of {n} calls came")
        await asyncio.sleep(0.01)
    return os.getpid()


async def kill_after_barrier(x: int, *, folder: str, n: int, bad: int) -> int:
    """Once ``n`` calls are in flight, item ``bad`` kills its worker."""
    pid = await files_barrier(x, folder=folder, n=n)
    if x == bad:
        await asyncio.sleep(0.2)  # let the other calls reach their next await
        os.kill(os.getpid(), signal.SIGKILL)
    await asyncio.sleep(0.5 if x != bad else 0)
    return pid


async def slow_on(x: int, *, bad: int, seconds: float = 3600.0) -> int:
    await asyncio.sleep(seconds if x == bad else 0.01)
    return os.getpid()


async def blocks_loop_on(x: int, *, bad: int) -> int:
    if x == bad:
        time.sleep(30)  # a blocking call in a coroutine: the loop stops
    await asyncio.sleep(0.2)
    return os.getpid()


async def counted_forever(x: int, *, started: Value[int], folder: str) -> int:
    """Count the start and note the worker's pid, then wait (until cancelled)."""
    Path(folder, str(os.getpid())).write_text("")
    started.add(1)
    await asyncio.sleep(3600)
    return x


async def fails_once(x: int, *, folder: str) -> int:
    marker = Path(folder, f"tried-{x}")
    if not marker.exists():
        marker.write_text("")
        raise ValueError(f"first try of {x}")
    return x


async def raises_inside(x: int) -> int:
    await asyncio.sleep(0)
    return await _deeper(x)


async def _deeper(x: int) -> int:
    raise KeyError(f"missing {x}")


async def wait_for_file(x: int, *, path: str) -> int:
    deadline = time.monotonic() + BOUND
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        await asyncio.sleep(0.005)
    return x


def plain_wait_for_file(x: int, *, path: str) -> int:
    deadline = time.monotonic() + BOUND
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)
    return x


async def with_session(x: int, *, session: dict[str, Any]) -> tuple[int, int, bool]:
    """(x, the pid the session was made in, whether it was made in this call's loop)."""
    await asyncio.sleep(0)
    return x, session["pid"], session["id"] == id(asyncio.get_running_loop())


async def open_session(folder: str) -> Any:
    """An async generator factory: set up in the worker's loop, torn down at its end."""
    loop = asyncio.get_running_loop()
    session = {"pid": os.getpid(), "id": id(loop)}
    Path(folder, f"open-{os.getpid()}-{id(session)}").write_text("")
    yield session
    assert asyncio.get_running_loop() is loop
    Path(folder, f"close-{os.getpid()}-{id(session)}").write_text("")


async def bump(x: int, *, hits: Value[int]) -> int:
    await asyncio.sleep(0)
    hits.add(1)
    return x


async def logged_fails_on(x: int, *, folder: str, bad: int) -> int:
    """Note each call in a file; fail on ``bad`` while the file ``fix`` is missing."""
    Path(folder, f"call-{x}-{time.monotonic_ns()}").write_text("")
    await asyncio.sleep(0)
    if x == bad and not Path(folder, "fix").exists():
        raise ValueError(f"item {x} fails")
    return 2 * x


def plain_wait_on(x: int, *, bad: int, path: str) -> int:
    """Item ``bad`` waits for the file ``path``; the others return at once."""
    if x == bad:
        plain_wait_for_file(x, path=path)
    return x


async def add_later(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


async def awaits_a_cancelled_future(x: int) -> int:
    """Item 2 awaits a future that something else cancelled: the call fails with it."""
    if x == 2:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        future.cancel()
        return await future
    await asyncio.sleep(0)
    return x


def counted_nap(x: int, *, started: Value[int]) -> int:
    started.add(1)
    time.sleep(0.5)
    return x


async def return_unpickles_badly(x: int) -> Any:
    """An async call whose result for 1 pickles in the worker but not back in the caller."""
    await asyncio.sleep(0)
    return funcs.UnpicklesBadly() if x == 1 else x
