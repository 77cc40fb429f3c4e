"""The examples in the rl modules' docstrings are run (CI does not collect doctests by itself)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["advantages", "dapo", "filters", "rewards"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    mod = importlib.import_module(f"thor_cli.train.rl.{name}")
    res = doctest.testmod(mod)
    assert res.attempted > 0 and res.failed == 0
