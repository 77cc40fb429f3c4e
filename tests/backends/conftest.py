"""Fixtures for the backend tests: the tiny model behind `hf`, and local HTTP servers for `openai`
(``servers``: the helpers of openai_app.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from openai_app import completions_app, fake_app, serve  # beside this file


@pytest.fixture(scope="session")
def hf_tiny(tiny_model_dir: Path) -> Any:
    from thor_cli.backends.hf import HFBackend

    backend = HFBackend(str(tiny_model_dir), max_batch=16)
    yield backend
    asyncio.run(backend.close())


@pytest.fixture(scope="session")
def chat_prompt(hf_tiny: Any) -> list[int]:
    enc = hf_tiny.tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+2?"}],
                                                add_generation_prompt=True, tokenize=True)
    return [int(t) for t in enc["input_ids"]]


@pytest.fixture
def servers() -> Any:
    """The helpers above, for test modules: servers.serve, servers.completions_app, servers.fake_app."""
    class _Servers:
        pass

    ns = _Servers()
    ns.serve, ns.completions_app, ns.fake_app = serve, completions_app, fake_app  # type: ignore[attr-defined]
    return ns
