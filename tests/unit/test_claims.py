"""What the README and Home say about speed is the latest committed benchmark run's."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _claims() -> list[str]:
    summary = json.loads((ROOT / "benchmarks" / "results" / "latest.json").read_text())["summary"]
    warm = summary["overhead-warm"]["fanmap"] / summary["overhead-warm"]["Pool.map"]
    cold = summary["overhead-cold"]["fanmap"] / summary["overhead-cold"]["Pool.map"]
    cpu = summary["cpu"]["fanmap"]
    return [
        f"at {warm:.2f}x the speed of",
        f"and {cold:.2f}x including start-up",
        f"{cpu:.2f}x faster than a bare",
    ]


def test_the_readme_and_home_quote_the_latest_run() -> None:
    for page in (ROOT / "README.md", ROOT / "docs" / "index.md"):
        text = " ".join(page.read_text().split())
        for claim in _claims():
            assert " ".join(claim.split()) in text, f"{page.name} does not say {claim!r} (latest.json does)"
