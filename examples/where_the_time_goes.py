"""A skewed workload, and what ``fanmap.insights()`` says about it.

Scoring 400 documents: most take about 2 ms, and one (document 123) takes a second.
Run it with ``python examples/where_the_time_goes.py``; it prints the report and
writes ``trace.json`` (open it in https://ui.perfetto.dev or any viewer of the Chrome
trace event format).
"""

from __future__ import annotations

import time

import fanmap
from fanmap import parallel


def load(doc: int) -> int:
    """Stands for reading a document: its length in thousands of words."""
    return 1000 if doc == 123 else 2


@parallel(workers=2)
def score(doc: int) -> float:
    words = load(doc)
    end = time.perf_counter() + words / 1000  # about 1 ms of work per thousand words
    total = 0.0
    while time.perf_counter() < end:
        total += 1.0
    return total / words


if __name__ == "__main__":
    score.map(range(10))  # warm the pool: start-up is not what this example is about
    with fanmap.insights() as report:
        scores = score.map(range(400))
    print(report)
    report.save_trace("trace.json")
