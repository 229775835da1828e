"""How far imap reads ahead: items pulled from a generator, and the caller's peak memory.

    python -m benchmarks.readahead

Consumes 100 results of 100 KB items, then 1,000 results of a two-stage pipeline over
an endless generator, on 2 workers; prints how many items each generator gave up and
the caller's peak resident memory.
"""

from __future__ import annotations

import itertools
import resource
from collections.abc import Iterator

from fanmap import parallel

_pulled = [0]


def _big() -> Iterator[bytes]:
    for _ in itertools.count():
        _pulled[0] += 1
        yield bytes(100_000)


def _ints() -> Iterator[int]:
    for i in itertools.count():
        _pulled[0] += 1
        yield i


def size(b: bytes) -> int:
    return len(b)


def inc(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return 2 * x


def main() -> None:
    results = parallel(size, workers=2).imap(_big())
    for _ in range(100):
        next(results)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"100 KB items, 100 results consumed: {_pulled[0]:,} items read, caller peak RSS {peak} MB")
    results.close()  # type: ignore[attr-defined]
    _pulled[0] = 0
    stages = parallel(double, workers=2).imap(parallel(inc, workers=2).imap(_ints()))
    for _ in range(1000):
        next(stages)
    print(f"two-stage pipeline, 1,000 results consumed: {_pulled[0]:,} items read")
    stages.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
