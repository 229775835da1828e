"""Progress: the callable form counts items, the tqdm bar draws and always closes."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from fanmap import parallel
from tests import funcs


def test_callable_counts_items_not_chunks(backend: Any) -> None:
    seen: list[tuple[int, int | None]] = []
    pf = parallel(
        funcs.square, workers=2, backend=backend, chunksize=7, progress=lambda d, t: seen.append((d, t))
    )
    pf.map(range(100))
    assert seen[-1] == (100, 100)
    assert all(t == 100 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) >= 100 // 7  # once per chunk at least


def test_unordered_and_lazy_runs_report_too(backend: Any) -> None:
    seen: list[tuple[int, int | None]] = []
    pf = parallel(funcs.square, workers=2, backend=backend, progress=lambda d, t: seen.append((d, t)))
    sorted(pf.imap_unordered(iter(range(50))))
    assert seen[-1] == (50, None)  # a generator has no length
    sized: list[tuple[int, int | None]] = []
    list(pf.options(progress=lambda d, t: sized.append((d, t))).imap(range(50)))
    assert sized[-1] == (50, 50)  # a range has one


def test_failed_items_count_as_done() -> None:
    seen: list[int] = []
    pf = parallel(funcs.fail_on, workers=2, on_error="skip", progress=lambda d, t: seen.append(d))
    assert len(pf.map(range(10))) == 9
    assert seen[-1] == 10


def test_tqdm_bar_on_stderr(backend: Any, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    parallel(funcs.square, workers=2, backend=backend, progress=True).map(range(500))
    err = capsys.readouterr().err
    assert "500/500" in err
    assert "square" in err  # the bar is labelled with the function's name
    assert "it/s" in err or "item/s" in err


def test_tqdm_bar_closes_on_error(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    with pytest.raises(funcs.CustomError):
        parallel(funcs.fail_on, workers=2, progress=True).map(range(100))
    err = capsys.readouterr().err
    assert err.endswith("\n")  # closed: the line was finished


def test_progress_true_without_tqdm_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match=r"pip install 'fanmap\[progress\]'"):
        parallel(funcs.square, backend="serial", progress=True).map([1])
