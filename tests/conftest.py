"""Shared fixtures: an isolated THOR_HOME and a tiny random model built once per session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

# As the thor command does (cli/app.py): OpenMP threads that spin collapse on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 checkpoint with a ChatML tokenizer (built in about a second)."""
    from thor_cli.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tok(tiny_model_dir: Path) -> Any:
    """The tiny model's real tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch the user's ~/.cache/thor unless they ask for it."""
    monkeypatch.setenv("THOR_HOME", str(tmp_path / "thor-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def pool_starts(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every SandboxPool started during the test, in order (to check how many a component starts)."""
    from thor_cli.sandbox import SandboxPool

    started: list[SandboxPool] = []
    real_start = SandboxPool._start  # what start() runs once per pool, however many call it

    async def counting_start(self: SandboxPool) -> SandboxPool:
        started.append(self)
        return await real_start(self)

    monkeypatch.setattr(SandboxPool, "_start", counting_start)
    return started
