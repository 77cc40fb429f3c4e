"""Presets: named bundles of option values, one YAML file per stage and name, shipped in the package.

``presets/<stage>-<name>.yaml`` (e.g. ``eval-paper.yaml``, ``sft-cpu.yaml``) holds option values
keyed by option name (``-`` or ``_``). A preset sits between the command's defaults and the
command line: defaults < ``--config`` file < ``--preset`` < flags given on the line. Each file's
header comment says where its numbers come from. ``thor <stage> --preset NAME`` loads one;
``available(stage)`` lists them. A preset is a config file that thor ships: it is read and its
keys checked by the same code as ``--config`` (``thor_cli.config``).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from typing import Any

from thor_cli.errors import UsageError


def available(stage: str) -> list[str]:
    """Preset names for ``stage``, sorted."""
    prefix = f"{stage}-"
    return sorted(p.name[len(prefix):-len(".yaml")] for p in resources.files(__package__).iterdir()
                  if p.name.startswith(prefix) and p.name.endswith(".yaml"))


def load_preset(stage: str, name: str, known: Iterable[str] | None = None) -> dict[str, Any]:
    """The option values of preset ``name`` for ``stage`` (keys with ``_``); with ``known``, every
    key must be one of them."""
    from thor_cli.config import check_keys, parse_mapping

    path = resources.files(__package__) / f"{stage}-{name}.yaml"
    if not path.is_file():
        names = available(stage)
        raise UsageError(f"--preset {name!r} is unknown for thor {stage}",
                         f"choose one of: {', '.join(names)}" if names else f"thor {stage} has no presets")
    text = path.read_text(encoding="utf-8")
    values = parse_mapping(text, f"preset {stage}-{name}.yaml", ".yaml")
    if known is not None:
        check_keys(values, known, name=f"preset {stage}-{name}.yaml", text=text, suffix=".yaml",
                   command=f"thor {stage}")
    return values
