"""fanmap in real Jupyter kernels (ipykernel driven by nbclient), under each start method.

One kernel per start method serves every test of this module, cell after cell, as a
notebook would: the pool warmed up by an early cell is older than the classes defined
later. The last test kills the kernel in the middle of a map, checks that its workers
die with it, and maps again in the restarted kernel.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import START_METHODS, alive

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
run_sync = pytest.importorskip("jupyter_core.utils").run_sync

ROOT = Path(__file__).resolve().parents[2]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Kernel:
    """A running kernel: `run` executes one cell and returns its outputs as text."""

    def __init__(self, client: Any, workdir: Path) -> None:
        self.client = client
        self.workdir = workdir
        self.cells = 0

    def run(self, code: str) -> tuple[str, str, str]:
        """Run a cell; return (stdout, stderr, error traceback) as plain text."""
        cell = nbformat.v4.new_code_cell(code)
        self.client.nb.cells.append(cell)
        self.client.execute_cell(cell, len(self.client.nb.cells) - 1)
        out: list[str] = []
        err: list[str] = []
        error: list[str] = []
        for output in cell.outputs:
            if output.output_type == "stream":
                (out if output.name == "stdout" else err).append(output.text)
            elif output.output_type == "error":
                error.append(_ANSI.sub("", "\n".join(output.traceback)))
            elif output.output_type == "execute_result":
                out.append(output.data.get("text/plain", "") + "\n")
        return "".join(out), "".join(err), "".join(error)


@pytest.fixture(scope="module", params=START_METHODS)
def kernel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    workdir = tmp_path_factory.mktemp(f"notebook-{request.param}")
    notebook = nbformat.v4.new_notebook()
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    env = {**os.environ, "FANMAP_START_METHOD": request.param, "PYTHONPATH": str(ROOT / "src")}
    with client.setup_kernel(env=env):
        kernel = Kernel(client, workdir)
        out, _, error = kernel.run(
            "import fanmap\nfrom fanmap import parallel, pmap\n"
            "warm = parallel(lambda x: x, workers=2)\nprint(warm.map(range(4)))"
        )
        assert out == "[0, 1, 2, 3]\n", error
        yield kernel
        kernel.run("fanmap.shutdown()")


def test_instances_of_cell_classes_cross_both_ways_with_a_warm_pool(kernel: Kernel) -> None:
    out, err, error = kernel.run(
        "from dataclasses import dataclass\n"
        "@dataclass\nclass P:\n    x: int\n"
        "class Bad(Exception):\n    pass\n"
        "print(pmap(lambda p: p.x, [P(1), P(2)], workers=2))\n"
        "back = pmap(lambda x: P(x * 10), [1, 2], workers=2)\n"
        "print(back, all(isinstance(b, P) for b in back))\n"
        "def fails(p):\n    raise Bad(f'bad {p.x}')\n"
        "try:\n    pmap(fails, [P(7)], workers=2)\n"
        "except Bad as exc:\n    print('caught', type(exc).__name__, exc)\n"
    )
    assert error == "", error
    assert out.splitlines() == ["[1, 2]", "[P(x=10), P(x=20)] True", "caught Bad bad 7"], err


def test_a_failing_cell_shows_the_cells_frames_and_source(kernel: Kernel) -> None:
    _, _, error = kernel.run(
        "def lookup(key):\n    table = {'a': 1}\n    return table[key]\n\npmap(lookup, ['a', 'b'], workers=2)"
    )
    assert "<dynamic-code>" not in error
    assert re.search(r"Cell In\[\d+\], line 3", error), error
    assert re.search(r"----> 3 +return table\[key\]", error), error
    assert "KeyError: 'b'" in error
    assert "raised by item 1 ('b',)" in error


def test_prints_of_workers_land_in_the_cell(kernel: Kernel) -> None:
    out, err, error = kernel.run(
        "import sys\n"
        "def talk(x):\n    print('hello', x)\n    print('warn', x, file=sys.stderr)\n    return x\n"
        "print('result', pmap(talk, range(4), workers=2))"
    )
    assert error == "", error
    lines = out.splitlines()
    assert lines[-1] == "result [0, 1, 2, 3]"
    assert sorted(lines[:-1]) == [f"hello {i}" for i in range(4)]
    assert sorted(err.splitlines()) == [f"warn {i}" for i in range(4)]


def test_async_functions_of_a_cell_are_awaited_at_the_top_level(kernel: Kernel) -> None:
    out, err, error = kernel.run(
        "import asyncio\n"
        "@parallel(workers=2, concurrency=8)\n"
        "async def fetch(x):\n    await asyncio.sleep(0.01)\n    return x * 3\n"
        "print(await fetch.amap(range(6)))\n"
        "print([r async for r in fetch.aimap(range(3))])\n"
        "print(await pmap_cell.amap([-1, -2]) if (pmap_cell := parallel(abs, workers=2)) else None)\n"
        "try:\n    fetch.map([1])\nexcept RuntimeError as exc:\n    print('refused', 'amap' in str(exc))\n"
    )
    assert error == "", error
    assert out.splitlines() == ["[0, 3, 6, 9, 12, 15]", "[0, 3, 6]", "[1, 2]", "refused True"], err
    _, _, error = kernel.run(
        "async def broken(x):\n    await asyncio.sleep(0)\n    return {}[x]\n\n"
        "await parallel(broken, workers=2).amap(['k'])"
    )
    assert re.search(r"----> 3 +return \{\}\[x\]", error), error
    assert "KeyError: 'k'" in error


def test_workers_die_with_a_killed_kernel_and_a_restarted_kernel_maps(kernel: Kernel) -> None:
    marks = kernel.workdir / "marks"
    marks.mkdir()
    code = (
        "import os, time\n"
        "def hold(x):\n"
        f"    open(os.path.join({str(marks)!r}, str(os.getpid())), 'w').close()\n"
        "    time.sleep(120)\n"
        "    return x\n"
        "pmap(hold, range(2), workers=2, chunksize=1)\n"
    )
    kernel.client.kc.execute(code)  # do not wait: the kernel dies while it runs
    deadline = time.monotonic() + 60
    while len(list(marks.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p.name) for p in marks.iterdir()]
    assert len(pids) == 2, "the workers never started"
    run_sync(kernel.client.km.restart_kernel)(now=True)
    deadline = time.monotonic() + 3
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids), "busy workers outlived their killed kernel"
    run_sync(kernel.client.kc.wait_for_ready)(timeout=60)
    out, _, error = kernel.run("from fanmap import pmap\nprint(pmap(abs, [-1, -2], workers=2))")
    assert out == "[1, 2]\n", error
