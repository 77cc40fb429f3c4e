"""TIRGen with scripted actor and critic: the splice, the continuation, retries, abandonment, the step window."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "rollout"))
from rollout_helpers import py_tool  # noqa: E402

from thor_cli.backends.scripted import ScriptedBackend  # noqa: E402
from thor_cli.gen.tirgen import TirgenConfig, tirgen_try  # noqa: E402
from thor_cli.records.schema import Trajectory  # noqa: E402
from thor_cli.rollout import RolloutConfig, RolloutEngine  # noqa: E402

PROBLEM = {"id": "p1", "question": "What is 6*7?", "answer": "42"}


class Critic:
    """Replays rewrites in order (then gives steps back unchanged); records what it was asked."""

    name = "scripted-critic"

    def __init__(self, rewrites: list[str]) -> None:
        self.rewrites = rewrites
        self.asked: list[tuple[str, str | None]] = []

    async def rewrite(self, problem: dict[str, Any], step: str, feedback: str | None = None) -> str:
        self.asked.append((step, feedback))
        return self.rewrites[len(self.asked) - 1] if len(self.asked) <= len(self.rewrites) else step


def _try(tok: Any, actor: list[str], critic: Critic, cfg: TirgenConfig, eos: bool = True,
         **rcfg: Any) -> tuple[Any, ScriptedBackend]:
    backend = ScriptedBackend(tokenizer=tok, script=actor, eos=eos)
    tool = py_tool()

    async def go() -> Any:
        async with RolloutEngine(backend, RolloutConfig(self_correct=False, **rcfg), tools={"python": tool}) as eng:
            prompt = eng.prompt_ids(PROBLEM, with_tools=False)
            return await tirgen_try(eng, critic, PROBLEM, "k", 0, cfg, actor_prompt_ids=prompt), prompt

    (res, prompt), = [asyncio.run(go())]
    res.prompt = prompt
    return res, backend


def test_an_accepted_rewrite_replaces_the_step_and_the_actor_continues_from_it(tok: Any) -> None:
    step1 = "First I multiply six by seven.\n"
    actor = [step1 + "It is 43.\nTrailing words that", "So the answer is \\boxed{42}."]
    rewrite = "First I multiply six by seven.\n```python\nprint(42)\n```\n```output\n43\n```\nIt is 42.\n"
    critic = Critic([rewrite])
    res, backend = _try(tok, actor, critic, TirgenConfig(step_tokens=24, min_step_tokens=1))
    traj = Trajectory.from_dict(res.fields["trajectory"])
    assert not res.abandoned and traj.stop_reason == "answer" and traj.final_answer == "42"
    # the critic saw the actor's step cut at its last line break, not the dropped tail
    assert critic.asked[0][0].endswith("\n") and "Trailing" not in critic.asked[0][0]
    kinds = [(t.kind, t.who) for t in traj.turns]
    assert kinds == [("text", "critic"), ("code", "critic"), ("output", "tool"), ("text", "critic"),
                     ("text", "policy")]
    assert traj.turns[1].text == "```python\nprint(42)\n```\n```output"
    assert traj.turns[2].text == "\n42\n```\n" and traj.turns[2].exec["status"] == "ok"  # real output, not "43"
    # exact continuation: the second actor call saw the prompt plus every kept turn's ids, nothing re-tokenized
    second_prompt = backend.calls[1][0]
    assert second_prompt == res.prompt + [i for t in traj.turns[:4] for i in t.ids]
    assert res.fields["completion_ids"] == [i for t in traj.turns for i in t.ids]
    assert res.fields["completion_mask"] == [int(t.who == "policy") for t in traj.turns for _ in t.ids]
    assert res.steps[0]["cells"][0]["status"] == "ok" and res.steps[0]["critic"] == rewrite
    assert res.steps[0]["kept"] == "critic"


def test_a_failed_cell_is_retried_with_its_error_then_accepted(tok: Any) -> None:
    actor = ["Compute the product of six and seven please.\n", "\\boxed{42}"]
    critic = Critic(["Compute:\n```python\nfail()\n```\n", "Compute:\n```python\nprint(42)\n```\n"])
    res, _ = _try(tok, actor, critic, TirgenConfig(step_tokens=64, min_step_tokens=1))
    assert not res.abandoned and res.steps[0]["retries"] == 1
    (failed,) = res.steps[0]["failed"]
    assert failed["critic"] == critic.rewrites[0] and "ValueError: bad" in failed["error"]
    assert critic.asked[1][1] is not None and "ValueError: bad" in critic.asked[1][1]  # the error went back
    traj = Trajectory.from_dict(res.fields["trajectory"])
    assert [t.exec["status"] for t in traj.turns if t.kind == "output"] == ["ok"]  # the failed try left no cell


def test_a_step_whose_cells_keep_failing_abandons_the_try(tok: Any) -> None:
    actor = ["Compute the product of six and seven please.\n", "\\boxed{42}"]
    critic = Critic(["x\n```python\nfail()\n```\n"] * 3)
    res, backend = _try(tok, actor, critic, TirgenConfig(step_tokens=64, min_step_tokens=1, critic_retries=2))
    assert res.abandoned and res.fields["trajectory"]["stop_reason"] == "abandoned"
    assert len(critic.asked) == 3 and res.steps[0]["abandoned"] and res.steps[0]["kept"] is None
    assert [f["critic"] for f in res.steps[0]["failed"]] == critic.rewrites
    assert len(backend.calls) == 1  # the actor was not asked to go on


def test_short_steps_and_steps_without_computation_pass_through_as_the_actors_own(tok: Any) -> None:
    # eos=False: every completion ends by length, so the actor goes on step after step
    actor = ["Hi.\n", "A longer step with no numbers at all here.\n"]
    critic = Critic([])  # gives the step back: no cell, nothing to change
    short = len(tok.encode("Hi.\n", add_special_tokens=False))
    assert short < len(tok.encode(actor[1], add_special_tokens=False))
    res, _ = _try(tok, actor, critic, TirgenConfig(step_tokens=64, min_step_tokens=short + 1), eos=False,
                  max_tokens=120)
    traj = Trajectory.from_dict(res.fields["trajectory"])
    assert all(t.who == "policy" for t in traj.turns) and traj.stop_reason == "max_tokens"
    assert traj.turns[0].text == "Hi.\n" and critic.asked  # "Hi." was too short to ask about
    assert critic.asked[0][0] == "A longer step with no numbers at all here.\n"
    assert all(s.startswith("A longer") for s, _ in critic.asked)  # the last one cut by the token budget
    assert res.fields["completion_logprobs"] is not None  # the policy's own samples keep their log-probs
    assert res.steps[0]["critic"] is None and res.steps[1]["critic"] == actor[1]  # asked, gave it back
    assert all(s["kept"] == "actor" and not s["cells"] for s in res.steps)


def test_a_critics_rewrite_without_cells_is_recorded_and_the_actors_step_kept(tok: Any) -> None:
    actor = ["Six times seven, counted on my fingers, is 42.\n", "So \\boxed{42}."]
    critic = Critic(["Six times seven is 42 (I checked).\n"])  # no cell: nothing to run
    res, _ = _try(tok, actor, critic, TirgenConfig(step_tokens=64, min_step_tokens=1))
    traj = Trajectory.from_dict(res.fields["trajectory"])
    assert traj.turns[0].text == actor[0] and traj.turns[0].who == "policy"
    assert res.steps[0] == {"actor": actor[0], "critic": "Six times seven is 42 (I checked).\n", "cells": [],
                            "retries": 0, "kept": "actor"}


def test_the_step_window_is_cut_at_the_last_line_break(tok: Any) -> None:
    actor = ["one two three\nfour five six\nseven eight nine ten eleven twelve", "\\boxed{1}"]
    critic = Critic([])
    res, backend = _try(tok, actor, critic, TirgenConfig(step_tokens=12, min_step_tokens=1), max_tokens=200)
    first = res.steps[0]["actor"]
    assert first.endswith("\n") and first.count("\n") >= 1 and "eleven" not in first
    assert len(backend.calls[0][2].ids) == 12  # the window was full, so it was cut


def test_the_arithmetic_critic_boxes_a_final_answer_stated_in_words() -> None:
    from thor_cli.gen.critics import ArithmeticCritic

    res = asyncio.run(ArithmeticCritic().rewrite({}, "We get 12 * 3 = 36.\nThe final answer is 36."))
    assert "\\boxed{36}" in res.text and res.changed and res.n_cells == 1
    plain = asyncio.run(ArithmeticCritic(box_answer=False).rewrite({}, "The final answer is 36."))
    assert "\\boxed" not in plain.text and not plain.changed
