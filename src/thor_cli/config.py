"""``--config FILE``: option defaults from a YAML, JSON or TOML file; flags on the line win.

Keys are option names with - or _ (``max-tool-calls: 5``). The resolved config of a run (every
option's final value) goes into its manifest and into content keys (``records.keys``: one
canonical JSON, one hash).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from thor_cli.errors import UsageError


def load_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config {path}: file not found", "check the path")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif p.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 -- any parser error becomes a usage error naming the file
        raise UsageError(f"--config {path}: cannot parse ({e})", "use YAML, JSON or TOML") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a mapping of option names to values", None)
    return {str(k).replace("-", "_"): v for k, v in data.items()}
