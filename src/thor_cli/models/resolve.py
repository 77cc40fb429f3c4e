"""Turning whatever a user typed as a model into something transformers can load.

``resolve_model`` is called everywhere a model is asked for (``--model``): a cached name
(``smollm2-135m``), a local checkpoint folder, or a Hugging Face model id all work.
``list_models`` describes what is cached under ``$THOR_HOME/models``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
from functools import cache
from pathlib import Path
from typing import Any

from thor_cli.errors import ThorError
from thor_cli.models.registry import MANIFEST, MODELS, cached_path, models_dir

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def _offline_env() -> bool:
    return any(os.environ.get(v, "") not in ("", "0", "false", "False")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@cache
def _hub_reachable() -> bool:
    """One quick probe per process; no network means the hub cannot serve an id."""
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=2.0):
            return True
    except OSError:
        return False


def hub_available() -> bool:
    """False when offline mode is set or huggingface.co cannot be reached (2 s probe, once)."""
    return not _offline_env() and _hub_reachable()


def _in_hf_cache(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model_id, "config.json")
        return isinstance(hit, str)
    except Exception:  # noqa: BLE001 -- a broken cache only means "not cached"
        return False


def resolve_model(spec: str) -> str:
    """A local path for a cached name, a local checkpoint folder as given, or an HF id unchanged.

    Raises ThorError when ``spec`` is none of these: a pullable name that is not cached yet, a
    path that does not exist, or a hub id while offline and not in the Hugging Face cache.
    """
    spec = spec.strip()
    if not spec:
        raise ThorError("no model given", "pass a cached name (thor models list), a checkpoint folder or an HF id")
    hit = cached_path(spec)
    if hit is not None:
        return str(hit)
    local = Path(spec).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file() and not (local / "adapter_config.json").is_file():
            raise ThorError(f"model folder {spec} has no config.json",
                            "pass a folder written by save_pretrained (or thor models pull / thor train)")
        return spec
    if spec in MODELS:
        raise ThorError(f"model {spec!r} is not cached under {models_dir()}",
                        f"run: thor models pull {spec}")
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") != 1 or not _HF_ID.match(spec)
    if looks_like_path:
        raise ThorError(f"model {spec!r} not found: not a folder, not a cached name, not an HF id",
                        f"cached names: {', '.join(n for n in _cached_names()) or 'none'}; "
                        f"pullable: {', '.join(MODELS)} (thor models pull NAME)")
    if _in_hf_cache(spec):
        return spec
    if not hub_available():
        raise ThorError(f"model {spec!r} is neither cached nor a local folder, and the Hugging Face hub "
                        "cannot be reached (offline)",
                        f"pass a checkpoint folder, or pull a model thor knows: {', '.join(MODELS)} "
                        "(thor models pull NAME)")
    return spec


def _cached_names() -> list[str]:
    root = models_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / "config.json").is_file())


def _safetensors_params(path: Path) -> int:
    """Parameter count from a safetensors header, without loading the tensors."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    total = 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for d in meta["shape"]:
            count *= d
        total += count
    return total


def describe_model(path: Path) -> dict[str, Any]:
    """name, path, size in bytes, parameter count (None if it has no safetensors), source."""
    files = [p for p in path.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    weights = [p for p in files if p.suffix == ".safetensors"]
    params: int | None = None
    if weights:
        try:
            params = sum(_safetensors_params(p) for p in weights)
        except (OSError, ValueError, KeyError, struct.error):
            params = None
    source = None
    manifest = path / MANIFEST
    if manifest.is_file():
        try:
            source = json.loads(manifest.read_text()).get("hf_id")
        except (OSError, ValueError):
            source = None
    return {"name": path.name, "path": str(path), "size": size, "params": params, "source": source}


def list_models() -> list[dict[str, Any]]:
    """Every cached model under ``$THOR_HOME/models`` (half-written temp folders are skipped)."""
    return [describe_model(models_dir() / n) for n in _cached_names()]
