"""fanmap.insights(): counts and structure, never durations (but for "it did not hang")."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import threading
import time
from pathlib import Path
from typing import Any, Literal

import pytest

import fanmap
from fanmap import Failure, _insights, parallel, per_worker
from tests import afuncs, funcs


def _check_trace(path: Path) -> dict[str, Any]:
    """The Chrome trace event format, as Perfetto and chrome://tracing read it."""
    data = json.loads(path.read_text())
    assert set(data) == {"traceEvents", "displayTimeUnit"}
    for event in data["traceEvents"]:
        assert isinstance(event["name"], str)
        assert event["ph"] in ("X", "i", "M")
        assert isinstance(event["pid"], int)
        assert isinstance(event["tid"], int)
        if event["ph"] == "X":
            assert isinstance(event["ts"], int | float)
            assert isinstance(event["dur"], int | float)
            assert event["dur"] >= 0
        if event["ph"] == "i":
            assert event["s"] in ("t", "p", "g")
        if event["ph"] == "M":
            assert event["name"] in ("process_name", "thread_name")
            assert isinstance(event["args"]["name"], str)
    return data  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_a_map_is_recorded_with_its_items_workers_and_slowest_call(backend: Any, tmp_path: Path) -> None:
    # Item 7 sleeps 0.4 s, the others return at once: it is the slowest by design.
    pf = parallel(funcs.sleep_on, backend=backend, workers=2, chunksize=1)
    with fanmap.insights() as report:
        assert pf.map(range(12), bad=7, seconds=0.4) == list(range(12))
    (m,) = report.to_dict()["maps"]
    assert m["items"] == 12
    assert m["map"] == "sleep_on"
    assert m["backend"] == backend
    assert m["chunks"]["count"] == 12
    assert m["chunks"]["max"] == 1
    assert m["slowest"][0]["index"] == 7
    assert m["slowest"][0]["call"] == "(7,)"
    assert m["calls"]["count"] == 12
    assert sum(w["calls"] for w in m["per_worker"].values()) == 12
    assert len(m["per_worker"]) == (1 if backend == "serial" else 2)
    json.dumps(report.to_dict())  # plain data
    text = str(report)
    assert "sleep_on: 12 items" in text
    assert "item 7 (7,)" in text
    report.save_trace(tmp_path / "trace.json")
    data = _check_trace(tmp_path / "trace.json")
    tracks = {e["args"]["name"] for e in data["traceEvents"] if e["name"] == "thread_name"}
    assert tracks == set(m["per_worker"])
    slices = [e for e in data["traceEvents"] if e["ph"] == "X" and e["cat"] == "chunk"]
    assert sorted(e["name"] for e in slices) == sorted(f"item {i}" for i in range(12))


def test_nothing_is_collected_outside_the_block() -> None:
    before = _insights.made
    pf = parallel(funcs.square, workers=2)
    assert pf.map(range(50)) == [x * x for x in range(50)]
    with fanmap.insights() as report:
        pf.map(range(5))
    assert _insights.made == before + 1
    pf.map(range(5))
    assert _insights.made == before + 1
    assert len(report.maps) == 1


def test_maps_of_other_threads_are_not_mixed_in() -> None:
    pf = parallel(funcs.square, backend="thread", workers=2)
    done = threading.Event()

    def other() -> None:
        pf.map(range(7))
        done.set()

    elsewhere = threading.Thread(target=other)
    with fanmap.insights() as report:
        elsewhere.start()
        done.wait(60)
        pf.map(range(3))
    elsewhere.join()
    assert [m["items"] for m in report.to_dict()["maps"]] == [3]


def test_retries_and_crashes_are_counted_and_marked(tmp_path: Path) -> None:
    pf = parallel(funcs.exit_on, workers=2, chunksize=1, on_error="return", retries=1)
    with fanmap.insights() as report:
        out = pf.map(range(6), bad=3, code=1)
    assert isinstance(out[3], Failure)
    (m,) = report.to_dict()["maps"]
    assert m["items"] == 6  # items, not calls: a retried item counts once
    assert m["crashes"] == 2  # tried twice, lost its worker twice
    assert m["retries"] == 1
    assert "lost with their worker" in m["advice"]
    assert "1 retries, 2 crashes, 0 timeouts" in str(report)
    report.save_trace(tmp_path / "trace.json")
    marks = [e["name"] for e in _check_trace(tmp_path / "trace.json")["traceEvents"] if e["ph"] == "i"]
    assert sorted(marks) == ["crash: item 3", "crash: item 3", "retry: item 3"]


def test_running_lists_a_call_that_waits_on_a_file(tmp_path: Path) -> None:
    path = tmp_path / "go"
    pf = parallel(afuncs.plain_wait_for_file, workers=2)
    seen: list[dict[str, Any]] = []
    with fanmap.insights() as report:

        def watch() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                rows = [r for r in report.running() if r["index"] == 0]
                if rows:
                    seen.extend(rows)
                    break
                time.sleep(0.01)
            path.write_text("")

        watcher = threading.Thread(target=watch)
        watcher.start()
        assert pf.map([5], path=str(path)) == [5]
        watcher.join()
    assert seen
    assert seen[0]["call"] == "(5,)"
    assert seen[0]["worker"].startswith("worker ")
    assert seen[0]["seconds"] >= 0
    assert report.running() == []


def test_per_worker_setup_time_is_reported(tmp_path: Path) -> None:
    load = functools.partial(funcs.record_load, str(tmp_path / "loads"))
    pf = parallel(per_worker(model=load)(funcs.with_model), backend="thread", workers=2)
    with fanmap.insights() as report:
        pf.map(range(8))
    (m,) = report.to_dict()["maps"]
    assert sum(w["setup"] for w in m["per_worker"].values()) > 0
    assert "setup" in str(report)


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_async_calls_are_timed_and_their_concurrency_reported(
    backend: Literal["process", "thread", "serial"], request: pytest.FixtureRequest
) -> None:
    k = 6
    pf = parallel(afuncs.in_worker_barrier, workers=1, concurrency=k, backend=backend)
    with fanmap.insights() as report:
        pf.map(range(k), token=f"insights-{request.node.name}", k=k)  # all k wait for each other
    (m,) = report.to_dict()["maps"]
    assert m["calls"]["count"] == k
    assert list(m["concurrency"].values()) == [k]
    assert f"up to {k} calls at once" in str(report)


def test_amap_in_the_block_is_recorded() -> None:
    pf = parallel(funcs.square, workers=2)

    async def main() -> list[int]:
        return await pf.amap(range(10))

    with fanmap.insights() as report:
        assert asyncio.run(main()) == [x * x for x in range(10)]
    assert [m["items"] for m in report.to_dict()["maps"]] == [10]


def test_tiny_calls_get_the_overhead_advice() -> None:
    # Long enough (some 100 ms) that a worker descheduled for 10 ms on a busy machine does
    # not make one call look like a quarter of the map (the advice would name it instead).
    pf = parallel(funcs.square, workers=2)
    with fanmap.insights() as report:
        pf.map(range(400_000))
    (m,) = report.to_dict()["maps"]
    assert m["items"] == 400_000
    assert "per-call overhead dominates" in m["advice"]
    assert m["chunks"]["max"] > 256  # tiny calls: chunks are timed whole, not call by call


def test_short_calls_that_keep_the_workers_busy_are_not_called_overhead() -> None:
    # Calls of some 100 µs that sleep: the workers are in them nearly all the map, on
    # any machine, so per-call overhead does not dominate.
    pf = parallel(funcs.sleep_for, workers=2)
    with fanmap.insights() as report:
        pf.map([0.00005] * 3000)
    (m,) = report.to_dict()["maps"]
    if m["calls"]["mean"] >= 200e-6:  # the advice is only for calls under 200 µs
        pytest.skip(f"sleeps of 50 µs took {m['calls']['mean'] * 1e6:.0f} µs on average here")
    assert min(w["utilisation"] for w in m["per_worker"].values()) > 0.6, m["per_worker"]
    assert "per-call overhead dominates" not in m["advice"]


def test_one_slow_call_is_named_in_the_advice() -> None:
    pf = parallel(funcs.sleep_on, workers=2)
    with fanmap.insights() as report:
        pf.map(range(40), bad=17, seconds=1.0)
    advice = report.to_dict()["maps"][0]["advice"]
    assert "(item 17)" in advice


def test_the_dask_backend_is_recorded() -> None:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        pf = parallel(funcs.square, backend=fanmap.DaskBackend(client))
        with fanmap.insights() as report:
            assert pf.map(range(20)) == [x * x for x in range(20)]
        fanmap.shutdown()
    (m,) = report.to_dict()["maps"]
    assert m["items"] == 20
    assert list(m["per_worker"]) == ["a Dask worker"]


def test_the_context_holds_in_copied_contexts() -> None:
    pf = parallel(funcs.square, backend="thread", workers=2)
    with fanmap.insights() as report:
        context = contextvars.copy_context()
        runner = threading.Thread(target=context.run, args=(pf.map, range(4)))
        runner.start()
        runner.join()
    assert [m["items"] for m in report.to_dict()["maps"]] == [4]


def test_the_serial_backend_runs_in_the_caller_and_is_not_counted_as_pickling() -> None:
    pf = parallel(funcs.sleep_on, backend="serial")
    with fanmap.insights() as report:
        pf.map(range(10), bad=4, seconds=0.3)
    (m,) = report.to_dict()["maps"]
    assert m["workers"] == 1
    assert m["caller"] == {"bytes": 0, "seconds": 0.0}
    assert "pickling" not in m["advice"]
    assert "(item 4)" in m["advice"]


def test_big_items_get_the_keyword_advice() -> None:
    blobs = [bytes([i]) * 2_000_000 for i in range(20)]  # each item carries 2 MB
    pf = parallel(funcs.length, workers=2)
    with fanmap.insights() as report:
        assert pf.map(blobs) == [2_000_000] * 20
    (m,) = report.to_dict()["maps"]
    assert m["caller"]["bytes"] >= 20 * 2_000_000
    assert "send less in each item: pass an object that every item shares as a map keyword" in m["advice"]


def test_calls_running_together_are_not_blamed_one_by_one() -> None:
    pf = parallel(afuncs.slow_on, workers=1, concurrency=20)
    with fanmap.insights() as report:
        pf.map(range(20), bad=-1, seconds=0.0)  # every call sleeps the same 10 ms, together
    (m,) = report.to_dict()["maps"]
    assert "split that work" not in m["advice"]


def test_running_tells_a_queued_chunk_from_a_running_one(tmp_path: Path) -> None:
    path = tmp_path / "go"
    pf = parallel(afuncs.plain_wait_on, workers=1, chunksize=1)
    states: list[list[str]] = []
    with fanmap.insights() as report:

        def watch() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                rows = report.running()
                # Item 20 waits for the file: look while it runs (fast calls before it
                # may also be seen two at a time, one running and one queued).
                if len(rows) >= 2 and any(r["index"] == 20 for r in rows):
                    states.append([f"{r['index']}:{r['state']}" for r in rows])
                    break
                time.sleep(0.01)
            path.write_text("")

        watcher = threading.Thread(target=watch)
        watcher.start()
        pf.map(range(40), bad=20, path=str(path))  # the fast calls make the worker hold two
        watcher.join()
    assert states
    assert states[0][0] == "20:running"
    assert all(s.endswith(":queued") for s in states[0][1:])


def test_hundreds_of_workers_are_summed_up_in_one_line_and_the_least_busy() -> None:
    pf = parallel(funcs.sleep_for, workers=64, backend="thread")
    with fanmap.insights() as report:
        pf.map([0.001] * 256)
    text = str(report)
    assert "  workers   64: busy " in text
    assert "; the least busy:" in text
    assert sum(line.startswith("  thread ") for line in text.splitlines()) == 3
    assert len(report.to_dict()["maps"][0]["per_worker"]) == 64  # every one, as data
    few = parallel(funcs.sleep_for, workers=2, backend="thread")
    with fanmap.insights() as report:
        few.map([0.001] * 8)
    assert "  workers " not in str(report)
    assert "  caller " not in str(report)  # threads pickle nothing
    assert sum(line.startswith("  thread ") for line in str(report).splitlines()) == 2
    fanmap.shutdown()
