"""The rollout loop with a scripted backend: turns, budgets, self-correction, failures as data."""

from __future__ import annotations

import asyncio
from typing import Any

from rollout_helpers import cell, py_tool, run_one

from thor_cli.backends.scripted import ScriptedBackend, fake_logprob
from thor_cli.records.schema import Trajectory
from thor_cli.rollout import RolloutConfig, RolloutEngine


def kinds(fields: dict[str, Any]) -> list[str]:
    return [t["kind"] for t in fields["trajectory"]["turns"]]


def test_one_cell_then_answer(tok: Any) -> None:
    f, be, tools = run_one(tok, [cell("print(2)"), "So \\boxed{2}."])
    traj = Trajectory.from_dict(f["trajectory"])
    assert kinds(f) == ["text", "code", "output", "text"]
    assert traj.turns[1].text.startswith("```python\nprint(2)")
    assert traj.turns[2].text == "\n2\n```\n" and traj.turns[2].exec["status"] == "ok"
    assert traj.stop_reason == "answer" and traj.final_answer == "2" and traj.n_tool_calls == 1
    assert f["error"] is None
    assert f["prompt_ids"] + f["completion_ids"] == be.calls[-1][0] + be.calls[-1][2].ids
    assert f["completion_ids"][-1] == tok.eos_token_id
    assert f["completion_mask"] == [0 if t.kind == "output" else 1 for t in traj.turns for _ in t.ids]
    lps = f["completion_logprobs"]
    assert [lp for lp, m in zip(lps, f["completion_mask"], strict=True) if m] == \
        [fake_logprob(i) for i, m in zip(f["completion_ids"], f["completion_mask"], strict=True) if m]
    assert tools["python"].sessions[0].history == ["print(2)"]


def test_prompt_uses_chat_template_and_protocol(tok: Any) -> None:
    f, be, _ = run_one(tok, ["\\boxed{1}"], RolloutConfig(system_prompt="Be brief."))
    prompt = tok.decode(f["prompt_ids"])
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert "What is 1+1?" in prompt and "programs" in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert be.calls[0][1].stop == ("```output",)


def test_no_tools_is_plain_cot(tok: Any) -> None:
    f, be, _ = run_one(tok, ["Think. \\boxed{3}"], RolloutConfig(tools=()), tools={})
    assert be.calls[0][1].stop == () and "programs" not in tok.decode(f["prompt_ids"])
    assert f["trajectory"]["stop_reason"] == "answer"


def test_self_correction_drops_cell_and_backs_off(tok: Any) -> None:
    script = [cell("print(1)"), cell("fail", before="Now a risky step.\n"), cell("print(5)", "Again.\n"), "\\boxed{5}"]
    f, be, tools = run_one(tok, script, RolloutConfig(backoff_tokens=4))
    traj = Trajectory.from_dict(f["trajectory"])
    assert len(traj.retries) == 1 and traj.n_corrections == 1 and traj.n_tool_calls == 3
    r = traj.retries[0]
    assert r.reason == "error" and "fail" in r.dropped_text and r.exec["status"] == "error"
    # the dropped ids are the cell plus exactly 4 sampled ids before it
    failed = be.calls[1][2].ids
    code_start = len(failed) - len(tok.encode("```python\nfail\n```\n```output", add_special_tokens=False)) - 1
    assert len(r.dropped_ids) >= 4 and r.dropped_ids == failed[len(failed) - len(r.dropped_ids):]
    assert len(r.dropped_ids) - 4 <= len(failed) - max(code_start, 0)
    # the next call was conditioned on the context without the dropped ids
    assert be.calls[2][0] == be.calls[1][0] + failed[:len(failed) - len(r.dropped_ids)]
    assert "fail" not in traj.text
    # the session was rebuilt: a fresh one that replayed the kept cell before the new one
    hist = [s.history for s in tools["python"].sessions]
    assert hist == [["print(1)", "fail"], ["print(1)", "print(5)"]]


def test_backoff_zero_cuts_at_cell_start(tok: Any) -> None:
    f, be, _ = run_one(tok, [cell("fail", "Keep this text.\n"), cell("print(1)", ""), "\\boxed{1}"],
                       RolloutConfig(backoff_tokens=0))
    traj = Trajectory.from_dict(f["trajectory"])
    assert traj.turns[0].text == "Keep this text.\n"
    assert traj.retries[0].dropped_text.startswith("```python") or traj.retries[0].dropped_text.startswith("\n```")


def test_backoff_never_crosses_a_tool_output(tok: Any) -> None:
    f, _, _ = run_one(tok, [cell("print(1)"), cell("fail", "x"), cell("print(2)"), "\\boxed{2}"],
                      RolloutConfig(backoff_tokens=10_000))
    traj = Trajectory.from_dict(f["trajectory"])
    assert [t.kind for t in traj.turns[:3]] == ["text", "code", "output"] and traj.retries[0].at_turn == 3


def test_corrections_are_bounded_and_reset_after_success(tok: Any) -> None:
    script = [cell("fail")] * 3 + [cell("print(1)")] + [cell("empty")] * 4 + ["\\boxed{1}"]
    f, _, _ = run_one(tok, script, RolloutConfig(max_corrections=2, max_tool_calls=20))
    traj = Trajectory.from_dict(f["trajectory"])
    # 2 retries, the 3rd failure is kept; success; 2 retries of the empty cell... counter not reset by a
    # kept failure, so: fail(R) fail(R) fail(kept) ok empty(R) empty(R) empty(kept) empty(kept)
    assert [r.reason for r in traj.retries] == ["error", "error", "no_output", "no_output"]
    statuses = [c[1]["status"] for c in traj.cells]
    assert statuses == ["error", "ok", "ok", "ok"]
    assert traj.n_tool_calls == 8 and traj.stop_reason == "answer"


def test_retries_count_against_the_tool_budget(tok: Any) -> None:
    f, _, _ = run_one(tok, [cell("fail")] * 10, RolloutConfig(max_tool_calls=3, max_corrections=4))
    traj = Trajectory.from_dict(f["trajectory"])
    assert traj.n_tool_calls == 3 and len(traj.retries) == 2 and traj.stop_reason == "max_tool_calls"
    assert traj.turns[-1].kind == "code"  # the call beyond the budget is kept, not executed


def test_self_correct_off_keeps_failures(tok: Any) -> None:
    f, _, _ = run_one(tok, [cell("slow"), "\\boxed{0}"], RolloutConfig(self_correct=False))
    traj = Trajectory.from_dict(f["trajectory"])
    assert not traj.retries and traj.cells[0][1]["status"] == "timeout"
    assert "TimeoutError" in traj.turns[2].text


def test_output_truncation(tok: Any) -> None:
    long = "print(" + "9" * 3000 + ")"
    f, _, _ = run_one(tok, [cell(long), "\\boxed{9}"], RolloutConfig(max_output_chars=64))
    out = Trajectory.from_dict(f["trajectory"]).turns[2]
    assert "chars cut" in out.text and len(out.text) < 120
    assert out.ids == tok.encode(out.text, add_special_tokens=False)


def test_token_budget(tok: Any) -> None:
    f, be, _ = run_one(tok, [cell("print(1)"), "word " * 400], RolloutConfig(max_tokens=60))
    traj = Trajectory.from_dict(f["trajectory"])
    assert traj.stop_reason == "max_tokens" and len(f["completion_ids"]) == 60
    assert be.calls[1][1].max_tokens == 60 - len(be.calls[0][2].ids) - len(traj.turns[2].ids)


def test_context_overflow_is_a_stop_reason(tok: Any) -> None:
    f, be, _ = run_one(tok, [cell("print(1)")] * 50, RolloutConfig(max_tool_calls=100), max_context=150)
    assert f["trajectory"]["stop_reason"] == "context_overflow" and f["error"] is None
    assert len(f["prompt_ids"]) + len(f["completion_ids"]) <= 150
    assert all(len(p) < 150 for p, _, _ in be.calls)


def test_malformed_and_disabled_calls_are_errors_not_crashes(tok: Any) -> None:
    f, _, _ = run_one(tok, ["no cell\n```output", "\\boxed{1}"], RolloutConfig(self_correct=False))
    traj = Trajectory.from_dict(f["trajectory"])
    assert traj.turns[-2].exec["status"] == "error" and "no ```python" in traj.turns[-2].text
    cfg = RolloutConfig(protocol="tapo", self_correct=False)
    f, _, _ = run_one(tok, ["<search>x</search>", "<answer>1</answer>"], cfg)
    traj = Trajectory.from_dict(f["trajectory"])
    assert "not enabled" in traj.turns[-2].text and traj.stop_reason == "answer" and traj.final_answer == "1"


def test_backend_failure_is_recorded(tok: Any) -> None:
    def boom(text: str, ids: list[int], i: int) -> str:
        if i == 1:
            raise RuntimeError("server exploded")
        return cell("print(1)")

    f, _, _ = run_one(tok, boom)
    assert f["trajectory"]["stop_reason"] == "error" and "server exploded" in f["error"]
    assert len(f["trajectory"]["turns"]) == 3  # what was done before the failure is kept


def test_drop_ids(tok: Any) -> None:
    f, _, _ = run_one(tok, [cell("print(1)"), "\\boxed{1}"], RolloutConfig(keep_ids=False))
    assert "completion_ids" not in f and "prompt_ids" not in f
    assert all("ids" not in t for t in f["trajectory"]["turns"])


def test_seeds_depend_on_key_sample_and_call(tok: Any) -> None:
    _, a, _ = run_one(tok, [cell("print(1)"), "\\boxed{1}"], key="a", sample=0)
    _, a2, _ = run_one(tok, [cell("print(1)"), "\\boxed{1}"], key="a", sample=0)
    _, b, _ = run_one(tok, [cell("print(1)"), "\\boxed{1}"], key="a", sample=1)
    seeds = [c[1].seed for c in a.calls]
    assert seeds == [c[1].seed for c in a2.calls] and len(set(seeds)) == 2
    assert seeds != [c[1].seed for c in b.calls]


def test_run_is_concurrent_and_yields_everything(tok: Any) -> None:
    def script(text: str, ids: list[int], i: int) -> str:
        n = text.count("```output")  # turn number of this trajectory, from its own prompt
        return cell(f"print({n})") if n < 3 else "\\boxed{3}"

    backend = ScriptedBackend(tokenizer=tok, script=script, delay=0.01)
    tool = py_tool(delay=0.01)

    async def go() -> list[Any]:
        items = (({"id": str(i), "question": f"q{i}"}, str(i), 0) for i in range(20))
        async with RolloutEngine(backend, RolloutConfig(), tools={"python": tool}) as eng:
            out = [x async for x in eng.run(items, concurrency=8)]
            assert eng.stats["trajectories"] == 20 and eng.stats["errors"] == 0
            return out

    out = asyncio.run(go())
    assert sorted(int(item[1]) for item, _ in out) == list(range(20))
    assert all(f["trajectory"]["n_tool_calls"] == 3 for _, f in out)
    assert len(tool.sessions) == 20 and tool.closed_sessions == 20


def test_trajectory_record_matches_the_schema(tok: Any) -> None:
    f, _, _ = run_one(tok, [cell("print(1)"), cell("fail"), cell("print(2)"), "\\boxed{2}"])
    traj = Trajectory.from_dict(f["trajectory"])
    assert traj.to_dict() == f["trajectory"]
    assert list(traj.to_dict()["turns"][2]) == list(f["trajectory"]["turns"][2])  # same field order


def test_tapo_with_bm25_search(tok: Any, tmp_path: Any) -> None:
    from thor_cli.tools.search import BM25SearchTool

    corpus = [{"id": "0", "contents": '"Paris"\nParis is the capital of France.'},
              {"id": "1", "contents": '"Rome"\nRome is the capital of Italy.'}]
    script = ["<think>I should look it up.</think><search>capital of Italy</search>",
              "<think>Now compute.</think><code>print(6*7)</code>", "<think>ok</think><answer> Rome </answer>"]
    cfg = RolloutConfig(protocol="tapo", tools=("python", "search"))
    f, be, _ = run_one(tok, script, cfg, tools={"python": py_tool(), "search": BM25SearchTool(corpus, topk=1)})
    traj = Trajectory.from_dict(f["trajectory"])
    assert [t.kind for t in traj.turns] == ["text", "code", "output", "text", "code", "output", "text"]
    assert traj.turns[2].text == "\n<response>\nDoc 1(Title: Rome) Rome is the capital of Italy.\n</response>\n"
    assert traj.turns[1].tool == "search" and traj.turns[4].tool == "python"
    assert traj.turns[5].exec["status"] == "ok"  # fake_python: not a bare print(X) literal -> "done"
    assert traj.final_answer == "Rome" and traj.stop_reason == "answer"
    assert be.calls[0][1].stop == ("</code>", "</search>", "</answer>")
    assert "<search>" in tok.decode(f["prompt_ids"])


def test_scripted_backend_contract(tok: Any) -> None:
    from thor_cli.backends.base import SamplingParams

    be = ScriptedBackend(tokenizer=tok, script=["abc ```output tail", "no stop here", "x" * 50])
    stop = asyncio.run(be.generate([1], SamplingParams(max_tokens=100, stop=("```output",))))
    text = tok.decode(stop.ids)
    assert stop.finish_reason == "stop" and stop.stop == "```output" and "```output" in text
    assert "```output" not in tok.decode(stop.ids[:-1])  # the last id completed the stop string
    eos = asyncio.run(be.generate([1], SamplingParams(max_tokens=100)))
    assert eos.finish_reason == "eos" and eos.ids[-1] == tok.eos_token_id
    cut = asyncio.run(be.generate([1], SamplingParams(max_tokens=5)))
    assert cut.finish_reason == "length" and len(cut.ids) == 5 and cut.logprobs == [fake_logprob(i) for i in cut.ids]
    assert [c[0] for c in be.calls] == [[1], [1], [1]]


def test_earlier_think_blocks_stay_in_context(tok: Any) -> None:
    script = ["<think>first thoughts</think><code>print(1)</code>", "<think>second</think><answer>1</answer>"]
    f, be, _ = run_one(tok, script, RolloutConfig(protocol="tapo"))
    second_prompt = tok.decode(be.calls[1][0])
    assert "<think>first thoughts</think><code>print(1)</code>\n<response>\n1\n</response>\n" in second_prompt
    assert be.calls[1][0] == f["prompt_ids"] + f["completion_ids"][:len(be.calls[1][0]) - len(f["prompt_ids"])]
