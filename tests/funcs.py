"""Module-level functions for the tests: importable in spawn and forkserver workers."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from fanmap import parallel


def square(x: int) -> int:
    return x * x


def add(a: int, b: int = 0, *, c: int = 0) -> int:
    return a + b + c


def identity(x: Any) -> Any:
    return x


def pid(_: object = None) -> int:
    return os.getpid()


@parallel(workers=2)
def psquare(x: int) -> int:
    return x * x


class CustomError(Exception):
    pass


def fail_on(x: int, bad: int = 3) -> int:
    if x == bad:
        raise CustomError(f"bad item {x}")
    return x


def chained(x: int) -> int:
    try:
        _ = {"present": 1}["missing"]
    except KeyError as exc:
        raise ValueError(f"wrapped {x}") from exc
    return x


def implicit_context(x: int) -> int:
    try:
        raise OSError("first")
    except OSError:
        raise RuntimeError(f"second {x}") from None


class NeedsTwoArgs(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


def raise_unrebuildable(x: int) -> int:
    raise NeedsTwoArgs(x, 2)


class HoldsLock(Exception):
    def __init__(self) -> None:
        import threading

        super().__init__("holds a lock")
        self.lock = threading.Lock()


def raise_unpicklable(x: int) -> int:
    raise HoldsLock()


def return_generator(x: int) -> Any:
    return (i for i in range(x))


def return_lambda_on(x: int) -> Any:
    import threading

    return threading.Lock() if x == 2 else x


def exit_on(x: int, bad: int = 2, code: int = 0) -> int:
    if x == bad:
        os._exit(code)
    return x


def exit_late_on(x: int, bad: int = 2, code: int = 0) -> int:
    """Exit on ``bad`` a second late, once the worker has told its peers about earlier results."""
    if x == bad:
        time.sleep(1.0)
        os._exit(code)
    return x


def kill_self_on(x: int, bad: int = 2) -> int:
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def segfault_on(x: int, bad: int = 2) -> int:
    if x == bad:
        ctypes.string_at(0)
    return x


def sleep_on(x: int, bad: int = 2, seconds: float = 60.0) -> int:
    if x == bad:
        time.sleep(seconds)
    return x


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def spawn_grandchild_and_hang(path: str) -> int:
    """Start a grandchild that writes its pid to ``path``, then hang."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    with open(path, "w") as f:
        f.write(str(child.pid))
    time.sleep(300)
    return 0


def flaky(path: str, failures: int) -> str:
    """Fail ``failures`` times (counted in a file), then succeed."""
    count = 0
    if os.path.exists(path):
        with open(path) as f:
            count = int(f.read())
    with open(path, "w") as f:
        f.write(str(count + 1))
    if count < failures:
        raise ConnectionError(f"attempt {count + 1} failed")
    return "ok"


def crash_once(path: str) -> str:
    """Kill the worker the first time (counted in a file), then succeed."""
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write("1")
        os._exit(7)
    return "ok"


def nested_map(n: int) -> list[int]:
    return psquare.map(range(n))


def sum_of_squares(n: int) -> int:
    return sum(i * i for i in range(n))


# -- shared state -------------------------------------------------------------------

from fanmap import Array, Dict, List, Queue, Value, shared_state  # noqa: E402

COUNTER: Value[int] = Value("q", 0)
HIST: Array[int] = Array("q", 8)
SEEN: Dict[str, int] = Dict()


@parallel(workers=2)
@shared_state(counter=COUNTER, hist=HIST, seen=SEEN)
def count_everything(x: int, *, counter: Value[int], hist: Array[int], seen: Dict[str, int]) -> int:
    counter.add(1)
    hist.add(x % 8, 1)
    with seen.lock:
        key = str(x % 3)
        seen[key] = seen.get(key, 0) + 1
    return x


@shared_state(total=Value("d", 0.0))
@parallel(workers=2)
def add_to_total(x: float, *, total: Value[float]) -> float:
    return total.add(x)


def bump_many(n: int, *, counter: Value[int]) -> int:
    for _ in range(n):
        counter.add(1)
    return n


def bump_unsafely(n: int, *, counter: Value[int]) -> int:
    for _ in range(n):
        counter.value = counter.value + 1  # a read and a write: loses updates
    return n


def apply_updates(updates: list[tuple[int, int]], *, array: Array[int]) -> int:
    for index, amount in updates:
        array.add(index, amount)
    return len(updates)


def produce(x: int, *, out: Queue[int], log: List[int]) -> None:
    out.put(x * x)
    log.append(x)


def array_sum(values: object, *, scale: float = 1.0) -> float:
    import numpy as np

    arr = np.asarray(values)
    return float(arr.sum()) * scale


class CountsPickles:
    """Counts how often it is pickled (in the process that pickles it)."""

    pickled = 0

    def __reduce__(self) -> tuple[Any, ...]:
        CountsPickles.pickled += 1
        return (CountsPickles, ())


def uses(x: int, *, thing: object) -> int:
    return x


def private_mb() -> float:
    fields = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                fields[parts[0].rstrip(":")] = int(parts[1])
    return (fields["Private_Clean"] + fields["Private_Dirty"]) / 1024


def inspect_array(i: int, arr: Any) -> tuple[float, float, bool]:
    """The array's sum, this worker's private memory in MB, and whether it is writeable."""
    return float(arr.sum()), private_mb(), bool(arr.flags.writeable)


def double_in_place(i: int, arr: Any) -> None:
    arr[i] *= 2


def inspect_array_then_fail(i: int, arr: Any) -> float:
    if i == 3:
        raise CustomError("fails after reading the array")
    return float(arr[i])


def inspect_array_then_crash(i: int, arr: Any) -> float:
    if i == 3:
        os._exit(9)
    return float(arr[i])


# -- logging --------------------------------------------------------------------------


app_log = logging.getLogger("fanmap.tests.app")


def log_steps(x: int, steps: int = 3) -> int:
    for step in range(steps):
        app_log.info("item %d step %d", x, step)
    app_log.debug("item %d debug", x)
    return x


def log_then_exit(x: int) -> int:
    app_log.warning("item %d says goodbye", x)
    if x == 2:
        os._exit(4)
    return x


def log_exception(x: int) -> int:
    try:
        raise KeyError(x)
    except KeyError:
        app_log.exception("item %d failed inside", x)
    return x


def scale(x: int, k: int = 1) -> int:
    return x * k


class Offset:
    """A callable object, as users pass to Pool.map."""

    def __init__(self, by: int) -> None:
        self.by = by

    def __call__(self, x: int) -> int:
        return x + self.by


def payload(i: int) -> bytes:
    return bytes(100_000)


def length(b: bytes) -> int:
    return len(b)


def record_load(path: str) -> int:
    """A per-worker factory that notes, in a file, each time it runs."""
    with open(path, "a") as f:
        f.write(f"load {os.getpid()}\n")
    return os.getpid()


def record_connection(path: str) -> Iterator[str]:
    """A generator factory: notes its setup and its teardown."""
    with open(path, "a") as f:
        f.write(f"open {os.getpid()}\n")
    yield f"conn-{os.getpid()}"
    with open(path, "a") as f:
        f.write(f"close {os.getpid()}\n")


def failing_factory(path: str) -> int:
    with open(path, "a") as f:
        f.write(f"start {os.getpid()}\n")
    raise ValueError("the model file is missing")


def sleeping_factory(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def with_values(x: int, *, model: int, db: str) -> tuple[int, int, str, int]:
    return x, model, db, os.getpid()


def with_model(x: int, *, model: Any) -> int:
    return x


def slow_with_model(x: float, *, model: Any) -> float:
    time.sleep(x)
    return x


def slow_identity(x: int) -> int:
    time.sleep(0.01)
    return x


def identity_or_fail(x: Any) -> Any:
    raise ValueError(f"no: {x!r}")


def capture(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def mul(x: int, y: int) -> int:
    return x * y


def raise_system_exit(code: int) -> int:
    raise SystemExit(code)


_EXECUTOR_TAG: str | None = None


def set_tag(tag: str) -> None:
    global _EXECUTOR_TAG
    _EXECUTOR_TAG = tag


def read_tag(_: object = None) -> str | None:
    return _EXECUTOR_TAG


def failing_initializer() -> None:
    raise ValueError("initializer failed")


class UnpicklesBadly:
    """Pickles in the worker, fails to unpickle in the caller (cpython#79492)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, ())


def _refuse() -> None:
    raise RuntimeError("cannot be rebuilt here")


def return_unpickles_badly(x: int) -> Any:
    return UnpicklesBadly() if x == 1 else x


def identity_of_size(x: Any) -> int:
    return 1


def noted_triple(x: int, path: str = "") -> int:
    """Triples x, noting each call in a file (one line per call)."""
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return 3 * x


def fails_on_odd_once(x: int, path: str = "") -> int:
    """Fails odd items the first time they are called (a file remembers)."""
    seen = False
    if os.path.exists(path):
        with open(path) as f:
            seen = f"{x}\n" in f.read().splitlines(keepends=True)
    with open(path, "a") as f:
        f.write(f"{x}\n")
    if x % 2 and not seen:
        raise ValueError(f"odd {x}")
    return x


def return_lock_on(x: int) -> Any:
    import threading

    return threading.Lock() if x == 2 else x


class UnreadableHere:
    """Pickles in a worker, fails to unpickle in the caller (an `extra=` in a log record)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, ())


def log_unreadable_then_return(x: int) -> int:
    logging.getLogger("tests.unreadable").warning("item %d", x, extra={"odd": UnreadableHere()})
    return x * 10


def counting_factory(path: str) -> int:
    time.sleep(0.05)
    with open(path, "a") as f:
        f.write("made\n")
    return 1


def negate(x: int) -> int:
    return -x


class Marker:
    """A result rebuilt in the caller by `rebuild_marker`."""

    def __init__(self, i: int, folder: str, last: int) -> None:
        self.i, self.folder, self.last = i, folder, last

    def __reduce__(self) -> tuple[Any, ...]:
        return (rebuild_marker, (self.i, self.folder, self.last))


def start_and_mark(i: int, folder: str, last: int) -> Marker:
    """Notes that call ``i`` started (a file), and returns a `Marker`."""
    with open(os.path.join(folder, f"started-{i}"), "w"):
        pass
    return Marker(i, folder, last)


def rebuild_marker(i: int, folder: str, last: int) -> tuple[int, bool]:
    """Unpickled in the caller: whether call ``i + 1`` had started by then (waits 10 s at most).

    It can only start if the caller sent it before it unpickled this result.
    """
    following = os.path.join(folder, f"started-{i + 1}")
    deadline = time.monotonic() + 10
    while i < last and time.monotonic() < deadline:
        if os.path.exists(following):
            return (i, True)
        time.sleep(0.005)
    return (i, i == last)


def fail_odd(x: int) -> int:
    if x % 2:
        raise CustomError(f"odd {x}")
    return x


def fork_chatter(x: int, seconds: float = 1.0) -> int:
    """For item 0, forks a child that prints for ``seconds`` (its prints share the worker's
    reply pipe, and must never land inside a reply); returns ``x``."""
    if x == 0 and os.fork() == 0:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            print(f"child line {i}", flush=True)
            i += 1
        os._exit(0)
    return x


def print_until(x: int, flag: str = "") -> int:
    """For item 0, starts a thread in the worker that logs and prints without pause until
    ``flag`` exists (or a minute passed); returns ``x``."""
    if x == 0:

        def chatter() -> None:
            end = time.monotonic() + 60
            log = logging.getLogger("fanmap.tests.chatter")
            while not os.path.exists(flag) and time.monotonic() < end:
                log.warning("chatter %s", "x" * 50)
                print("chatter", flush=True)

        threading.Thread(target=chatter, daemon=True).start()
    return x


class Payload:
    """A keyword value whose lifetime a test can watch (with a weak reference)."""

    def __init__(self, size: int) -> None:
        self.size = size


def fail_on_with(x: int, *, payload: Payload, bad: int = 3) -> int:
    if x == bad:
        raise CustomError(f"bad item {x} of {payload.size}")
    return x
