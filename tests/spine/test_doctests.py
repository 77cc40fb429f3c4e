"""Every docstring example in thor_cli runs and gives what it shows (the suite's own doctest pass)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import thor_cli

# imported only where their optional engine is installed
OPTIONAL = {"thor_cli.backends.vllm"}


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(thor_cli.__path__, "thor_cli.") if m.name not in OPTIONAL)


def _with_examples() -> list[str]:
    out = []
    for name in _modules():
        mod = importlib.import_module(name)
        if doctest.DocTestFinder().find(mod) and any(t.examples for t in doctest.DocTestFinder().find(mod)):
            out.append(name)
    return out


@pytest.mark.parametrize("name", _with_examples())
def test_docstring_examples(name: str) -> None:
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
