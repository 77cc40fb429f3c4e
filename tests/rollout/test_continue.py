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


def _record_with_retry(tok: Any) -> dict[str, Any]:
    """turns: text0, text1, code2, output3, text4; one self-correction at turn 1 (after text0)."""
    script = [cell("fail", "First words here.\n"), cell("print(1)", "Second words here.\n"), "\\boxed{1}"]
    f, _, _ = run_one(tok, script, RolloutConfig(backoff_tokens=0))
    traj = Trajectory.from_dict(f["trajectory"])
    assert [t.kind for t in traj.turns] == ["text", "text", "code", "output", "text"]
    assert [r.at_turn for r in traj.retries] == [1] and (traj.n_corrections, traj.n_tool_calls) == (1, 2)
    return {"id": "p1", "question": "What is 1+1?", **f}


@pytest.mark.parametrize(("backoff", "kept_retry"), [(0, True), (2, True), ("text1", True),
                                                     ("text1+1", False), (100, False)])
def test_retries_and_counts_follow_the_backed_off_prefix(tok: Any, backoff: Any, kept_retry: bool) -> None:
    rec = _record_with_retry(tok)
    turns = Trajectory.from_dict(rec["trajectory"]).turns
    n = {"text1": len(turns[1].ids), "text1+1": len(turns[1].ids) + 1}.get(backoff, backoff)
    out, _, _ = _continue(tok, rec, ["\\boxed{1}"], cut_turn=2, backoff_tokens=n, one_round=False)
    new = Trajectory.from_dict(out["trajectory"])
    prefix_turns = out["continued_from"]["prefix_turns"]
    assert all(r.at_turn <= prefix_turns for r in new.retries)
    assert len(new.retries) == new.n_corrections == int(kept_retry)
    assert new.n_tool_calls == new.n_corrections  # no output turn in the prefix, none run after it
    if backoff == 100:
        assert prefix_turns == 0 and new.retries == []


def test_continue_on_a_code_problem_conditions_on_the_question(tok: Any) -> None:
    rec = _record(tok)
    rec = {k: v for k, v in rec.items() if k != "prompt_ids"}  # written with --drop-ids
    rec.update(task="code", question="QUESTIONTEXT add two numbers", prompt="def STUBTEXT(x, y):\n",
               entry_point="STUBTEXT")
    out, backend, _ = _continue(tok, rec, ["\\boxed{1}"], cut_turn=3, one_round=False)
    prompt = tok.decode(backend.calls[0][0][:len(out["prompt_ids"])])
    assert "QUESTIONTEXT" in prompt and "STUBTEXT" not in prompt


def test_a_math_problem_prompt_is_the_user_message(tok: Any) -> None:
    eng = RolloutEngine(ScriptedBackend(tokenizer=tok, script=["x"]), RolloutConfig(tools=()), tools={})
    prompt = tok.decode(eng.prompt_ids({"question": "QUESTIONTEXT", "prompt": "USERMESSAGE"}))
    assert "USERMESSAGE" in prompt and "QUESTIONTEXT" not in prompt
