"""Config files: ``--config FILE`` recipes and the shipped presets, read and checked in one place.

Keys are option names with - or _ (``max-tool-calls: 5``). A command passes the keys it knows
(its options, or its training settings); a key it does not know is a usage error naming the
file, the line and the nearest known keys, so a typo in a recipe fails instead of being ignored.
The resolved config of a run (every option's final value) goes into its manifest and into
content keys (``records.keys``: one canonical JSON, one hash).
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from thor_cli.errors import UsageError


def parse_mapping(text: str, name: str, suffix: str) -> dict[str, Any]:
    """The mapping in ``text`` (YAML for .yaml/.yml, TOML for .toml, else JSON), keys with ``_``."""
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 -- any parser error becomes a usage error naming the file
        raise UsageError(f"{name}: cannot parse ({e})", "use YAML, JSON or TOML") from None
    if not isinstance(data, dict):
        raise UsageError(f"{name}: expected a mapping of option names to values", None)
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _key_lines(text: str, suffix: str) -> dict[str, int]:
    """Line (from 1) of each top-level key of a YAML file; empty for other formats."""
    if suffix not in (".yaml", ".yml"):
        return {}
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value).replace("-", "_"): k.start_mark.line + 1 for k, _ in node.value}


def check_keys(values: dict[str, Any], known: Iterable[str], *, name: str, text: str = "", suffix: str = "",
               command: str = "") -> None:
    """Raise a UsageError for the first key of ``values`` not in ``known``, naming ``name``, its
    line and the nearest known keys."""
    known_set = set(known)
    unknown = [k for k in values if k not in known_set]
    if not unknown:
        return
    lines = _key_lines(text, suffix)
    key = unknown[0]
    where = f"{name}:{lines[key]}" if key in lines else name
    near = difflib.get_close_matches(key, sorted(known_set), n=3)
    whose = f" for {command}" if command else ""
    more = f" (and {len(unknown) - 1} more: {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
    hint = f"did you mean {' or '.join(near)}?" if near else "remove it"
    raise UsageError(f"{where}: unknown key {key!r}{whose}{more}",
                     f"{hint} (a recipe sets the command's options and settings: see its --help)")


def load_config_file(path: str | Path, known: Iterable[str] | None = None, *, command: str = "") -> dict[str, Any]:
    """The option values in ``path``; with ``known``, every key must be one of them."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config {path}: file not found", "check the path")
    text = p.read_text(encoding="utf-8")
    values = parse_mapping(text, f"--config {path}", p.suffix)
    if known is not None:
        check_keys(values, known, name=str(path), text=text, suffix=p.suffix, command=command)
    return values
