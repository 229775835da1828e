"""Checked by mypy --strict, never run: what the types of the public API must be."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from typing import assert_type

import fanmap
from fanmap import Args, ParallelFunction, parallel, pmap


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

# These must stay errors.
square("x")  # type: ignore[arg-type]
square(1, 2)  # type: ignore[call-arg]
square.submit("x")  # type: ignore[arg-type]
square.options(wokers=2)  # type: ignore[call-arg]
square.options(on_error="ignore")  # type: ignore[arg-type]
parallel(workers="4")  # type: ignore[call-overload]
pmap(str.upper, [1])  # type: ignore[arg-type]
fanmap.config(ordered="yes")  # type: ignore[arg-type]
