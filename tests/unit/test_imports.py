"""What importing fanmap costs: public names load on first use, workers load little."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import fanmap


def test_every_public_name_is_exported_lazily() -> None:
    assert sorted(fanmap._LAZY) == sorted(fanmap.__all__)
    assert set(fanmap.__all__) <= set(dir(fanmap))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        fanmap.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def test_a_worker_process_imports_only_what_plain_maps_need() -> None:
    # What a spawned worker imports before its first call: no engine, API, asyncio or sqlite3.
    code = (
        "import sys, fanmap._worker; "
        "print(sorted(m for m in ('asyncio', 'sqlite3', 'fanmap._engine', 'fanmap._api', "
        "'fanmap._parallel', 'fanmap._checkpoint', 'fanmap._insights', 'fanmap._run') "
        "if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "[]", proc.stdout


def test_a_spawned_worker_of_a_script_loads_no_more_than_it_needs(tmp_path: Path) -> None:
    # Each module costs every spawned worker its start-up time: a plain map of a script's
    # function loads none of these in the worker (they are imported where used).
    script = tmp_path / "script.py"
    script.write_text(
        "import sys\n"
        "from fanmap import parallel\n"
        "UNWANTED = ('asyncio', 'sqlite3', 'cloudpickle', 'dataclasses', 'uuid',\n"
        "            'concurrent.futures', 'fanmap._engine', 'fanmap._run', 'fanmap._api',\n"
        "            'fanmap._errors')\n"
        "def loaded(_):\n"
        "    return sorted(m for m in UNWANTED if m in sys.modules)\n"
        "print(parallel(loaded, workers=1, start_method='spawn').map([0]))\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stdout.strip() == "[[]]", proc.stdout + proc.stderr
