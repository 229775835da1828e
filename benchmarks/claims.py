"""The README's and Home's speed claim, made from the latest committed suite run.

Run: .venv/bin/python -m benchmarks.claims   (``benchmarks.suite`` runs it after a full run)

The sentence between the ``<!-- speed -->`` and ``<!-- /speed -->`` markers of README.md
and docs/index.md is rewritten from benchmarks/results/latest.json; the test suite
checks that it still matches.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", ROOT / "docs" / "index.md")
MARKED = re.compile(r"(<!-- speed -->)(.*?)(<!-- /speed -->)", re.S)


def _vs_best_peer(figures: dict[str, float]) -> tuple[float, str]:
    peers = {k: v for k, v in figures.items() if not k.startswith("fanmap")}
    best = max(peers, key=lambda k: peers[k])
    return figures["fanmap"] / peers[best], best


def sentence(latest: dict[str, Any]) -> str:
    """The claim, in words, from a suite run's results."""
    summary = latest["summary"]
    machine = latest["machine"]
    warm, warm_peer = _vs_best_peer(summary["overhead-warm"])
    ranged, _ = _vs_best_peer(summary["overhead-range"])
    cold, _ = _vs_best_peer(summary["overhead-cold"])
    cpu = summary["cpu"]["fanmap"]
    return (
        f"In the latest committed benchmark run ({machine['cpus']} CPUs, Python "
        f"{'.'.join(machine['python'].split('.')[:2])}), 200,000 calls of `x * 2` ran at "
        f"{warm:.2f}x the speed of the fastest peer (`{warm_peer}`) on a warm pool on a list, "
        f"{ranged:.2f}x on a range and {cold:.2f}x on a list including start-up, and 400 "
        f"CPU-bound calls finished at {cpu:.2f}x the speed of a bare `os.fork` split of the work"
    )


def latest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "benchmarks" / "results" / "latest.json").read_text())
    return data


def marked(page: Path) -> str:
    """The claim a page makes now, whitespace folded."""
    found = MARKED.search(page.read_text())
    if found is None:
        raise ValueError(f"{page.name} has no <!-- speed --> ... <!-- /speed --> markers")
    return " ".join(found.group(2).split())


def write() -> None:
    # Wrapped with the two-space indent of the list item it sits in.
    claim = textwrap.fill(sentence(latest()), width=88, initial_indent="  ", subsequent_indent="  ")
    for page in PAGES:
        text = page.read_text()
        if MARKED.search(text) is None:
            raise ValueError(f"{page.name} has no <!-- speed --> ... <!-- /speed --> markers")
        page.write_text(MARKED.sub(f"\\1\n{claim}\n  \\3", text))


if __name__ == "__main__":
    write()
    print(sentence(latest()))
