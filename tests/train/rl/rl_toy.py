"""What the RL tests share (imported by name: tests/train/rl is on sys.path): a toy reward for
the loop, and collect on a scripted two-problem policy."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from thor_cli.grading.extract import trajectory_text
from thor_cli.train.rl.config import RLConfig


async def e_rate(records: list[dict[str, Any]]) -> list[float]:
    """The share of the letter e in what the model wrote: a reward that differs between samples
    (so every group trains) and that a random tiny model learns fast."""
    texts = [trajectory_text(r["trajectory"]) for r in records]
    return [t.count("e") / max(len(t), 1) for t in texts]


def two_problems_policy(context: str, ids: list[int], call: int) -> str:
    """Problem a: the first cell fails, then (after its output) an answer. Step-level continuations
    alternate a good and a failing cell (by ``call``'s parity). Problem b: always right with a
    working cell."""
    if "Problem b" in context:
        return "Work.\n```python\nprint(2)\n```\n```output" if "```output" not in context else "So \\boxed{2}."
    if context.count("```output") >= 1 and "fail()" in context:
        return "So \\boxed{1}."
    if "Retry" in context or call % 2 == 1:
        return "Retry.\n```python\nprint(1)\n```\n```output" if call % 2 else "Retry.\n```python\nfail()\n```\n```output"
    return "Work.\n```python\nfail()\n```\n```output"


def collect_two_problems(backend: Any, ranks: Any = None) -> Any:
    """``collect`` (THOR's filters, 2 generation batches of dynamic sampling, step-level groups) of
    problems a and b on ``backend`` (a scripted one running ``two_problems_policy``) with the python
    tool; reward 1 for the right final answer. Returns the Batch."""
    sys.path.insert(0, str(Path(__file__).parents[2] / "rollout"))
    from rollout_helpers import py_tool

    from thor_cli.rollout import RolloutConfig, RolloutEngine
    from thor_cli.train.rl.collect import collect

    problems = [{"id": "a", "question": "Problem a", "answer": "1"}, {"id": "b", "question": "Problem b", "answer": "2"}]
    cfg = RLConfig(problems_per_step=2, group_size=4, step_samples=4, max_gen_batches=2, min_survivors=2)

    async def reward(records: list[dict[str, Any]]) -> list[float]:
        return [1.0 if (r["trajectory"].get("final_answer") or "") in ("1", "2") else 0.0 for r in records]

    stream = iter(problems * 10)

    async def go() -> Any:
        async with RolloutEngine(backend, RolloutConfig(self_correct=False, max_tokens=200),
                                 tools={"python": py_tool()}) as eng:
            return await collect(eng, lambda n: [next(stream) for _ in range(n)], cfg, reward_fn=reward,
                                 step_index=0, ranks=ranks)

    return asyncio.run(go())
