"""run_eval with a scripted backend: what the records keep, continuing them, cleanup on errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from thor_cli.backends.scripted import ScriptedBackend
from thor_cli.evaluate.runner import EvalOptions, run_eval
from thor_cli.grading import GradeConfig
from thor_cli.records.schema import ExecResult, Retry, Trajectory
from thor_cli.rollout import RolloutConfig, RolloutEngine
from thor_cli.tools import FunctionTool

SCRIPT = ["Try.\n```python\nfail\n```\n```output", "Again.\n```python\nprint(4)\n```\n```output", "\\boxed{4}"]


def _python(code: str) -> ExecResult:
    if "fail" in code:
        return ExecResult(status="error", error="ValueError: bad")
    return ExecResult(status="ok", stdout=code.strip()[6:-1] + "\n")


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _eval(tok: Any, problems: list[dict[str, Any]], *, keep_ids: bool = False) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    sink = SimpleNamespace(done=set(), write=records.append)
    opts = EvalOptions(samples=1, concurrency=4, keep_ids=keep_ids, grade=GradeConfig(workers=1))
    backend = ScriptedBackend(tokenizer=tok, script=SCRIPT)

    async def go() -> None:
        tools = {"python": FunctionTool("python", _python, stateful=True)}
        async with RolloutEngine(backend, RolloutConfig(backoff_tokens=0), tools=tools) as engine:
            await run_eval(problems, engine, sink, opts)  # type: ignore[arg-type]

    asyncio.run(go())
    return records


def test_drop_ids_removes_what_the_engine_adds() -> None:
    from thor_cli.records.access import drop_ids

    rec = {"id": "p", "prompt_ids": [1], "completion_ids": [2], "completion_mask": [1], "completion_logprobs": None,
           "trajectory": {"turns": [{"kind": "text", "text": "a", "ids": [2], "logprobs": [-0.1]}],
                          "retries": [{"at_turn": 0, "dropped_text": "b", "dropped_ids": [3], "reason": "error"}]}}
    assert drop_ids(rec) is rec
    assert set(rec) == {"id", "trajectory"}
    assert rec["trajectory"]["turns"] == [{"kind": "text", "text": "a"}]
    assert rec["trajectory"]["retries"][0]["dropped_ids"] == []
    assert Retry.from_dict({"at_turn": 0, "dropped_text": "b", "reason": "error"}).dropped_ids == []


def test_eval_record_with_a_self_correction_can_be_continued(tok: Any) -> None:
    [rec] = _eval(tok, [{"id": "p1", "question": "What is 2+2?", "answer": "4", "source": "toy"}])
    traj = Trajectory.from_dict(rec["trajectory"])
    assert traj.n_corrections == 1 and rec["grade"]["correct"] is True
    assert "prompt_ids" not in rec and "completion_ids" not in rec
    assert rec["trajectory"]["retries"][0]["dropped_ids"] == []
    backend = ScriptedBackend(tokenizer=tok, script=["\\boxed{4}"])

    async def go() -> dict[str, Any]:
        tools = {"python": FunctionTool("python", _python, stateful=True)}
        async with RolloutEngine(backend, RolloutConfig(), tools=tools) as engine:
            return await engine.continue_from(rec, cut_turn=len(traj.turns) - 1, one_round=False)

    out = asyncio.run(go())
    assert out["trajectory"]["final_answer"] == "4" and out["trajectory"]["n_corrections"] == 1


def test_a_given_prompt_ids_stays_in_the_record(tok: Any) -> None:
    given = tok.encode("Given prompt: what is 2+2?\n", add_special_tokens=False)
    [rec] = _eval(tok, [{"id": "p1", "prompt_ids": given, "answer": "4", "source": "toy"}])
    assert rec["prompt_ids"] == given and "completion_ids" not in rec
    [kept] = _eval(tok, [{"id": "p1", "prompt_ids": given, "answer": "4", "source": "toy"}], keep_ids=True)
    assert kept["prompt_ids"] == given and len(kept["completion_ids"]) == len(kept["completion_mask"]) > 0


def test_a_failing_consumer_leaves_no_trajectory_running(tok: Any) -> None:
    started: list[str] = []
    ended: list[str] = []

    async def rollout(problem: dict[str, Any], key: str, sample: int) -> dict[str, Any]:
        started.append(problem["id"])
        try:
            if problem["id"] != "0":
                await asyncio.Event().wait()  # never finishes by itself
            return {"sample": sample, "trajectory": {"turns": [], "retries": []}, "error": None}
        finally:
            ended.append(problem["id"])

    def emit(rec: dict[str, Any]) -> None:
        raise OSError("disk full")

    problems = [{"id": str(i), "question": "q", "answer": "1", "source": "toy"} for i in range(6)]
    opts = EvalOptions(samples=1, concurrency=3, grade=GradeConfig(workers=1))
    engine = RolloutEngine(ScriptedBackend(tokenizer=tok, script=["x"]), RolloutConfig(tools=()), tools={})
    engine.rollout = rollout  # type: ignore[method-assign]

    async def go() -> list[str]:
        with pytest.raises(OSError, match="disk full"):
            await run_eval(problems, engine, SimpleNamespace(done=set(), write=emit), opts)  # type: ignore[arg-type]
        return list(ended)  # as the error reaches the caller, before the loop shuts down

    ended_at_error = asyncio.run(go())
    assert len(started) >= 3 and sorted(ended_at_error) == sorted(started)
