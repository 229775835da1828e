"""Checked by mypy --strict, never run: what the types of the public API must be."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from typing import assert_type

import fanmap
from fanmap import Args, Array, Dict, ParallelFunction, Value, parallel, pmap, shared_state


@parallel
def square(x: int) -> int:
    return x * x


@parallel(workers=4, ordered=False, timeout=30, on_error="return")
def fetch(url: str, *, retries: int = 3) -> bytes:
    return url.encode() * retries


as_declared: ParallelFunction[[int], int] = square
assert_type(square(3), int)
assert_type(square.map(range(3)), list[int])
assert_type(square.imap(range(3)), Iterator[int])
assert_type(square.imap_unordered(range(3)), Iterator[int])
assert_type(square.submit(7), Future[int])
narrower: ParallelFunction[[int], int] = square.options(workers=8, chunksize=64)
assert_type(fetch("x", retries=2), bytes)
assert_type(fetch.map(["a", "b"], retries=5), list[bytes])
assert_type(fetch.starmap([Args("a", retries=1)]), list[bytes])

pow_ = parallel(pow)
assert_type(pmap(str.upper, ["a"]), list[str])
assert_type(pmap(square, range(10)), list[int])
assert_type(pmap(divmod, [7], [2], workers=2), list[tuple[int, int]])
assert_type(pmap(lambda a, b, c: a + b + c, [1], [2], [3]), list[int])

with fanmap.config(backend="thread", workers=2):
    pass


@parallel
def add(a: int, b: int = 0, *, c: int = 0) -> int:
    return a + b + c


assert_type(add.map([1], [2]), list[int])
assert_type(add.map([1], c=3), list[int])
assert_type(add.imap([1], [2]), Iterator[int])
assert_type(add.starmap([(1, 2), Args(3, c=4), (5,)]), list[int])
assert_type(add.starmap([[1, 2]]), list[int])
assert_type(add.workers, int)


# DESIGN.md's shared-state example, with bare annotations.
@parallel(workers=4)
@shared_state(hits=Value("i", 0), hist=Array("d", 10), seen=Dict())
def crawl(url: str, *, hits: Value, hist: Array, seen: Dict) -> int:
    hits.add(1)
    hist.add(len(url) % 10, 1.0)
    with seen.lock:
        seen[url] = seen.get(url, 0) + 1
    return len(url)


assert_type(crawl.map(["a"]), list[int])
assert_type(parallel(crawl, backend=fanmap.DaskBackend()).map(["a"]), list[int])

# These must stay errors.
square("x")  # type: ignore[arg-type]
square(1, 2)  # type: ignore[call-arg]
square.submit("x")  # type: ignore[arg-type]
square.options(wokers=2)  # type: ignore[call-arg]
square.options(on_error="ignore")  # type: ignore[arg-type]
parallel(workers="4")  # type: ignore[call-overload]
pmap(str.upper, [1])  # type: ignore[arg-type]
fanmap.config(ordered="yes")  # type: ignore[arg-type]
square.map(["x"])  # type: ignore[list-item]
square.map([1], [2])  # type: ignore[call-overload]
add.starmap([("x", "y")])  # type: ignore[list-item]
crawl.map([1])  # type: ignore[list-item]
parallel(backend="gpu")  # type: ignore[call-overload]


# Async def functions: maps give what the coroutines return; a plain call, the coroutine.
@parallel(workers=2, concurrency=64)
async def download(url: str) -> bytes:
    return url.encode()


@parallel
async def aratio(a: int, b: int) -> float:
    return a / b


async def _from_async_code() -> None:
    assert_type(await download.amap(["a"]), list[bytes])
    assert_type(await square.amap(range(3)), list[int])
    assert_type(await aratio.amap([1], [2]), list[float])
    async for page in download.aimap(["a"]):
        assert_type(page, bytes)
    async for n in square.aimap_unordered(range(3)):
        assert_type(n, int)
    assert_type(await download.asubmit("a"), bytes)
    assert_type(await square.asubmit(2), int)
    assert_type(await download("a"), bytes)


as_async: fanmap.AsyncParallelFunction[[str], bytes] = download
assert_type(download.map(["a"]), list[bytes])
assert_type(aratio.map([1], [2]), list[float])
assert_type(download.imap(["a"]), Iterator[bytes])
assert_type(download.submit("a"), Future[bytes])
assert_type(download.options(concurrency=8).map(["a"]), list[bytes])
assert_type(pmap(download.__wrapped__, ["a"]), list[bytes])
