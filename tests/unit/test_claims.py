"""What the README and Home say about speed is the latest committed benchmark run's."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_and_home_quote_the_latest_run() -> None:
    from benchmarks import claims

    expected = " ".join(claims.sentence(claims.latest()).split())
    for page in claims.PAGES:
        said = claims.marked(page)
        assert said == expected, f"{page.name} says {said!r}; latest.json gives {expected!r}"


def _async_claims() -> list[str]:
    saved = json.loads((ROOT / "benchmarks" / "results" / "async_io.json").read_text())
    ideal = saved["sleep"]["ideal"]
    seconds = saved["sleep"]["seconds"]
    tiny = saved["tiny"]
    per_result = {k: v / tiny["calls"] * 1e6 for k, v in tiny["seconds"].items()}
    ours = seconds["fanmap (2 processes x 64 coroutines)"] / ideal
    aiomp = seconds["aiomultiprocess (2 processes x 64 coroutines)"] / ideal
    gathered = seconds["asyncio.gather, one process, Semaphore(128)"] / ideal
    return [
        f"took {ours:.2f}x the ideal time",
        f"aiomultiprocess on the same layout ({aiomp:.2f}x)",
        f"a semaphore of 128 ({gathered:.2f}x)",
        f"cost {per_result['fanmap aimap (async for)']:.1f} µs a result",
        f"against {per_result['run_in_executor + gather']:.0f} µs a result",
    ]


def _insights_claims() -> list[str]:
    saved = json.loads((ROOT / "benchmarks" / "results" / "insights.json").read_text())
    tiny = saved["tiny"]["with"] / saved["tiny"]["without"]
    slow = saved["slow"]["with"] / saved["slow"]["without"]
    return [f"took {tiny:.3f}x the time with insights on", f"2,000 calls of 1 ms of work {slow:.3f}x"]


def test_the_async_and_insights_guides_quote_their_latest_runs() -> None:
    for page, claims in (("async.md", _async_claims()), ("insights.md", _insights_claims())):
        text = " ".join((ROOT / "docs" / "guides" / page).read_text().split())
        for claim in claims:
            assert " ".join(claim.split()) in text, f"{page} does not say {claim!r} (the saved run does)"


def test_the_benchmarks_page_shows_the_saved_accounting() -> None:
    from benchmarks import accounting

    saved = json.loads((ROOT / "benchmarks" / "results" / "accounting.json").read_text())
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    for line in "\n".join(accounting.tables(saved)).splitlines():
        assert line in page, f"docs/benchmarks.md lacks {line!r} (benchmarks/results/accounting.json has it)"
