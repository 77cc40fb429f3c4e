"""A training run's output folder: checks, checkpoints, resume, the final model and the manifest.

Layout of ``DIR`` (every stage)::

    DIR/                      the final model (config.json, weights, tokenizer, chat template):
                              ``thor eval --model DIR`` loads it
    DIR/checkpoint-N/         every ``save_steps`` steps: weights, optimizer, scheduler, RNG
                              states, trainer state (data position), thor_state.json (written
                              last: a checkpoint without it is incomplete and never resumed from)
    DIR/metrics.jsonl         one line per logged step (metrics.py)
    DIR.manifest.json         beside it, like every stage's output: version, argv, resolved
                              config and its hash; at the end also the data report and results

The final model is written to ``DIR/.final.part`` and its files are moved into ``DIR`` with
``config.json`` (or a LoRA adapter's ``adapter_config.json``) last, so a ``DIR`` with one holds a
whole model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from thor_cli.errors import UsageError
from thor_cli.records.jsonl import write_json_atomic

STATE_FILE = "thor_state.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(out: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``out`` as (step, path), oldest first."""
    if not out.is_dir():
        return []
    found = []
    for p in out.iterdir():
        m = _CKPT.match(p.name)
        if m and p.is_dir() and (p / STATE_FILE).is_file() and (p / "trainer_state.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def prepare(out: Path, *, resume: bool) -> Path | None:
    """Check ``out`` for a new run or a resumed one; returns the checkpoint to resume from."""
    if resume:
        done = checkpoints(out)
        if not done:
            raise UsageError(f"--resume: {out} has no complete checkpoint to resume from",
                             "run without --resume (checkpoints are written every save_steps steps)")
        return done[-1][1]
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"output {out} already exists and is not empty",
                         "pass --resume to continue that run, or choose a new --output folder")
    out.mkdir(parents=True, exist_ok=True)
    return None


def write_state(ckpt: Path, state: dict[str, Any]) -> None:
    """thor's own counters for a checkpoint (tokens trained, ...); marks the checkpoint complete."""
    write_json_atomic(str(ckpt / STATE_FILE), state)


def read_state(ckpt: Path) -> dict[str, Any]:
    data = json.loads((ckpt / STATE_FILE).read_text())
    return data if isinstance(data, dict) else {}


def publish(part: Path, out: Path) -> None:
    """Move a saved model from ``part`` into ``out`` (config.json or adapter_config.json last: what
    marks a folder as a model), then remove ``part``."""
    names = sorted(os.listdir(part), key=lambda n: n in ("config.json", "adapter_config.json"))
    for name in names:
        dst = out / name
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        os.replace(part / name, dst)
    shutil.rmtree(part, ignore_errors=True)


def has_model(out: Path) -> bool:
    return (out / "config.json").is_file() or (out / "adapter_config.json").is_file()
