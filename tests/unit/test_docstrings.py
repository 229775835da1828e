"""Every example in a docstring runs, and every public object has a docstring."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import fanmap

_BACKENDS = importlib.import_module("fanmap._backends")
MODULES = sorted(
    ["fanmap"]
    + [f"fanmap.{m.name}" for m in pkgutil.iter_modules(fanmap.__path__)]
    + [f"fanmap._backends.{m.name}" for m in pkgutil.iter_modules(_BACKENDS.__path__)]
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


@pytest.mark.parametrize("name", fanmap.__all__)
def test_public_objects_have_docstrings_with_examples(name: str) -> None:
    obj = getattr(fanmap, name)
    doc = inspect.getdoc(obj) or ""
    assert doc, f"fanmap.{name} has no docstring"
    assert ">>>" in doc, f"fanmap.{name} has no runnable example"
