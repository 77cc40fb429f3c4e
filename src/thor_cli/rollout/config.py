"""``RolloutConfig``: every knob of a rollout, and the per-call sampling seed."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from thor_cli.errors import UsageError


@dataclass(frozen=True)
class RolloutConfig:
    """How trajectories are sampled. Defaults are THOR's evaluation settings (paper, section 4).

    max_tokens counts every completion token, model-sampled and tool output alike (the paper's
    "response length"). max_tool_calls counts every executed call, retried ones included.
    tools=() means plain chain-of-thought: the protocol's no-tools prompt and no tool stops.
    """

    protocol: str = "thor"
    max_tool_calls: int = 10
    max_tokens: int = 4096
    temperature: float = 0.6
    top_p: float = 1.0
    top_k: int = -1
    self_correct: bool = True
    max_corrections: int = 4
    backoff_tokens: int = 500
    max_output_chars: int = 2048
    system_prompt: str | None = None
    seed: int = 0
    keep_ids: bool = True
    tools: tuple[str, ...] = ("python",)
    # After a self-correction drops a failed cell, rebuild the python session by replaying the
    # kept cells, so that the dropped cell's side effects (variables, files) are gone.
    replay_on_retry: bool = True

    def __post_init__(self) -> None:
        checks = [
            (self.max_tool_calls >= 0, "--max-tool-calls must be >= 0"),
            (self.max_tokens > 0, "--max-tokens must be > 0"),
            (self.temperature >= 0, "--temperature must be >= 0"),
            (0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
            (self.max_corrections >= 0, "--max-corrections must be >= 0"),
            (self.backoff_tokens >= 0, "--backoff-tokens must be >= 0 (0 cuts at the cell's start)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UsageError(msg, "fix the flag's value")
        if isinstance(self.tools, list):
            object.__setattr__(self, "tools", tuple(self.tools))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tools"] = list(self.tools)
        return d


def seed_for(seed: int, key: str, sample: int, call: int) -> int:
    """The sampling seed of generate call ``call`` of sample ``sample`` of the record ``key``.

    A 31-bit int (every backend accepts it). Different calls, samples and records get
    independent seeds; the same inputs always the same seed.

    >>> seed_for(0, "k", 0, 0) == seed_for(0, "k", 0, 0) != seed_for(0, "k", 0, 1)
    True
    """
    h = hashlib.sha256(f"{seed}\x00{key}\x00{sample}\x00{call}".encode()).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFFFFFF
