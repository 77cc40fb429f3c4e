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
    "vllm-server": "thor_cli.backends.vllm_server:VLLMServerBackend",
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


def parse_backend_options(pairs: list[str], flag: str = "--backend-option") -> dict[str, Any]:
    """``["enforce_eager=true", "dtype=float32", "kv_cache_memory_bytes=536870912"]`` -> options for
    ``load_backend``. A value is read as JSON when it parses (numbers, true/false, null, lists,
    objects), else kept as a string. For a repeatable CLI flag; the backend checks the names."""
    import json

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise UsageError(f"{flag} {pair!r} is not KEY=VALUE", f"e.g. {flag} enforce_eager=true")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


__all__ = ["BACKENDS", "Backend", "Completion", "FinishReason", "SamplingParams", "load_backend",
           "parse_backend_options"]
