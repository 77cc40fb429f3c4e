"""End to end: the tiny real model on the hf backend, and the real sandbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from rollout_helpers import cell

from thor_cli.backends.scripted import ScriptedBackend
from thor_cli.records.schema import Trajectory
from thor_cli.rollout import RolloutConfig, RolloutEngine
from thor_cli.tools import build_tools

PROBLEMS = [{"id": str(i), "question": f"What is {i} + {i}?"} for i in range(3)]


def _hf(tiny_model_dir: Path) -> Any:
    hf = pytest.importorskip("thor_cli.backends.hf")
    return hf.HFBackend(str(tiny_model_dir))


def test_scripted_model_with_real_sandbox_self_corrects_and_replays(tok: Any) -> None:
    # the failing cell changes x before raising: after the self-correction the session must not
    # remember that (it is rebuilt by replaying the kept cells)
    script = [cell("x = 10\nprint(x)"), cell("x = 99\nraise ValueError('oops')"), cell("print(x + 1)"),
              "\\boxed{11}"]
    backend = ScriptedBackend(tokenizer=tok, script=script)

    async def go() -> dict[str, Any]:
        tools = build_tools(("python",), timeout=5.0, workers=1)
        async with RolloutEngine(backend, RolloutConfig(backoff_tokens=2), tools=tools) as eng:
            return await eng.rollout({"id": "1", "question": "q"}, "k", 0)

    f = asyncio.run(go())
    traj = Trajectory.from_dict(f["trajectory"])
    assert f["error"] is None
    assert traj.retries[0].reason == "error" and "ValueError: oops" in traj.retries[0].exec["error"]
    outs = [t.text for t in traj.turns if t.kind == "output"]
    assert outs == ["\n10\n```\n", "\n11\n```\n"]
    assert traj.final_answer == "11" and traj.stop_reason == "answer"


@pytest.mark.slow
def test_tiny_model_rollouts_are_exact_and_deterministic(tiny_model_dir: Path) -> None:
    backend = _hf(tiny_model_dir)
    cfg = RolloutConfig(max_tokens=32, temperature=1.0, seed=3)

    async def go() -> list[dict[str, Any]]:
        tools = build_tools(("python",), timeout=5.0, workers=1)
        async with RolloutEngine(backend, cfg, tools=tools) as eng:
            items = [(p, p["id"], s) for p in PROBLEMS[:2] for s in range(2)]
            return [f for _, f in sorted([x async for x in eng.run(items, concurrency=4)],
                                         key=lambda x: (x[0][1], x[0][2]))]

    try:
        a = asyncio.run(go())
        b = asyncio.run(go())
    finally:
        asyncio.run(backend.close())
    for f in a:
        assert f["error"] is None
        traj = Trajectory.from_dict(f["trajectory"])
        assert len(f["completion_mask"]) == len(f["completion_ids"]) == len(f["completion_logprobs"]) <= 32
        assert f["completion_ids"] == traj.completion_ids
        assert traj.stop_reason in ("eos", "answer", "max_tokens", "max_tool_calls", "context_overflow")
    assert [f["completion_ids"] for f in a] == [f["completion_ids"] for f in b]  # same seeds, same samples
    assert a[0]["completion_ids"] != a[1]["completion_ids"]  # another sample index, another seed


@pytest.mark.slow
def test_tiny_model_continues_after_a_real_cell(tiny_model_dir: Path, tok: Any) -> None:
    # a recorded prefix with one executed cell (scripted), continued by the real model
    script = [cell("y = 6 * 7\nprint(y)"), "\\boxed{42}"]
    sb = ScriptedBackend(tokenizer=tok, script=script)
    cfg = RolloutConfig(max_tokens=64)

    async def record() -> dict[str, Any]:
        async with RolloutEngine(sb, cfg, tools=build_tools(("python",), workers=1)) as eng:
            return {**PROBLEMS[0], **await eng.rollout(PROBLEMS[0], "k", 0)}

    rec = asyncio.run(record())
    backend = _hf(tiny_model_dir)

    async def cont() -> dict[str, Any]:
        async with RolloutEngine(backend, cfg, tools=build_tools(("python",), workers=1)) as eng:
            return await eng.continue_from(rec, cut_turn=3, one_round=False, sample=1)

    try:
        out = asyncio.run(cont())
    finally:
        asyncio.run(backend.close())
    assert out["error"] is None
    n = out["continued_from"]["prefix_tokens"]
    assert out["completion_ids"][:n] == rec["completion_ids"][:n]
    assert len(out["completion_ids"]) <= 64 and len(out["completion_mask"]) == len(out["completion_ids"])
    assert out["trajectory"]["turns"][2]["text"] == "\n42\n```\n"
