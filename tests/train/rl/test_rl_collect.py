"""collect: THOR's filters, dynamic sampling and step-level groups, with a scripted policy and tool."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[2] / "rollout"))
from rollout_helpers import py_tool  # noqa: E402

from thor_cli.backends.scripted import ScriptedBackend  # noqa: E402
from thor_cli.rollout import RolloutConfig, RolloutEngine  # noqa: E402
from thor_cli.train.rl.collect import collect  # noqa: E402
from thor_cli.train.rl.config import RLConfig  # noqa: E402


def _policy(context: str, ids: list[int], call: int) -> str:
    """Problem a: the first cell fails, then (after its output) an answer. Step-level continuations
    alternate a good and a failing cell. Problem b: always right with a working cell."""
    if "Problem b" in context:
        return "Work.\n```python\nprint(2)\n```\n```output" if "```output" not in context else "So \\boxed{2}."
    if context.count("```output") >= 1 and "fail()" in context:
        return "So \\boxed{1}."
    if "Retry" in context or call % 2 == 1:
        return "Retry.\n```python\nprint(1)\n```\n```output" if call % 2 else "Retry.\n```python\nfail()\n```\n```output"
    return "Work.\n```python\nfail()\n```\n```output"


def test_filters_dynamic_sampling_and_step_groups(tok: Any) -> None:
    problems = [{"id": "a", "question": "Problem a", "answer": "1"}, {"id": "b", "question": "Problem b", "answer": "2"}]
    backend = ScriptedBackend(tokenizer=tok, script=_policy)
    cfg = RLConfig(problems_per_step=2, group_size=4, step_samples=4, max_gen_batches=2, min_survivors=2)

    async def reward(records: list[dict[str, Any]]) -> list[float]:
        return [1.0 if (r["trajectory"].get("final_answer") or "") in ("1", "2") else 0.0 for r in records]

    stream = iter(problems * 10)

    async def go() -> Any:
        async with RolloutEngine(backend, RolloutConfig(self_correct=False, max_tokens=200),
                                 tools={"python": py_tool()}) as eng:
            return await collect(eng, lambda n: [next(stream) for _ in range(n)], cfg, reward_fn=reward,
                                 step_index=0)

    batch = asyncio.run(go())
    s = batch.stats
    # problem a's trajectories all failed a cell: filtered; b's are all right: equal rewards, dropped
    assert s["filtered_failed_cell"] >= 4 and s["groups_kept"] == 0 and s["gen_batches"] == 2
    traj = [x for x in batch.samples if x.level == "traj"]
    step = [x for x in batch.samples if x.level == "step"]
    assert not traj and step  # only the step level has signal here
    assert {x.reward for x in step} == {0.0, 1.0}  # the new cell ran, or failed again
    for x in step:  # here the back-off removed the whole step before the failing cell: all of it is resampled
        assert len(x.loss_mask) == len(x.completion_ids) and any(x.loss_mask)
        assert "fail()" not in tok.decode(x.completion_ids[:4])
    assert 0.0 < s["step_pass_rate"] < 1.0
