"""fanmap beside its peers: every scenario, one command.

Run: .venv/bin/python -m benchmarks.suite [--quick] [--only SCENARIO ...]

Scenarios (2 workers, fork unless said otherwise): startup, overhead, cpu, skew, error,
bigdata, stream, io. Contenders run in this process tree on the same inputs; each
measurement is repeated with the contenders interleaved (the order rotates every
round) and the median is reported. Prints a markdown table per scenario with ratios,
writes (a full run only: not with --quick or --only) every sample with the machine and
package versions to benchmarks/results/latest.json, the tables to docs/benchmarks.md with
a plot per scenario (docs/benchmarks-<scenario>.png), and the speed claim of README.md and
docs/index.md (benchmarks/claims.py).
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import peers, workloads
from benchmarks._common import machine, median, table, timed, versions

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
PACKAGES = ("fanmap", "joblib", "loky", "mpire", "pebble", "numpy", "tblib", "cloudpickle")


def _with_fanmap(excluding: tuple[type[peers.Contender], ...] = ()) -> list[type[peers.Contender]]:
    """fanmap and every peer (`peers.PEERS`), less those a scenario leaves out."""
    return [peers.Fanmap, *(kind for kind in peers.PEERS if kind not in excluding)]


#: The cpu and error scenarios compare each library's recommended map once.
T = TypeVar("T")

_MAPPERS = _with_fanmap(excluding=(peers.PoolImapUnordered, peers.Executor))


class Suite:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.repeats = 2 if quick else 3
        self.samples: dict[str, dict[str, Any]] = {}
        self.tables: dict[str, str] = {}
        self.summary: dict[str, dict[str, float]] = {}

    # -- helpers ---------------------------------------------------------------------

    def rounds(
        self,
        contenders: list[peers.Contender],
        run: Callable[[peers.Contender], T],
        repeats: int | None = None,
    ) -> dict[str, list[T]]:
        """Run ``run`` for every contender, ``repeats`` rounds (the suite's by default),
        rotating the order."""
        out: dict[str, list[T]] = {c.name: [] for c in contenders}
        for r in range(repeats or self.repeats):
            shift = r % len(contenders)
            for c in contenders[shift:] + contenders[:shift]:
                gc.collect()
                out[c.name].append(run(c))
        return out

    def warm_rounds(
        self,
        contenders: list[peers.Contender],
        warmup: Callable[[peers.Contender], Any],
        run: Callable[[peers.Contender], T],
        repeats: int | None = None,
    ) -> dict[str, list[T]]:
        """Like `rounds`, with only the measured contender's pool open, warmed first."""

        def isolated(c: peers.Contender) -> T:
            c.open()
            try:
                warmup(c)
                return run(c)
            finally:
                c.close()

        return self.rounds(contenders, isolated, repeats)

    def report(
        self, name: str, headers: list[str], rows: list[list[Any]], samples: Any, note: str = ""
    ) -> None:
        text = table(headers, rows)
        self.tables[name] = (note + "\n\n" if note else "") + text
        self.samples[name] = samples
        print(f"\n### {name}\n\n{note}\n\n{text}\n", flush=True)

    # -- scenarios -------------------------------------------------------------------

    def startup(self) -> None:
        rows = []
        samples: dict[str, Any] = {}
        kinds = [
            peers.FanmapLazy,
            peers.PoolMap,
            peers.Executor,
            peers.Loky,
            peers.Joblib,
            peers.Mpire,
            peers.Pebble,
        ]
        for method in ("fork", "spawn"):
            contenders = peers.contenders(kinds, WORKERS, method)
            fresh: dict[str, list[float]] = {c.name: [] for c in contenders}
            warm: dict[str, list[float]] = {c.name: [] for c in contenders}

            def run(
                c: peers.Contender, fresh: dict[str, list[float]] = fresh, warm: dict[str, list[float]] = warm
            ) -> float:
                began = time.perf_counter()
                c.open()
                c.map(workloads.double, [1])
                fresh[c.name].append(time.perf_counter() - began)
                times = []
                for _ in range(20):
                    began = time.perf_counter()
                    c.map(workloads.double, [1])
                    times.append(time.perf_counter() - began)
                warm[c.name].append(median(times))
                c.close()
                return 0.0

            for c in contenders:  # a throwaway round: imports happen here, not in a measured one
                c.open()
                c.map(workloads.double, [1])
                c.close()
            self.rounds(contenders, run)
            for c in contenders:
                if method == "spawn" and c.name in ("loky", "joblib"):
                    continue  # they always start their own way (loky): shown once
                rows.append(
                    [
                        c.name,
                        method,
                        f"{median(fresh[c.name]) * 1000:.1f}",
                        f"{median(warm[c.name]) * 1000:.2f}",
                    ]
                )
            samples[method] = {"fresh": fresh, "warm": warm}
            shown = [c.name for c in contenders if not (method == "spawn" and c.name in ("loky", "joblib"))]
            self.summary[f"startup-{method}"] = {n: median(fresh[n]) for n in shown}
            self.summary[f"warm-{method}"] = {n: median(warm[n]) for n in shown}
        self.report(
            "startup",
            ["contender", "start method", "first result, fresh pool (ms)", "first result, warm pool (ms)"],
            rows,
            samples,
            "A 1-item map on a new pool (including starting it), and the median of 20 more on the warm pool. "
            "loky and joblib start workers their own way (loky's), whatever the method.",
        )

    def overhead(self) -> None:
        n = 50_000 if self.quick else 200_000
        items = list(range(n))
        # chunksize=1 over 200,000 calls would take minutes: that executor sits this one out
        contenders = peers.contenders(_with_fanmap(excluding=(peers.Executor,)), WORKERS)
        # fanmap's own capabilities on the same calls, warm, on a list
        variants = peers.contenders(
            [peers.FanmapPerWorker, peers.FanmapInsights, peers.FanmapCheckpoint], WORKERS
        )
        expected = sorted(x * 2 for x in items)
        # Seven rounds, not three: a map lasts some 20 ms, and the same pool's took from 25
        # to 47 ms within one run of three; the median of three followed the host, and so
        # did five's (fanmap's lead over the best peer came out between 1.19x and 1.66x).
        repeats = None if self.quick else 7

        cold = self.rounds(
            contenders, lambda c: _timed_open_map(c, workloads.double, items, expected), repeats
        )
        warm = self.warm_rounds(
            contenders + variants,
            lambda c: c.map(workloads.double, items[:1000]),
            lambda c: _timed_map(c, workloads.double, items, expected),
            repeats,
        )
        ranged = self.warm_rounds(
            contenders,
            lambda c: c.map(workloads.double, range(1000)),
            lambda c: _timed_map(c, workloads.double, range(n), expected),
            repeats,
        )

        def rate(times: dict[str, list[float]]) -> dict[str, float]:
            return {k: n / median(v) for k, v in times.items()}

        def best(rates: dict[str, float]) -> float:
            return max(v for k, v in rates.items() if not k.startswith("fanmap"))

        rates = {"warm": rate(warm), "range": rate(ranged), "cold": rate(cold)}
        bests = {kind: best(r) for kind, r in rates.items()}
        rows = []
        for c in contenders + variants:
            row = [c.name]
            for kind in ("warm", "range", "cold"):
                r = rates[kind].get(c.name)
                row += ["—", "—"] if r is None else [f"{r / 1e6:.2f} M", f"{r / bests[kind]:.2f}x"]
            rows.append(row)
        self.summary["overhead-warm"] = rates["warm"]
        self.summary["overhead-range"] = rates["range"]
        self.summary["overhead-cold"] = rates["cold"]
        self.report(
            "overhead",
            [
                "contender",
                "calls/s warm, list",
                "vs best peer",
                "calls/s warm, range",
                "vs best peer",
                "calls/s incl. start, list",
                "vs best peer",
            ],
            rows,
            {"warm": warm, "range": ranged, "cold": cold, "items": n},
            f"{n:,} calls of `x * 2`, on a list and on a range. The last rows are fanmap with a "
            "`@per_worker` value, inside `insights()`, and with `checkpoint=` (a new file each map), "
            f"warm, on a list. Medians of {repeats or self.repeats} interleaved runs.",
        )

    def cpu(self) -> None:
        count = 100 if self.quick else 400
        iterations = _calibrate(0.005)
        items = [iterations] * count
        # The references run in the same rotation as the contenders: this host's speed
        # drifts by up to 2x within minutes, and a reference measured before the rest
        # would carry that drift into every ratio.
        contenders = [peers.Serial(1), _BareFork(WORKERS), *peers.contenders(_MAPPERS, WORKERS)]
        # Five rounds, not three: the same map's time moves by 10-20% from one round to the
        # next here (two processes busy at once each took from 3% less to 8% more CPU
        # time for the same work than one alone, from test to test), and so did the median of three.
        repeats = None if self.quick else 5
        times = self.warm_rounds(
            contenders,
            lambda c: c.map(workloads.cpu_work, items[:4]),
            lambda c: timed(lambda: c.map(workloads.cpu_work, items)),
            repeats,
        )
        serial, fork = times.pop(peers.Serial.name), times.pop(_BareFork.name)
        contenders = contenders[2:]
        s, f = median(serial), median(fork)
        rows = [
            ["serial loop", f"{s:.3f} s", "1.00x", f"{f / s:.2f}"],
            ["bare os.fork split", f"{f:.3f} s", f"{s / f:.2f}x", "1.00"],
        ]
        for c in contenders:
            t = median(times[c.name])
            rows.append([c.name, f"{t:.3f} s", f"{s / t:.2f}x", f"{f / t:.2f}"])
        self.summary["cpu"] = {k: f / median(v) for k, v in times.items()}
        self.report(
            "cpu",
            ["contender", "time", "speedup vs serial", "vs bare fork split"],
            rows,
            {"serial": serial, "fork": fork, "times": times, "calls": count, "iterations": iterations},
            f"{count} calls of about 5 ms of pure-Python work; medians of {repeats or self.repeats} "
            "interleaved runs.",
        )

    def io(self) -> None:
        from benchmarks import io_scale

        # Five rounds, not three: each run of the thread rows lasts a tenth of a second, and
        # one that a neighbour on the host delays moves a median of three by several %.
        rows, shares = io_scale.measure(1 if self.quick else 5)
        for case, share in shares.items():
            self.summary[f"io-{case}"] = share
        note = (
            f"{io_scale.CALLS:,} calls of `time.sleep({io_scale.NAP})` beside the standard library's "
            "executor with the same number of workers (fork, warm pools); the ideal is calls x 10 ms / "
            "workers; medians of 5 interleaved runs. Bare threads are the same number of threads "
            "pulling from one iterator with no pool code: what threads reach on this machine."
        )
        self.report("io", io_scale.HEADERS, rows, shares, note)

    def skew(self) -> None:
        count = 200
        rng = random.Random(20261122)
        raw = [rng.paretovariate(1.3) for _ in range(count)]
        total = 1.0 if self.quick else 2.0
        durations = [d * total * WORKERS / sum(raw) for d in raw]  # sum/workers = total
        bound = max(sum(durations) / WORKERS, max(durations))
        contenders = peers.contenders(_with_fanmap(), WORKERS)
        rows = []
        samples = {}
        for label, order in (("as drawn", durations), ("ascending", sorted(durations))):
            times = self.warm_rounds(
                contenders, lambda c: c.map(workloads.nap, [0.0] * 4), functools.partial(_timed_nap, order)
            )
            samples[label] = times
            self.summary[f"skew-{label}"] = {k: median(v) / bound for k, v in times.items()}
            for c in contenders:
                t = median(times[c.name])
                rows.append([c.name, label, f"{t:.3f} s", f"{t / bound:.3f}"])
        self.report(
            "skew",
            ["contender", "order", "makespan", "makespan / lower bound"],
            rows,
            {"durations": durations, "bound": bound, **samples},
            f"{count} calls with heavy-tailed (Pareto) durations, sum {sum(durations):.2f} s, longest "
            f"{max(durations):.3f} s; lower bound max(sum / workers, longest) = {bound:.3f} s.",
        )

    def error(self) -> None:
        items = list(range(1000))
        contenders = peers.contenders(_MAPPERS, WORKERS)

        def until_raised(run: Callable[[], Any]) -> float:
            began = time.perf_counter()
            try:
                run()
            except Exception:
                return time.perf_counter() - began
            raise AssertionError("no exception")

        serial = [until_raised(lambda: [workloads.fail_at(i) for i in items]) for _ in range(self.repeats)]
        times = self.warm_rounds(
            contenders,
            lambda c: c.map(workloads.fail_at, [0, 1]),
            lambda c: until_raised(lambda: c.map(workloads.fail_at, items)),
        )
        s = median(serial)
        rows = [["serial loop", f"{s * 1000:.0f} ms", "1.00"]]
        for c in contenders:
            t = median(times[c.name])
            rows.append([c.name, f"{t * 1000:.0f} ms", f"{t / s:.2f}"])
        self.summary["error"] = {k: median(v) / s for k, v in times.items()}
        self.report(
            "error",
            ["contender", "exception seen after", "vs serial loop reaching the call"],
            rows,
            {"serial": serial, "times": times},
            "1,000 calls of about 1 ms; call 100 raises.",
        )

    def bigdata(self) -> None:
        size = 3_125_000 if self.quick else 25_000_000
        rows = []
        samples: dict[str, list[dict[str, float]]] = {}
        for name in ("fanmap", "fanmap.share", "joblib", "mpire", "multiprocessing.Pool"):
            runs = []
            for _ in range(self.repeats):
                proc = subprocess.run(
                    [sys.executable, "-m", "benchmarks.shared", "--big", name, "--size", str(size)],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=True,
                    cwd=ROOT,
                )
                runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            samples[name] = runs
        peers = [v for k, v in samples.items() if not k.startswith("fanmap")]
        best_t = min(median([r["seconds"] for r in v]) for v in peers)
        for name, runs in samples.items():
            t = median([r["seconds"] for r in runs])
            rows.append(
                [name, f"{t:.2f} s", f"{best_t / t:.2f}x", f"{median([r['extra_mb'] for r in runs]):.0f} MB"]
            )
        self.summary["bigdata"] = {k: median([r["seconds"] for r in v]) for k, v in samples.items()}
        self.report(
            "bigdata",
            [
                "contender",
                "wall time",
                "speed vs best peer",
                "peak memory above the caller's (all processes)",
            ],
            rows,
            samples,
            f"16 calls each given the same {size * 8 // 1_000_000} MB NumPy array "
            "(each contender in a fresh interpreter).",
        )

    def stream(self) -> None:
        total = 100_000 if self.quick else 1_000_000
        rows = []
        samples = {}
        from fanmap import _pools, parallel

        def fanmap_stream() -> list[float]:
            pf = parallel(workloads.double, workers=WORKERS)
            return _rss_along(pf.imap(itertools.count()), total)

        def pool_stream() -> list[float]:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
                return _rss_along(pool.imap(workloads.double, itertools.count(), chunksize=1000), total)

        for name, run in (("fanmap imap", fanmap_stream), ("Pool.imap", pool_stream)):
            marks = run()
            samples[name] = marks
            rows.append(
                [name, f"{marks[0]:.0f} MB", f"{marks[-1]:.0f} MB", f"{marks[-1] - marks[0]:+.0f} MB"]
            )
        _pools.shutdown()
        self.summary["stream"] = {k: v[-1] - v[0] for k, v in samples.items()}
        self.report(
            "stream",
            ["contender", f"caller RSS after {total // 10:,} results", f"after {total:,}", "growth"],
            rows,
            samples,
            "`imap` over an endless generator (`itertools.count()`), stopped after "
            f"{total:,} results of `x * 2`.",
        )


def _timed_nap(durations: list[float], c: peers.Contender) -> float:
    return timed(lambda: c.map(workloads.nap, durations))


def _timed_map(
    c: peers.Contender, fn: Callable[..., Any], items: Sequence[Any], expected: list[Any]
) -> float:
    began = time.perf_counter()
    out = c.map(fn, items)
    took = time.perf_counter() - began
    assert sorted(out) == expected
    return took


def _timed_open_map(
    c: peers.Contender, fn: Callable[..., Any], items: list[Any], expected: list[Any]
) -> float:
    began = time.perf_counter()
    c.open()
    c.map(fn, items)
    took = time.perf_counter() - began
    c.close()
    return took


def _calibrate(seconds: float) -> int:
    iterations = 10_000
    while True:
        took = timed(functools.partial(workloads.cpu_work, iterations))
        if took > 0.02:
            return int(iterations * seconds / took)
        iterations *= 2


class _BareFork(peers.Contender):
    """The same work split across the workers' forked children by hand: the floor to beat
    (the results are not sent back: a child only runs its share)."""

    name = "bare os.fork split"

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        pids = []
        for w in range(self.workers):
            pid = os.fork()
            if pid == 0:
                for x in items[w :: self.workers]:
                    fn(x)
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        return []


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _rss_along(results: Any, total: int) -> list[float]:
    marks = []
    for i, _ in enumerate(results, 1):
        if i % (total // 10) == 0:
            marks.append(_rss_mb())
            if i >= total:
                break
    close = getattr(results, "close", None)
    if close is not None:
        close()
    return marks


#: The summary's figures plotted for each scenario: key (or key prefix ending in "-"), title.
_PLOTS: dict[str, list[tuple[str, str]]] = {
    "startup": [
        ("startup-fork", "first result, fresh pool, fork (s, lower is better)"),
        ("startup-spawn", "first result, fresh pool, spawn (s, lower is better)"),
    ],
    "overhead": [
        ("overhead-warm", "calls/s, warm pool, list (higher is better)"),
        ("overhead-range", "calls/s, warm pool, range (higher is better)"),
        ("overhead-cold", "calls/s including start-up, list (higher is better)"),
    ],
    "cpu": [("cpu", "speed vs a bare fork split (higher is better)")],
    "skew": [("skew-", "makespan / lower bound (lower is better)")],
    "error": [("error", "time to the error / serial loop (lower is better)")],
    "bigdata": [("bigdata", "wall time, 200 MB array to 16 calls (s, lower is better)")],
    "stream": [("stream", "caller RSS growth over a long imap (MB, lower is better)")],
    "io": [("io-", "calls/s as a share of the ideal (higher is better)")],
}


def _plot(suite: Suite, scenario: str, path: Path) -> bool:
    """One figure for a scenario's figures in the summary; whether there were any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for key, title in _PLOTS.get(scenario, []):
        keys = [k for k in suite.summary if k.startswith(key)] if key.endswith("-") else [key]
        panels += [(k, f"{title}: {k[len(key) :]}" if key.endswith("-") else title) for k in keys]
    panels = [(k, t) for k, t in panels if suite.summary.get(k)]
    if not panels:
        return False
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(8, 0.6 + 0.28 * sum(len(suite.summary[k]) for k, _ in panels) + 0.5 * len(panels)),
    )
    if len(panels) == 1:
        axes = [axes]
    for ax, (key, title) in zip(axes, panels, strict=True):
        data = suite.summary[key]
        names = list(data)
        values = [data[n] for n in names]
        colors = ["#3f51b5" if n.startswith("fanmap") else "#9e9e9e" for n in names]
        ax.barh(names, values, color=colors)
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


SCENARIOS = ("startup", "overhead", "cpu", "skew", "error", "bigdata", "stream", "io")


def main() -> None:
    raw_help = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw_help)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats (under a minute)")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run only these scenarios")
    parser.add_argument("--no-write", action="store_true", help="print only (as with --quick or --only)")
    args = parser.parse_args()
    suite = Suite(args.quick)
    began = time.perf_counter()
    facts = {"machine": machine(), "versions": versions(*PACKAGES), "quick": args.quick}
    print(f"{facts['machine']}\n{facts['versions']}", flush=True)
    for name in args.only or SCENARIOS:
        getattr(suite, name)()
    took = time.perf_counter() - began
    print(f"\nall scenarios in {took:.0f} s")
    if args.no_write or args.only or args.quick:
        # The committed results, the Benchmarks page and the README's claim come from full runs only.
        print("not written: only a full run (no --quick, no --only) writes the results")
        return
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.json").write_text(
        json.dumps({**facts, "seconds": took, "summary": suite.summary, "samples": suite.samples}, indent=1)
    )
    for old in (ROOT / "docs").glob("benchmarks*.png"):
        old.unlink()
    page = [
        "---",
        "hide:",
        "  - toc  # the wide tables need the room",
        "---",
        "",
        "# Benchmarks",
        "",
        "fanmap beside its peers, measured in one run of `python -m benchmarks.suite`"
        f" ({took:.0f} s) on this machine: {facts['machine']['cpus']} CPUs, "
        f"{facts['machine']['platform']}, Python {facts['machine']['python']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()) + ".",
        "",
        "Every sample is in `benchmarks/results/latest.json`. Ratios compare medians of the same run. "
        "fanmap's modules are compiled to bytecode first, as pip does when it installs a package "
        "(the peers come installed that way).",
        "",
        "Each peer is used as its documentation shows (`benchmarks/peers.py`): `Pool.map` with its "
        "own chunk size; `Pool.imap_unordered`, `ProcessPoolExecutor(tuned)`, loky and pebble with "
        "chunks of items / (4 x workers), the size `Pool.map` picks; `ProcessPoolExecutor(chunksize=1)` "
        "as it comes; joblib's `Parallel(return_as=\"generator_unordered\")` and mpire's `WorkerPool.map` "
        "with their defaults. fanmap is `parallel(fn, workers=2).map(items)`.",
        "",
        "On this shared virtual machine the same map takes from 1x to 2x the time from one minute to "
        "the next, and a ratio of medians moves by about ±15% from one run of the suite to another. "
        'Compare ratios within a table: the async, insights and "where the time goes" sections '
        "come from runs of their own, at other times, and their times are not comparable with the "
        "suite's.",
        "",
    ]
    for name, text in suite.tables.items():
        page += [f"## {name}", "", text, ""]
        if _plot(suite, name, ROOT / "docs" / f"benchmarks-{name}.png"):
            page += [f"![{name}: fanmap beside its peers](benchmarks-{name}.png)", ""]
    page += saved_sections(results)
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(page))
    from benchmarks import claims

    claims.write()


def saved_sections(results: Path) -> list[str]:
    """The Benchmarks page's sections for the runs saved apart (async_io, insights, accounting)."""
    out: list[str] = []
    path = results / "async_io.json"
    if path.exists():
        a = json.loads(path.read_text())
        ideal, sec, tiny = a["sleep"]["ideal"], a["sleep"]["seconds"], a["tiny"]
        out += [
            "## async",
            "",
            f"`python -m benchmarks.async_io --save` (medians of {a['repeats']} interleaved runs, "
            f"{a['machine']['cpus']} CPUs, Python {a['machine']['python']}; "
            "`benchmarks/results/async_io.json`). 10,000 calls of `await asyncio.sleep(0.01)`; "
            f"the ideal is 10,000 x 10 ms / 128 = {ideal:.3f} s.",
            "",
            "| | time | of the ideal |",
            "| --- | --- | --- |",
            *(f"| {k} | {v:.3f} s | {v / ideal:.2f}x |" for k, v in sec.items()),
            "",
            "100,000 tiny calls of a plain function, awaited from async code on 2 processes:",
            "",
            "| | time | per result |",
            "| --- | --- | --- |",
            *(f"| {k} | {v:.3f} s | {v / tiny['calls'] * 1e6:.1f} µs |" for k, v in tiny["seconds"].items()),
            "",
        ]
    path = results / "insights.json"
    if path.exists():
        i = json.loads(path.read_text())
        rows = [("200,000 calls of `x * 2`", i["tiny"]), ("2,000 calls of 1 ms", i["slow"])]
        out += [
            "## insights",
            "",
            f"`python -m benchmarks.insights --save` (medians of {i['repeats']} interleaved runs; "
            "`benchmarks/results/insights.json`): the same warm map with and without `fanmap.insights()`.",
            "",
            "| map | without | with | with / without |",
            "| --- | --- | --- | --- |",
            *(
                f"| {name} | {r['without']:.4f} s | {r['with']:.4f} s | {r['with'] / r['without']:.3f}x |"
                for name, r in rows
            ),
            "",
        ]
    path = results / "accounting.json"
    if path.exists():
        from benchmarks import accounting

        a = json.loads(path.read_text())
        out += [
            "## where the time goes",
            "",
            f"`python -m benchmarks.accounting --save` (medians of {a['repeats']} interleaved rounds, "
            f"{a['machine']['cpus']} CPUs, Python {a['machine']['python']}; "
            "`benchmarks/results/accounting.json`): the CPU time of the caller and of the workers "
            "in one map, and the core time neither used (2 x wall - both), for the overhead "
            "(warm, list) and cpu rows, whose targets in the Performance guide are the tightest.",
            "",
            *accounting.tables(a),
            "",
        ]
    return out


if __name__ == "__main__":
    main()
