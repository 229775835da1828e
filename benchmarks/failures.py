"""What each pool does when a call fails: time until the caller knows, hangs, lost results.

Run: .venv/bin/python -m benchmarks.failures [--guard SECONDS]

Cases: Ctrl-C in the caller (time until the program exits, and child processes left),
a raised exception, os._exit(3), SIGKILL, a segfault, a call running past a
1 s timeout, and a result that cannot be pickled. Item 5 of 20 fails; the others take
50 ms. Each (contender, case) runs in a fresh interpreter under a guard: a run that has
not ended by then is reported as a hang and killed.

- "seen after": wall time from the failure (for the timeout case, from the moment the
  call passed its 1 s limit) to the caller holding an exception.
- "kept": how many of the 19 good results the caller still gets when it asks for
  everything it can get (fanmap: on_error="return"; concurrent.futures: one future per
  item; multiprocessing.Pool: one apply_async per item).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from benchmarks._common import descendants, machine, table, versions

CASES = ("exception", "exit", "sigkill", "segfault", "timeout", "unpicklable")
CONTENDERS = ("fanmap", "ProcessPoolExecutor", "multiprocessing.Pool")
BAD = 5
ITEMS = 20
LIMIT = 1.0


def _mark() -> None:
    with open(os.environ["FANMAP_BENCH_MARK"], "w") as f:
        f.write(repr(time.time()))


def work(case: str, x: int) -> Any:
    if x != BAD:
        time.sleep(0.05)
        return x
    if case == "timeout":
        _mark()
        time.sleep(3600)
    _mark()
    if case == "exception":
        raise ValueError(f"item {x} is bad")
    if case == "exit":
        os._exit(3)
    if case == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if case == "segfault":
        ctypes.string_at(0)
    return threading.Lock()  # unpicklable


def _fanmap(case: str, keep: bool) -> tuple[int, str]:
    from fanmap import Failure, parallel

    fn = parallel(work, workers=2, start_method="fork", timeout=LIMIT if case == "timeout" else None)
    if keep:
        out = fn.options(on_error="return").map([case] * ITEMS, range(ITEMS))
        return sum(1 for r in out if not isinstance(r, Failure)), ""
    try:
        fn.map([case] * ITEMS, range(ITEMS))
    except Exception as exc:
        return 0, type(exc).__name__
    return ITEMS, ""


def _succeeded(results: list[Callable[[], object]]) -> int:
    """How many of the per-item results can be had without an exception."""
    kept = 0
    for result in results:
        try:
            result()
            kept += 1
        except Exception:
            pass
    return kept


def _executor(case: str, keep: bool) -> tuple[int, str]:
    timeout = LIMIT + 0.5 if case == "timeout" else None
    with ProcessPoolExecutor(2) as ex:
        if keep:
            futures = [ex.submit(work, case, i) for i in range(ITEMS)]
            return _succeeded([functools.partial(f.result, timeout=timeout) for f in futures]), ""
        try:
            list(ex.map(work, [case] * ITEMS, range(ITEMS), timeout=timeout))
        except Exception as exc:
            return 0, type(exc).__name__
    return ITEMS, ""


def _pool(case: str, keep: bool) -> tuple[int, str]:
    import multiprocessing

    timeout = LIMIT + 0.5 if case == "timeout" else None
    with multiprocessing.get_context("fork").Pool(2) as pool:
        if keep:
            handles = [pool.apply_async(work, (case, i)) for i in range(ITEMS)]
            return _succeeded([functools.partial(h.get, timeout=timeout) for h in handles]), ""
        try:
            pool.starmap_async(work, [(case, i) for i in range(ITEMS)]).get(timeout=timeout)
        except Exception as exc:
            return 0, type(exc).__name__
    return ITEMS, ""


def nap(x: int) -> int:
    time.sleep(30)
    return x


def _long_map(contender: str) -> None:
    """Run 8 calls of 30 s on 2 workers; the parent sends SIGINT meanwhile."""
    print("ready", flush=True)
    if contender == "fanmap":
        from fanmap import parallel

        parallel(nap, workers=2, start_method="fork").map(range(8))
    elif contender == "ProcessPoolExecutor":
        with ProcessPoolExecutor(2) as ex:
            list(ex.map(nap, range(8)))
    else:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.map(nap, range(8))


def _interrupt(contender: str, guard: float) -> str:
    """Send SIGINT to a program in a long map: how long until it exits, what is left."""
    cmd = [sys.executable, "-m", "benchmarks.failures", "--sigint", contender]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(1.0)  # the workers are in their calls
    workers = descendants(proc.pid)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=guard)
        took = f"exits after {(time.monotonic() - sent) * 1000:.0f} ms"
    except subprocess.TimeoutExpired:
        took = f"hangs (> {guard:g} s)"
        proc.kill()
        proc.wait()
    time.sleep(0.5)
    left = [p for p in workers if _state(p) not in ("Z", "")]
    for p in left:
        os.kill(p, signal.SIGKILL)
    return f"{took}, {len(left)} of {len(workers)} child processes left running"


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2]


RUNNERS: dict[str, Callable[[str, bool], tuple[int, str]]] = {
    "fanmap": _fanmap,
    "ProcessPoolExecutor": _executor,
    "multiprocessing.Pool": _pool,
}


def _one(contender: str, case: str, keep: bool) -> None:
    kept, error = RUNNERS[contender](case, keep)
    seen = time.time()
    with open(os.environ["FANMAP_BENCH_MARK"]) as f:
        failed = float(f.read() or "nan")
    if case == "timeout":
        failed += LIMIT
    print(json.dumps({"kept": kept, "error": error, "after": seen - failed}))


def _measure(contender: str, case: str, keep: bool, guard: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", delete=False) as mark:
        path = mark.name
    env = {**os.environ, "FANMAP_BENCH_MARK": path}
    cmd = [sys.executable, "-m", "benchmarks.failures", "--one", contender, case] + (
        ["--keep"] if keep else []
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=guard)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"hang": True}
    finally:
        os.unlink(path)
    try:
        return {"hang": False, **json.loads(out.strip().splitlines()[-1])}
    except (IndexError, ValueError):
        return {"hang": False, "crashed": True}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--guard", type=float, default=15.0, help="seconds before a run counts as hung")
    parser.add_argument("--one", nargs=2, metavar=("CONTENDER", "CASE"), help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sigint", metavar="CONTENDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args.one[0], args.one[1], args.keep)
        return
    if args.sigint:
        _long_map(args.sigint)
        return
    rows = []
    for case in CASES:
        for contender in CONTENDERS:
            fast = _measure(contender, case, False, args.guard)
            kept = _measure(contender, case, True, args.guard)
            if fast.get("hang"):
                seen = f"hangs (> {args.guard:g} s)"
            elif fast.get("crashed"):
                seen = "caller crashed"
            elif not fast.get("error"):
                seen = "no error raised"
            else:
                seen = f"{fast['after'] * 1000:.0f} ms ({fast['error']})"
            keep = "hangs" if kept.get("hang") else f"{kept.get('kept', 0)}/{ITEMS - 1}"
            rows.append([case, contender, seen, keep])
            print(f"  {case:12} {contender:22} {seen:40} kept {keep}", file=sys.stderr)
    print(f"\n{machine()}  {versions('fanmap')}\n")
    print(table(["failure", "contender", "seen after", "kept"], rows))
    print("\nCtrl-C (SIGINT to the caller) during a map of 8 calls of 30 s on 2 workers:\n")
    sigint = [[contender, _interrupt(contender, args.guard)] for contender in CONTENDERS]
    print(table(["contender", "after SIGINT"], sigint))


if __name__ == "__main__":
    main()
