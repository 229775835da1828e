"""fanmap demo: a CPU-bound job serially and in parallel, then a worker's real traceback."""

from __future__ import annotations

import sys
import time
import traceback

from fanmap import Failure, parallel


@parallel
def count_primes(bounds: tuple[int, int]) -> int:
    """Count the primes in [lo, hi) by trial division: honest CPU work."""
    lo, hi = bounds
    count = 0
    for n in range(max(lo, 2), hi):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return count


@parallel(workers=2)
def parse_price(text: str) -> float:
    return round(float(text.strip("$")) * 1.2, 2)


def main() -> None:
    step = 25_000
    ranges = [(lo, lo + step) for lo in range(0, 1_000_000, step)]

    began = time.perf_counter()
    serial = [count_primes(r) for r in ranges]
    serial_time = time.perf_counter() - began

    count_primes.map(ranges[:1])  # start the pool (the first call pays for it)
    began = time.perf_counter()
    fanned = count_primes.map(ranges)
    parallel_time = time.perf_counter() - began

    assert fanned == serial
    workers = count_primes.workers
    print(f"primes below 1,000,000: {sum(fanned)}")
    print(f"serial:   {serial_time:.2f} s")
    speedup = serial_time / parallel_time
    print(f"parallel: {parallel_time:.2f} s on {workers} workers  ->  speedup {speedup:.2f}x")

    print("\nA worker fails on one item; the caller gets the real exception and traceback:\n")
    try:
        parse_price.map(["$1.50", "$2.00", "12,99", "$4.10"])
    except ValueError:
        traceback.print_exc(file=sys.stdout)

    print('\nWith on_error="return" the other results are kept:')
    keep_going = parse_price.options(on_error="return")
    results: list[float | Failure] = list(keep_going.map(["$1.50", "12,99", "$4.10"]))
    for value in results:
        if isinstance(value, Failure):
            print(f"   Failure at item {value.index}: {value.exception!r}")
        else:
            print(f"   {value}")


if __name__ == "__main__":
    main()
