"""The step cut against the real RolloutEngine.continue_from (scripted model, scripted python tool):
the cut it computes is the context the engine resamples from, and the step reward reads the
continuation the engine returns."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from thor_cli.backends.scripted import ScriptedBackend
from thor_cli.records.schema import ExecResult
from thor_cli.rollout import RolloutConfig, RolloutEngine
from thor_cli.tools import FunctionTool
from thor_cli.train.rl.filters import failed_cells
from thor_cli.train.rl.step import step_cut, step_loss_mask, step_reward


def fake_python(code: str) -> ExecResult:
    if "fail" in code:
        return ExecResult(status="error", error="ValueError: bad")
    if "empty" in code:
        return ExecResult(status="ok")
    return ExecResult(status="ok", stdout="done\n")


def cell(code: str, before: str) -> str:
    return f"{before}```python\n{code}\n```\n```output"


def run(tok: Any, script: list[str], record: dict[str, Any] | None = None, **kw: Any) -> tuple[dict[str, Any], Any]:
    backend = ScriptedBackend(tokenizer=tok, script=script)

    async def go() -> dict[str, Any]:
        cfg = RolloutConfig(self_correct=False)
        async with RolloutEngine(backend, cfg, tools={"python": FunctionTool("python", fake_python)}) as eng:
            if record is None:
                return await eng.rollout({"id": "p1", "question": "What is 1+1?"}, "k", 0)
            return await eng.continue_from(record, one_round=True, self_correct=False, **kw)

    return asyncio.run(go()), backend


def recorded(tok: Any) -> dict[str, Any]:
    script = [cell("print(1)", "First step.\n"), cell("fail", "Second step with quite a few words in it.\n"),
              cell("empty", "Third.\n"), "\\boxed{1}"]
    fields, _ = run(tok, script)
    return {"id": "p1", "question": "What is 1+1?", **fields}


@pytest.mark.parametrize("suffix", [3, 100])
def test_the_cut_is_the_context_the_engine_resamples_from(tok: Any, suffix: int) -> None:
    rec = recorded(tok)
    turns = rec["trajectory"]["turns"]
    assert [x["kind"] for x in turns] == ["text", "code", "output", "text", "code", "output",
                                          "text", "code", "output", "text"]
    assert failed_cells(rec["trajectory"]) == [4, 7]  # the error, then the silent cell
    cut = step_cut(rec["trajectory"], suffix_tokens=suffix)
    assert cut is not None and cut.cut_turn == 4
    text3 = len(turns[3]["ids"])
    assert cut.backoff_tokens == min(suffix, text3) and text3 < 100  # the short step: never past turn 2's output

    out, backend = run(tok, [cell("print(2)", "Redo.\n")], rec, **cut._asdict(), sample=1)
    kept = [i for x in turns[:4] for i in x["ids"]]
    kept = kept[:len(kept) - cut.backoff_tokens]
    assert backend.calls[0][0] == rec["prompt_ids"] + kept
    assert out["continued_from"]["prefix_tokens"] == len(kept)
    assert step_reward(out) == 1.0
    mask = step_loss_mask(out)
    assert mask[:len(kept)] == [0] * len(kept) and mask[len(kept):] == out["completion_mask"][len(kept):]
    assert any(mask)


@pytest.mark.parametrize("code", ["fail", "empty"])
def test_a_resampled_cell_that_fails_scores_zero(tok: Any, code: str) -> None:
    rec = recorded(tok)
    cut = step_cut(rec["trajectory"])
    assert cut is not None
    out, _ = run(tok, [cell(code, "Again.\n")], rec, **cut._asdict())
    assert step_reward(out) == 0.0


def test_the_back_off_stops_at_a_critics_text_as_the_engine_does(tok: Any) -> None:
    rec = recorded(tok)
    rec["trajectory"]["turns"][3]["author"] = "critic"  # the step before the failing cell: TIRGen's critic
    cut = step_cut(rec["trajectory"])
    assert cut == (4, 0)
    out, backend = run(tok, [cell("print(2)", "Redo.\n")], rec, **cut._asdict())
    kept = [i for x in rec["trajectory"]["turns"][:4] for i in x["ids"]]
    assert backend.calls[0][0] == rec["prompt_ids"] + kept and out["continued_from"]["prefix_tokens"] == len(kept)
