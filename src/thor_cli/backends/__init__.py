"""Generation backends behind one async interface (see base.py).

Registry: name -> "module:factory". Factories take (model: str, **options) and return a Backend.
Imports are lazy so that `thor --help` and CPU-only machines never import vllm.
"""

from __future__ import annotations

import importlib
from typing import Any

from thor_cli.backends.base import Backend, Completion, FinishReason, SamplingParams
from thor_cli.errors import UsageError

BACKENDS: dict[str, str] = {
    "hf": "thor_cli.backends.hf:HFBackend",
    "vllm": "thor_cli.backends.vllm:VLLMBackend",
    "openai": "thor_cli.backends.openai:OpenAIBackend",
    "scripted": "thor_cli.backends.scripted:ScriptedBackend",
}


def load_backend(name: str, model: str, **options: Any) -> Backend:
    """Instantiate backend ``name`` for ``model`` (an HF id, a local folder or a cached name)."""
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}", f"choose one of: {', '.join(sorted(BACKENDS))}")
    module_name, attr = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        hint = ("install the extra: pip install 'thor-cli[vllm]' (GPU); on a CPU, build .venv-vllm with "
                "shell/vllm-venv.sh and run with its python" if name == "vllm" else "reinstall thor")
        raise UsageError(f"backend {name!r} is not available ({e})", hint) from None
    factory = getattr(module, attr)
    backend: Backend = factory(model, **options)
    return backend


__all__ = ["BACKENDS", "Backend", "Completion", "FinishReason", "SamplingParams", "load_backend"]
