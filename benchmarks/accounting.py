"""Where the time of a map goes: the caller's CPU, the workers' CPU, and the cores unused.

    python -m benchmarks.accounting [--repeats N] [--save]

The suite's two tightest scenarios, on 2 workers (fork), fanmap beside the fastest peers:

1. 200,000 calls of ``x * 2`` on a list: the first large map of a pool just started
   (as the suite's "warm list" row measures it) and the maps after it.
2. 400 calls of about 5 ms of pure-Python work, beside the bare ``os.fork`` split.

For each map: its wall time, the CPU time of the caller (every thread of it) and of the
workers (from ``/proc/<pid>/task/*/schedstat``: Linux only), the core time neither used
(2 x wall - both: the cores were idle, or the host running this virtual machine took
them), and the page faults the caller took. The first table also gives the
floor: what the caller must do at least (pickle the items, unpickle the results) and
what the workers must (unpickle the items, call, pickle the results), each its CPU time in
one process with no pool at all (after the rounds), and the wall time of both shared perfectly over the
two cores (a lower bound no pool reaches: it leaves out sending, receiving and
scheduling). Beside the second table: the CPU time of the same 100 calls in one process
alone and in two processes at once, each (a core's speed here depends on whether the
other is busy). Medians of interleaved rounds, the order rotating every round.

``--save`` writes the medians to benchmarks/results/accounting.json, which the
Benchmarks page shows (``python -m benchmarks.suite`` puts them there).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pickle
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import peers, workloads
from benchmarks._common import descendants, machine, median, table, timed, versions

WORKERS = 2
TINY = 200_000
CPU_CALLS = 400
RESULTS = Path(__file__).parent / "results" / "accounting.json"
CHUNK = 7_500  # items a pickle holds in the floor's timing (fanmap's chunks here: 7,000-7,600)


def _cpu_seconds(pid: int) -> float:
    """CPU seconds of every live thread of a process so far (0 once it is gone).

    Workers here run no thread that ends during a map; the caller's own time is taken
    with `time.process_time`, which counts threads that ended too.
    """
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # the thread ended meanwhile
    return total / 1e9


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _spent(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _mapper(c: peers.Contender, fn: Callable[[Any], Any], items: Sequence[Any]) -> Callable[[], Any]:
    return lambda: c.map(fn, items)


def account(run: Callable[[], Any]) -> dict[str, float]:
    """Run once; the wall time, the caller's and the workers' CPU, the core time unused.

    A child started during the run (a worker a pool starts when a chunk needs it) is
    counted whole: it had used nothing before.
    """
    before = {k: _cpu_seconds(k) for k in descendants(os.getpid())}
    forked_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    caller_before = time.process_time()
    faults = _faults()
    wall = timed(run)
    faults = _faults() - faults
    caller = time.process_time() - caller_before
    forked_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = {k: _cpu_seconds(k) for k in {*before, *descendants(os.getpid())}}
    workers = sum(after[k] - before.get(k, 0.0) for k in after)
    # Children forked and reaped within the run (the bare fork split) count here.
    workers += (forked_after.ru_utime + forked_after.ru_stime) - (
        forked_before.ru_utime + forked_before.ru_stime
    )
    return {
        "wall": wall,
        "caller": caller,
        "workers": workers,
        "idle": max(0.0, WORKERS * wall - caller - workers),
        "faults": faults,
    }


def _medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: median([s[key] for s in samples]) for key in samples[0]}


def floor(items: Sequence[int]) -> dict[str, float]:
    """The least work each side must do: its CPU time in this process, with no pool
    (medians of 9, after the rounds). The caller keeps what it unpickles until the end,
    as a map keeps its results."""
    chunks = [list(items[i : i + CHUNK]) for i in range(0, len(items), CHUNK)]
    sent = [pickle.dumps(c, 5) for c in chunks]
    results = [list(map(workloads.double, c)) for c in chunks]
    back = [pickle.dumps(r, 5) for r in results]

    def caller() -> None:
        for c in chunks:
            pickle.dumps(c, 5)
        kept = [pickle.loads(b) for b in back]
        del kept

    def workers() -> None:
        for s in sent:
            pickle.dumps(list(map(workloads.double, pickle.loads(s))), 5)

    c = median([_cpu_time(caller) for _ in range(9)])
    w = median([_cpu_time(workers) for _ in range(9)])
    return {"caller": c, "workers": w, "wall": (c + w) / WORKERS}


def _cpu_time(fn: Callable[[], Any]) -> float:
    began = time.process_time()
    fn()
    return time.process_time() - began


def _rounds(
    contenders: list[peers.Contender],
    warmup: Callable[[peers.Contender], Any],
    maps: int,
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    repeats: int,
) -> dict[str, list[list[dict[str, float]]]]:
    """Each contender's ``maps`` accounted maps after its warm-up, every round (the suite's
    rotation: a fresh pool for each, the others closed)."""
    from benchmarks.suite import Suite

    return Suite(quick=False).warm_rounds(
        contenders, warmup, lambda c: [account(_mapper(c, fn, items)) for _ in range(maps)], repeats
    )


def tiny(repeats: int) -> dict[str, Any]:
    items = list(range(TINY))
    contenders = peers.contenders([peers.Fanmap, peers.PoolMap, peers.PoolImapUnordered], WORKERS)
    warmup = functools.partial(_warm, workloads.double, items[:1000])  # the suite's warm-up
    runs = _rounds(contenders, warmup, 4, workloads.double, items, repeats)
    return {  # "later": the medians of every round's three later maps
        "first": {k: _medians([maps[0] for maps in v]) for k, v in runs.items()},
        "later": {k: _medians([m for maps in v for m in maps[1:]]) for k, v in runs.items()},
        "floor": floor(items),
    }


def cpu(repeats: int) -> dict[str, Any]:
    from benchmarks.suite import _BareFork, _calibrate

    iterations = _calibrate(0.005)
    items = [iterations] * CPU_CALLS
    contenders = [
        _BareFork(WORKERS),
        *peers.contenders([peers.Fanmap, peers.PoolMap, peers.ExecutorTuned], WORKERS),
    ]
    warmup = functools.partial(_warm, workloads.cpu_work, items[:4])
    runs = _rounds(contenders, warmup, 1, workloads.cpu_work, items, repeats)
    alone: list[float] = []
    together: list[float] = []
    for r in range(repeats):
        for n in (1, 2) if r % 2 else (2, 1):
            (alone if n == 1 else together).append(_cpu_each(n, items[:100]))
    return {
        "runs": {k: _medians([maps[0] for maps in v]) for k, v in runs.items()},
        "alone": median(alone),
        "together": median(together),
    }


def _warm(fn: Callable[[Any], Any], items: Sequence[Any], c: peers.Contender) -> None:
    c.map(fn, items)


def _cpu_each(processes: int, items: list[int]) -> float:
    """The mean CPU seconds that each of ``processes`` forked processes takes for ``items``."""
    before = _spent(resource.getrusage(resource.RUSAGE_CHILDREN))
    pids = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            for x in items:
                workloads.cpu_work(x)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    return (_spent(resource.getrusage(resource.RUSAGE_CHILDREN)) - before) / processes


_HEADERS = ["wall ms", "caller CPU ms", "workers' CPU ms", "core time unused ms"]


def _cells(m: dict[str, float], keys: tuple[str, ...] = ("wall", "caller", "workers", "idle")) -> list[str]:
    return [f"{m[key] * 1000:.1f}" for key in keys]


def tables(saved: dict[str, Any]) -> list[str]:
    """The two tables, in markdown, from saved medians."""
    t = saved["tiny"]
    rows = []
    for kind, label in (("first", "first large map"), ("later", "the 3 maps after it")):
        for name, m in t[kind].items():
            rows.append([name, label, *_cells(m), f"{m['faults']:.0f}"])
    least = _cells(t["floor"], ("wall", "caller", "workers"))
    rows.append(["floor: the pickling and calls alone", "", *least, "", ""])
    headers = ["contender", "map", *_HEADERS, "caller page faults"]
    cpu_rows = [[name, *_cells(m)] for name, m in saved["cpu"]["runs"].items()]
    cpu_headers = ["contender", *_HEADERS]
    return [
        f"{TINY:,} calls of `x * 2` on a list:",
        "",
        table(headers, rows),
        "",
        f"{CPU_CALLS} calls of about 5 ms of pure-Python work:",
        "",
        table(cpu_headers, cpu_rows),
        "",
        f"The same 100 calls took {saved['cpu']['alone']:.3f} s of CPU time in one process alone, "
        f"and {saved['cpu']['together']:.3f} s in each of two processes at once.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--save", action="store_true", help="write benchmarks/results/accounting.json")
    args = parser.parse_args()
    if not os.path.exists(f"/proc/{os.getpid()}/task"):
        sys.exit("benchmarks.accounting reads /proc/<pid>/task/*/schedstat: Linux only")
    print(f"medians of {args.repeats} interleaved rounds; {machine()}", flush=True)
    saved: dict[str, Any] = {
        "machine": machine(),
        "versions": versions("fanmap"),
        "repeats": args.repeats,
        "tiny": tiny(args.repeats),
        "cpu": cpu(args.repeats),
    }
    if args.save:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(saved, indent=1))
    print("\n".join(tables(saved)))
    if args.save:
        print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
