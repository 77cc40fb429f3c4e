"""continue_from: resume a recorded trajectory from a prefix, with the sandbox state rebuilt."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rollout_helpers import cell, py_tool, run_one

from thor_cli.backends.scripted import ScriptedBackend
from thor_cli.errors import UsageError
from thor_cli.records.schema import Trajectory
from thor_cli.rollout import RolloutConfig, RolloutEngine


def _record(tok: Any) -> dict[str, Any]:
    script = [cell("print(1)", "First step.\n"), cell("empty", "Second step with many words here.\n"),
              "\\boxed{1}"]
    f, _, _ = run_one(tok, script, RolloutConfig(self_correct=False))
    return {"id": "p1", "question": "What is 1+1?", **f}


def _continue(tok: Any, rec: dict[str, Any], script: list[str], **kw: Any) -> tuple[dict[str, Any], Any, Any]:
    backend = ScriptedBackend(tokenizer=tok, script=script)
    tool = py_tool()

    async def go() -> dict[str, Any]:
        async with RolloutEngine(backend, RolloutConfig(self_correct=False), tools={"python": tool}) as eng:
            return await eng.continue_from(rec, **kw)

    return asyncio.run(go()), backend, tool


def test_step_level_resample_of_the_failing_cell(tok: Any) -> None:
    rec = _record(tok)
    traj = Trajectory.from_dict(rec["trajectory"])
    failing = [i for i, t in enumerate(traj.turns) if t.kind == "code" and traj.turns[i + 1].exec["status"] == "ok"
               and traj.turns[i + 1].text.strip() == "```"]
    assert failing == [4]  # the 'empty' cell: text, code, output, text, CODE, output, text
    out, backend, tool = _continue(tok, rec, [cell("print(2)", "Redo.\n"), "never"], cut_turn=4, backoff_tokens=3,
                                   one_round=True, sample=5)
    new = Trajectory.from_dict(out["trajectory"])
    info = out["continued_from"]
    kept = [i for t in traj.turns[:4] for i in t.ids][:-3]
    assert out["completion_ids"][:info["prefix_tokens"]] == kept and info["prefix_tokens"] == len(kept)
    # the model was conditioned on exactly the prompt + the kept prefix
    assert backend.calls[0][0] == rec["prompt_ids"] + kept and len(backend.calls) == 1
    assert [t.kind for t in new.turns[info["prefix_turns"]:]] == ["text", "code", "output"]
    assert new.turns[-1].exec["status"] == "ok" and new.n_tool_calls == 2
    # the session was rebuilt by replaying the kept cell before the new one
    assert tool.sessions[0].history == ["print(1)", "print(2)"]
    assert len(out["completion_mask"]) == len(out["completion_ids"])


def test_continue_to_the_end_and_at_output_boundary(tok: Any) -> None:
    rec = _record(tok)
    out, backend, _ = _continue(tok, rec, ["Done: \\boxed{7}"], cut_turn=3, one_round=False)
    new = Trajectory.from_dict(out["trajectory"])
    assert new.final_answer == "7" and new.stop_reason == "answer"
    assert backend.calls[0][0] == rec["prompt_ids"] + [i for t in Trajectory.from_dict(rec["trajectory"]).turns[:3]
                                                       for i in t.ids]


def test_bad_cuts_are_usage_errors(tok: Any) -> None:
    rec = _record(tok)
    with pytest.raises(UsageError):
        _continue(tok, rec, ["x"], cut_turn=2)  # right after a code turn, before its output
    with pytest.raises(UsageError):
        _continue(tok, rec, ["x"], cut_turn=99)


def test_dropped_ids_are_retokenized(tok: Any) -> None:
    rec = _record(tok)
    rec = {k: v for k, v in rec.items() if k not in ("prompt_ids", "completion_ids")}
    for t in rec["trajectory"]["turns"]:
        t.pop("ids")
    out, backend, _ = _continue(tok, rec, ["\\boxed{1}"], cut_turn=3, one_round=False)
    assert backend.calls[0][0][:len(out["prompt_ids"])] == out["prompt_ids"]
    assert len(out["completion_mask"]) == len(out["completion_ids"])
