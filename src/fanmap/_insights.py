"""``fanmap.insights()``: where the time of a map went, which calls were slowest, and a
timeline to look at.

```
with insights() as report:          a context variable holds the report: maps of this
    f.map(xs)                       thread or task (and of the amap threads they start)
                                    are recorded, nothing else
engine ── chunk sent (bytes, seconds in the caller) ──► MapRecord
       ── Done / Lost (worker, elapsed, each call's seconds) ──► MapRecord
       ── a retry ──► MapRecord
print(report) / report.to_dict() / report.save_trace(path) / report.running()
```

It observes the engine's stream of chunks and outcomes; backends never know it exists.
Outside an ``insights()`` block the engine asks for a recorder once per map and gets
None: nothing is collected. Inside one, calls are timed one by one only in chunks of
at most `TIMED_UP_TO` items (calls of 40 µs or more, for which a clock read costs under
1%); a chunk of tinier calls is timed whole.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

from ._chunk import Chunk, Done, Lost
from ._serialize import short_repr

__all__ = ["MapRecord", "Report", "insights", "recorder"]

_active: contextvars.ContextVar[Report | None] = contextvars.ContextVar("fanmap_insights", default=None)

#: How many recorders were made (the tests count them: none outside a block).
made = 0


@dataclasses.dataclass(slots=True)
class _Slice:
    """A chunk (or one call of it) as it ran: on which worker, from when, how long."""

    worker: str
    start: int  # first item
    count: int
    begun: float  # seconds since the map began, on the caller's clock
    seconds: float
    calls: list[float] | None  # each call's seconds, when timed
    starts: list[float] | None = None  # calls that ran together: each one's start, on the worker's clock


class MapRecord:
    """What one map (``map``, ``imap``, ``amap``...) did, as it went."""

    def __init__(self, label: str, backend: str, workers: int, describe: Any, together: bool = False) -> None:
        global made
        made += 1
        self.label = label
        self.backend = backend
        self.workers = workers
        #: Whether a worker runs several calls at once (an async function).
        self.together = together
        self._describe = describe  # index, item -> "(1, 'a')"
        self.began = time.perf_counter()
        self.ended: float | None = None
        self.first_result: float | None = None
        self.items = 0
        self.sizes: list[int] = []
        self.bytes = 0
        self.send_seconds = 0.0
        self.slices: list[_Slice] = []
        self.setup: dict[str, float] = {}
        self.retries = 0
        self.crashes = 0
        self.timeouts = 0
        self.marks: list[tuple[str, str, float, str]] = []  # kind, worker, when, "item 3"
        self._in_flight: dict[int, tuple[Chunk, float, str | None]] = {}
        self._items_of: dict[int, Any] = {}  # first item of each chunk in flight, for reprs
        self.slowest: list[tuple[float, int, int, str]] = []  # seconds, index, count, call
        self.failures: list[tuple[int, str]] = []  # index, exception type

    # -- fed by the engine ----------------------------------------------------------

    def sent(self, chunk: Chunk, size: int | None, seconds: float, holder: str | None) -> None:
        self.sizes.append(len(chunk.items))
        self.bytes += size or 0
        self.send_seconds += seconds
        self._in_flight[chunk.start] = (chunk, time.perf_counter(), holder)

    def done(self, event: Done, now: float) -> None:
        chunk = event.chunk
        self._in_flight.pop(chunk.start, None)
        if self.first_result is None:
            self.first_result = now - event.elapsed
        if event.setup:
            self.setup[event.worker] = self.setup.get(event.worker, 0.0) + event.setup
        begun = now - self.began - event.elapsed
        times, starts = event.times if isinstance(event.times, tuple) else (event.times, None)
        self.slices.append(_Slice(event.worker, chunk.start, event.ran, begun, event.elapsed, times, starts))
        if times is not None:
            for pos, seconds in enumerate(times):
                self._rank(seconds, chunk.start + pos, 1, chunk.items[pos])
        elif event.ran:  # timed whole: each call is given the chunk's average
            self._rank(event.elapsed / event.ran, chunk.start, event.ran, chunk.items[0])

    def lost(self, event: Lost, now: float) -> None:
        chunk = event.chunk
        self._in_flight.pop(chunk.start, None)
        if event.kind == "unstarted":
            return
        if event.kind == "timeout":
            self.timeouts += 1
        else:
            self.crashes += 1
        last = chunk.start + len(chunk.items) - 1
        what = f"item {chunk.start}" if last == chunk.start else f"items {chunk.start}-{last}"
        self.marks.append((event.kind, event.worker, now - self.began, what))

    def handed(self, count: int) -> None:
        """``count`` items got their final value (a result, a Failure, or skipped)."""
        self.items += count

    def failed(self, index: int, error: BaseException) -> None:
        if len(self.failures) < _FAILED_KEPT:
            self.failures.append((index, type(error).__name__))

    def retried(self, index: int) -> None:
        self.retries += 1
        self.marks.append(("retry", "", time.perf_counter() - self.began, f"item {index}"))

    def finish(self) -> None:
        self.ended = time.perf_counter()
        self._in_flight.clear()

    def _rank(self, seconds: float, index: int, count: int, item: Any) -> None:
        if len(self.slowest) >= _SLOWEST and seconds <= self.slowest[-1][0]:
            return
        call = self._describe(item)
        self.slowest.append((seconds, index, count, call))
        self.slowest.sort(key=lambda s: -s[0])
        del self.slowest[_SLOWEST:]

    # -- read by the user -------------------------------------------------------------

    @property
    def wall(self) -> float:
        return (self.ended if self.ended is not None else time.perf_counter()) - self.began

    def running(self) -> list[dict[str, Any]]:
        now = time.perf_counter()
        out = []
        busy: set[str | None] = set()
        # Oldest first: a worker of a plain function runs its oldest chunk; the others wait.
        in_flight = list(self._in_flight.values())  # one step under the GIL: the map goes on meanwhile
        for chunk, sent, holder in sorted(in_flight, key=lambda f: f[1]):
            last = chunk.start + len(chunk.items) - 1
            runs = holder is not None and (self.together or holder not in busy)
            busy.add(holder)
            out.append(
                {
                    "map": self.label,
                    "index": chunk.start,
                    "items": f"{chunk.start}" if last == chunk.start else f"{chunk.start}-{last}",
                    "worker": holder,
                    "state": "running" if runs else "queued",
                    "call": self._describe(chunk.items[0]),
                    "seconds": now - sent,
                }
            )
        return sorted(out, key=lambda r: (r["state"] != "running", -r["seconds"]))

    def to_dict(self) -> dict[str, Any]:
        import statistics  # here: a map outside insights() never loads it

        wall = self.wall
        calls: list[float] = []
        for s in self.slices:
            if s.calls is not None:
                calls.extend(s.calls)
            elif s.count:
                calls.extend([s.seconds / s.count] * s.count)
        busy: dict[str, float] = {}
        count: dict[str, int] = {}
        for s in self.slices:
            busy[s.worker] = busy.get(s.worker, 0.0) + s.seconds
            count[s.worker] = count.get(s.worker, 0) + s.count
        workers = {
            w: {
                "calls": count[w],
                "busy": busy[w],
                "idle": max(0.0, wall - busy[w]),
                "utilisation": min(1.0, busy[w] / wall) if wall > 0 else 0.0,
                "setup": self.setup.get(w, 0.0),
            }
            for w in sorted(busy, key=_worker_order)
        }
        startup = 0.0
        if self.first_result is not None:
            startup = max(0.0, self.first_result - self.began)
        out: dict[str, Any] = {
            "map": self.label,
            "backend": self.backend,
            "workers": self.workers,
            "items": self.items,
            "wall": wall,
            "startup": startup,
            "calls": _spread(calls),
            "per_worker": workers,
            "chunks": {
                "count": len(self.sizes),
                "min": min(self.sizes, default=0),
                "median": statistics.median_low(self.sizes) if self.sizes else 0,
                "max": max(self.sizes, default=0),
            },
            "caller": {"bytes": self.bytes, "seconds": self.send_seconds},
            "retries": self.retries,
            "crashes": self.crashes,
            "timeouts": self.timeouts,
            # A call timed alone has items 1; else the chunk's average call, from index on.
            "slowest": [
                {"index": index, "items": n, "seconds": seconds, "call": call}
                for seconds, index, n, call in self.slowest
            ],
            "concurrency": _peaks(self.slices) if self.together else {},
            "failed": [{"index": i, "error": e} for i, e in self.failures],
        }
        out["advice"] = _advice(out)
        return out


_SLOWEST = 5
#: Below this share of the wall time in calls (the workers' mean), short calls are
#: reported as dominated by per-call overhead.
_OVERHEAD_BELOW = 0.6
_FAILED_KEPT = 100


def _worker_order(label: str) -> tuple[int, str]:
    parts = label.split()
    return (
        (int(parts[1].split(".")[0]), label)
        if len(parts) > 1 and parts[1][:1].isdigit()
        else (1 << 30, label)
    )


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0, "mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0.0}
    import statistics

    ordered = sorted(values)
    return {
        "count": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


def _peaks(slices: list[_Slice]) -> dict[str, int]:
    """The most calls each worker had running at once (above one: an async function).

    Calls timed one by one are placed by their starts on their worker's own clock (a
    chunk that failed as a whole ran no call). A worker whose calls came without starts
    (Dask's, whose workers share one label) is placed on the caller's clock, where a chunk
    began when its reply came less its seconds: replies read late look later than they
    ran, so that peak is rough.
    """
    by_worker: dict[str, list[_Slice]] = {}
    for s in slices:
        by_worker.setdefault(s.worker, []).append(s)
    peaks = {}
    for worker, theirs in by_worker.items():
        points = _spans(theirs)
        level = peak = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):
            level += step
            peak = max(peak, level)
        peaks[worker] = peak
    return peaks


def _spans(slices: list[_Slice]) -> list[tuple[float, int]]:
    """One worker's calls as (time, +1) at each start and (time, -1) at each end."""
    points: list[tuple[float, int]] = []
    if any(s.starts is not None for s in slices):  # on the worker's clock
        for s in slices:
            if s.starts is not None and s.calls is not None:
                for begun, seconds in zip(s.starts, s.calls, strict=True):
                    points += [(begun, 1), (begun + seconds, -1)]
        return points
    for s in slices:  # on the caller's clock
        if s.calls is not None and s.count > 1 and sum(s.calls) > s.seconds * 1.5:
            for seconds in s.calls:  # calls of a chunk that ran together
                points += [(s.begun, 1), (s.begun + seconds, -1)]
        else:
            points += [(s.begun, 1), (s.begun + s.seconds, -1)]
    return points


_SEND_LESS: Final = (
    "send less in each item: pass an object that every item shares as a map keyword (sent once per "
    "worker), a path or an index rather than the data itself, and arrays through fanmap.share"
)


def _advice(m: dict[str, Any]) -> str:
    """One line on what stands out most, or that nothing does."""
    wall = m["wall"] or 1e-9
    calls = m["calls"]
    per_worker = m["per_worker"]
    if m["crashes"] or m["timeouts"]:
        what = []
        if m["crashes"]:
            what.append(f"{m['crashes']} chunk(s) lost with their worker")
        if m["timeouts"]:
            what.append(f"{m['timeouts']} timed out")
        again = f"; {m['retries']} tries again were made" if m["retries"] else ""
        return f'{" and ".join(what)}{again}: see "failed" in to_dict() and the Failure of each item'
    setup = max((w["setup"] for w in per_worker.values()), default=0.0)
    if m["startup"] > 0.5 * wall and wall > 0.05 and setup > 0.5 * m["startup"]:
        return (
            f"the per-worker factories took {_t(setup)} before the first call ({setup / wall:.0%} of the "
            f"wall time): they run once per worker, and later maps in the same process reuse their values"
        )
    if m["startup"] > 0.5 * wall and wall > 0.05:
        return (
            f"the first call began only after {m['startup'] / wall:.0%} of the wall time (starting workers, "
            f"and sending them the function and the map's keyword arguments): map more work per call of "
            f"map, keep the process alive between maps (pools stay warm), place large arrays in shared "
            f"memory once with fanmap.share, or use fewer workers"
        )
    if m["caller"]["seconds"] > 0.5 * wall:
        return (
            f"the caller spent {m['caller']['seconds'] / wall:.0%} of the wall time pickling and sending "
            f"{m['caller']['bytes'] / 1e6:.1f} MB: {_SEND_LESS}"
        )
    idlest = max(per_worker.items(), key=lambda kv: kv[1]["idle"]) if per_worker else None
    per_item = m["caller"]["bytes"] / max(1, m["items"])
    if per_item >= 100_000 and (
        m["caller"]["seconds"] > 0.25 * wall or (idlest is not None and idlest[1]["idle"] > 0.3 * wall)
    ):
        return (
            f"each item was {_size(int(per_item))} pickled ({_size(m['caller']['bytes'])} in all, sent "
            f"by the caller while the workers waited): {_SEND_LESS}"
        )
    slowest = m["slowest"][0] if m["slowest"] else None
    outlier = slowest is not None and slowest["seconds"] >= 5 * calls["median"]
    if slowest is not None and outlier and slowest["items"] == 1 and slowest["seconds"] > 0.25 * wall:
        share = f"one call took {slowest['seconds'] / wall:.0%} of the wall time (item {slowest['index']})"
        idle = idlest if len(per_worker) > 1 else None
        if idle is not None and idle[1]["idle"] > 0.3 * wall:
            return f"{idle[0]} was idle {idle[1]['idle'] / wall:.0%} of the time: {share}; split that work"
        if slowest["seconds"] > 0.5 * wall:
            return f"{share}: no map ends before its slowest call; split that work, or start it first"
    # Short calls are a problem only where the workers spent most of the map outside them
    # (pickling, waiting for the caller): 40 µs calls can keep two workers 90% busy.
    busy = sum(w["utilisation"] for w in per_worker.values()) / max(1, len(per_worker))
    if calls["count"] and calls["mean"] < 200e-6 and busy < _OVERHEAD_BELOW:
        return (
            f"calls take {_t(calls['mean'])} on average and the workers were in them {busy:.0%} of "
            f"the time: chunking is doing its best (chunks of up to {m['chunks']['max']} items); "
            f"per-call overhead dominates: give each call more work"
        )
    if per_worker:
        low = min(per_worker.items(), key=lambda kv: kv[1]["utilisation"])
        if low[1]["utilisation"] < 0.6 and wall > 0.1:
            return (
                f"{low[0]} was busy only {low[1]['utilisation']:.0%} of the time: the input may come "
                f"too slowly, or there are more workers than work"
            )
    return "nothing stands out: the workers were kept busy"


class Report:
    """What ``fanmap.insights()`` collected: one record per map run inside the block.

    ``print(report)`` shows a compact table with a line of advice per map;
    `to_dict` gives the same as plain data; `save_trace` writes a timeline for
    Perfetto or ``chrome://tracing``; `running` lists the calls in flight now.

    Examples:
        >>> import fanmap
        >>> square = fanmap.parallel(lambda x: x * x, backend="thread", workers=2)
        >>> with fanmap.insights() as report:
        ...     _ = square.map(range(100))
        >>> report.to_dict()["maps"][0]["items"]
        100
    """

    def __init__(self) -> None:
        self.maps: list[MapRecord] = []
        self._lock = threading.Lock()

    def _add(self, record: MapRecord) -> None:
        with self._lock:
            self.maps.append(record)

    def running(self) -> list[dict[str, Any]]:
        """The calls in flight now, the longest-running first (callable from any thread).

        Returns:
            One dict per chunk in flight: ``map``, ``index`` (its first item),
            ``items``, ``worker`` (None while it waits for a free one), ``call`` (a
            short repr of the first item's arguments) and ``seconds`` since it was sent.
        """
        with self._lock:
            maps = list(self.maps)
        return [row for record in maps for row in record.running()]

    def to_dict(self) -> dict[str, Any]:
        """Everything `print` shows, as plain data (JSON-ready).

        Returns:
            ``{"maps": [...]}``, one dict per map: ``items``, ``wall``, ``startup``,
            ``calls`` (count, mean, median, p95, max seconds), ``per_worker`` (calls,
            busy, idle, utilisation, per-worker setup), ``chunks`` (count and sizes),
            ``caller`` (bytes pickled and seconds spent sending), ``retries``,
            ``crashes``, ``timeouts``, ``slowest`` (index, seconds, call),
            ``concurrency`` (most calls at once per worker) and ``advice``.
        """
        with self._lock:
            maps = list(self.maps)
        return {"maps": [record.to_dict() for record in maps]}

    def save_trace(self, path: str | os.PathLike[str]) -> None:
        """Write the timeline in the Chrome trace event format (Perfetto, chrome://tracing).

        One process per map, one track per worker, a slice per chunk and per timed
        call, and marks where a worker crashed, a call timed out or was tried again.

        Args:
            path: The file to write (JSON).
        """
        with self._lock:
            maps = list(self.maps)
        events: list[dict[str, Any]] = []
        origin = min((m.began for m in maps), default=0.0)
        for pid, record in enumerate(maps, 1):
            shift = (record.began - origin) * 1e6
            events.append(_meta("process_name", pid, 0, f"{record.label} ({record.backend})"))
            tracks: dict[str, int] = {}
            ends: dict[str, float] = {}
            lanes: dict[str, list[float]] = {}
            for s in sorted(record.slices, key=lambda s: s.begun):
                if not record.together:  # a worker runs one chunk at a time: never overlap
                    s = dataclasses.replace(s, begun=max(s.begun, ends.get(s.worker, 0.0)))
                    ends[s.worker] = s.begun + s.seconds
                else:  # calls run together: a lane (a track) each, so that slices nest
                    free = lanes.setdefault(s.worker, [])
                    lane = next((i for i, end in enumerate(free) if end <= s.begun), len(free))
                    if lane == len(free):
                        free.append(0.0)
                    free[lane] = s.begun + s.seconds
                    s = dataclasses.replace(s, worker=f"{s.worker} · {lane + 1}")
                events.extend(_slice_events(s, pid, tracks, shift, split=not record.together))
            for name, tid in tracks.items():
                events.append(_meta("thread_name", pid, tid, name))
            for kind, worker, when, what in record.marks:
                tid = tracks.get(worker, tracks.get(f"{worker} · 1", 0))
                events.append(
                    {"name": f"{kind}: {what}", "ph": "i", "s": "t", "pid": pid, "tid": tid,
                     "ts": shift + when * 1e6}
                )  # fmt: skip
        import json

        with open(path, "w", encoding="utf-8") as f:
            json.dump({"traceEvents": events, "displayTimeUnit": "ms"}, f)

    def __str__(self) -> str:
        data = self.to_dict()["maps"]
        if not data:
            return "fanmap insights: no map ran inside the block"
        return "\n\n".join(_format(m) for m in data)

    __repr__ = __str__


def _meta(name: str, pid: int, tid: int, value: str) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": {"name": value}}


def _slice_events(
    s: _Slice, pid: int, tracks: dict[str, int], shift: float, split: bool = True
) -> list[dict[str, Any]]:
    tid = tracks.setdefault(s.worker, len(tracks) + 1)
    last = s.start + s.count - 1
    name = f"item {s.start}" if s.count == 1 else f"items {s.start}-{last}"
    ts = shift + s.begun * 1e6
    out = [{"name": name, "cat": "chunk", "ph": "X", "pid": pid, "tid": tid, "ts": ts, "dur": s.seconds * 1e6,
            "args": {"items": s.count}}]  # fmt: skip
    if split and s.calls is not None and s.count > 1:  # the calls of a chunk, one after another
        at = ts
        for pos, seconds in enumerate(s.calls):
            out.append({"name": f"item {s.start + pos}", "cat": "call", "ph": "X", "pid": pid, "tid": tid,
                        "ts": at, "dur": seconds * 1e6})  # fmt: skip
            at += seconds * 1e6
    return out


#: Workers shown one per line at most; beyond, a summary line and the least busy few.
_LISTED: Final = 8
_LEAST: Final = 3


def _format(m: dict[str, Any]) -> str:
    calls = m["calls"]
    lines = [
        f"{m['map']}: {m['items']:,} items in {_t(m['wall'])} on the {m['backend']} backend "
        f"({m['workers']} workers; the first call began after {_t(m['startup'])})",
        f"  calls     median {_t(calls['median'])}  p95 {_t(calls['p95'])}  max {_t(calls['max'])}"
        f"  mean {_t(calls['mean'])}",
        f"  chunks    {m['chunks']['count']:,} of {m['chunks']['min']}-{m['chunks']['max']} items "
        f"(median {m['chunks']['median']:g})",
    ]
    if m["caller"]["bytes"] or m["caller"]["seconds"]:  # threads and the serial backend pickle nothing
        lines.append(
            f"  caller    {_size(m['caller']['bytes'])} pickled and sent in {_t(m['caller']['seconds'])}"
        )
    workers = list(m["per_worker"].items())
    if len(workers) > _LISTED:  # hundreds of threads: a summary, then the least busy
        shares = sorted(w["utilisation"] for _, w in workers)
        counts = sorted(w["calls"] for _, w in workers)
        middle = len(workers) // 2
        lines.append(
            f"  workers   {len(workers)}: busy {shares[middle]:.0%} median ({shares[0]:.0%} to "
            f"{shares[-1]:.0%}), {counts[middle]:,} calls each median ({counts[0]:,} to {counts[-1]:,}); "
            f"the least busy:"
        )
        workers = sorted(workers, key=lambda kv: kv[1]["utilisation"])[:_LEAST]
    for worker, w in workers:
        setup = f", setup {_t(w['setup'])}" if w["setup"] else ""
        peak = m["concurrency"].get(worker, 1)
        at_once = f", up to {peak} calls at once" if peak > 1 else ""
        busy = f"busy {w['utilisation']:>4.0%}  {w['calls']:,} calls in {_t(w['busy'])}"
        lines.append(f"  {worker:<26} {busy}{setup}{at_once}")
    if m["retries"] or m["crashes"] or m["timeouts"]:
        lines.append(f"  failures  {m['retries']} retries, {m['crashes']} crashes, {m['timeouts']} timeouts")
    for s in m["slowest"]:
        which = (
            f"item {s['index']}" if s["items"] == 1 else f"items {s['index']}-{s['index'] + s['items'] - 1}"
        )
        lines.append(f"  slowest   {which} {s['call']}: {_t(s['seconds'])}")
    lines.append(f"  advice    {m['advice']}")
    return "\n".join(lines)


def _size(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} bytes"


def _t(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e9:.0f} ns"


@contextlib.contextmanager
def insights() -> Iterator[Report]:
    """Record where the time of every map inside the block went.

    Maps run in this thread or task inside the block (including the threads behind
    ``amap`` and ``aimap``) are recorded; concurrent code elsewhere is not mixed in.
    Outside a block nothing is collected.

    Yields:
        The `Report`, filled as the maps run (``report.running()`` works meanwhile).

    Examples:
        >>> import fanmap
        >>> double = fanmap.parallel(lambda x: 2 * x, backend="thread", workers=2)
        >>> with fanmap.insights() as report:
        ...     _ = double.map(range(10))
        >>> len(report.maps)
        1
    """
    report = Report()
    token = _active.set(report)
    try:
        yield report
    finally:
        _active.reset(token)


def recorder(label: str, backend: str, workers: int, describe: Any, together: bool) -> MapRecord | None:
    """A record for a map about to run, or None outside an ``insights()`` block."""
    report = _active.get()
    if report is None:
        return None
    record = MapRecord(label, backend, workers, describe, together)
    report._add(record)
    return record


def describer(mode: int) -> Any:
    """Makes ``(1, 'a')`` of an item, for the slowest calls and `running`."""
    from ._run import describe_call

    def describe(item: Any) -> str:
        try:
            return describe_call(mode, item)
        except Exception:
            return short_repr(item)

    return describe
