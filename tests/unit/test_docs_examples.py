"""The ```python blocks of the docs run (```py blocks are for show only)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def runnable(page: Path) -> str:
    return "\n\n".join(BLOCK.findall(page.read_text()))


# `print(x)  # 309: a note` says that the print shows 309. The comment is checked when it
# starts the way a printed value does (a number, a list, a string, True...).
SHOWN = re.compile(r"^(\s*)print\((.*)\)\s*#\s*(.+)$")
VALUE_START = re.compile(r"""^[-0-9\[({'"]|^(True|False|None)\b|^[A-Z][A-Za-z]*\(""")
CHECKER = """
def __shown__(*values, expected, line):
    text = " ".join(map(str, values))
    print(text)
    if not expected.startswith(text):
        raise AssertionError(f"line {line} of the example prints {text!r}, the page says {expected!r}")
"""


def checked(source: str) -> str:
    """The examples with each `print(...)  # value` checked against what it prints."""
    lines = []
    for number, line in enumerate(source.splitlines(), 1):
        shown = SHOWN.match(line)
        if shown and VALUE_START.match(shown.group(3)):
            indent, args, expected = shown.groups()
            line = f"{indent}__shown__({args}, expected={expected!r}, line={number})"
        lines.append(line)
    return CHECKER + "\n".join(lines)


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(checked(runnable(page)))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False
    )
    assert proc.returncode == 0, f"the examples of {page.name} failed:\n{proc.stderr}"


def test_some_pages_have_runnable_examples() -> None:
    assert sum(1 for p in PAGES if runnable(p)) >= 5


def test_page_examples_pass_mypy_strict(tmp_path: Path) -> None:
    """The documented examples type-check as they stand, as users will copy them."""
    pages = [p for p in PAGES if runnable(p)]
    for i, page in enumerate(pages):
        (tmp_path / f"example_{i}.py").write_text(runnable(page))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--ignore-missing-imports",
            "--no-incremental",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    names = {f"example_{i}.py": str(p.relative_to(ROOT)) for i, p in enumerate(pages)}
    report = proc.stdout
    for file, source in names.items():
        report = report.replace(file, source)
    assert proc.returncode == 0, report


def test_shown_outputs_are_checked() -> None:
    source = checked('print(1 + 1)  # 3: wrong on purpose\nprint("x")  # says nothing checkable')
    assert "__shown__(1 + 1, expected='3: wrong on purpose', line=1)" in source
    assert 'print("x")' in source
