"""What importing fanmap costs: public names load on first use, workers load little."""

from __future__ import annotations

import subprocess
import sys

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
        "'fanmap._parallel', 'fanmap._checkpoint', 'fanmap._insights') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "[]", proc.stdout
