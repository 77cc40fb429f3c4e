"""``--shard i/n``: which part of the input this process handles (record index modulo n)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from thor_cli.errors import UsageError


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def owns(self, position: int) -> bool:
        return position % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """Parse ``i/n`` with 0 <= i < n.

    >>> parse_shard("1/4")
    Shard(index=1, count=4)
    """
    try:
        i_text, n_text = text.split("/")
        index, count = int(i_text), int(n_text)
    except ValueError:
        raise UsageError(f"--shard {text!r} is not of the form i/n", "write e.g. --shard 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text}: need 0 <= i < n", "shards are numbered from 0, e.g. 0/4 .. 3/4")
    return Shard(index, count)


def shard_from_env(env: dict[str, str] | None = None) -> Shard | None:
    """The shard of a Slurm job-array task, or None outside an array.

    Uses SLURM_ARRAY_TASK_ID relative to SLURM_ARRAY_TASK_MIN in steps of SLURM_ARRAY_TASK_STEP
    (``--array=0-30:10`` gives tasks 0, 10, 20, 30 = shards 0..3 of 4), and SLURM_ARRAY_TASK_COUNT.
    """
    env = dict(os.environ) if env is None else env
    if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
        return None
    try:
        step = max(int(env.get("SLURM_ARRAY_TASK_STEP", "1")), 1)
        task = (int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))) // step
        count = int(env["SLURM_ARRAY_TASK_COUNT"])
    except ValueError:
        raise UsageError("SLURM_ARRAY_TASK_ID/COUNT are not integers", "pass --shard i/n explicitly") from None
    return parse_shard(f"{task}/{count}")
