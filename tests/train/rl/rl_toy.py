"""A toy reward shared by the RL loop tests (imported by name: tests/train/rl is on sys.path)."""

from __future__ import annotations

from typing import Any

from thor_cli.grading.extract import trajectory_text


async def e_rate(records: list[dict[str, Any]]) -> list[float]:
    """The share of the letter e in what the model wrote: a reward that differs between samples
    (so every group trains) and that a random tiny model learns fast."""
    texts = [trajectory_text(r["trajectory"]) for r in records]
    return [t.count("e") / max(len(t), 1) for t in texts]
