"""Records that training can trust: token_source on records with ids, and authors through the engine."""

from __future__ import annotations

import asyncio
from typing import Any

from rollout_helpers import cell, py_tool, run_one

from thor_cli.backends.base import tokenizer_fingerprint
from thor_cli.backends.scripted import ScriptedBackend
from thor_cli.records.access import drop_ids
from thor_cli.records.schema import Trajectory, Turn
from thor_cli.rollout import RolloutConfig, RolloutEngine


def test_records_with_ids_say_which_tokenizer_and_sampling_made_them(tok: Any) -> None:
    cfg = RolloutConfig(temperature=0.7, top_p=0.9, top_k=20)
    f, _, _ = run_one(tok, [cell("print(2)"), "\\boxed{2}"], cfg)
    assert f["token_source"] == {"tokenizer": tokenizer_fingerprint(tok), "temperature": 0.7, "top_p": 0.9,
                                 "top_k": 20}
    assert "token_source" not in drop_ids(dict(f))  # no ids, nothing to vouch for
    f2, _, _ = run_one(tok, [cell("print(2)"), "\\boxed{2}"], RolloutConfig(keep_ids=False))
    assert "token_source" not in f2


def test_a_critic_written_prefix_is_kept_whole_and_never_counted_as_a_policy_sample(tok: Any) -> None:
    """A TIRGen-style prefix: the actor's text, then a cell the critic wrote with its output. The
    policy continues; the back-off removes only the policy's own ids and stops at the critic's."""
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    code = "```python\nprint(6*7)\n```"
    out = "\n```output\n42\n```\n"
    turns = [Turn("text", "Work: ", enc("Work: ")),
             Turn("code", code, enc(code), tool="python", author="critic"),
             Turn("output", out, enc(out), exec={"status": "ok", "stdout": "42\n"}, tool="python"),
             Turn("text", "So the answer", enc("So the answer"), author="critic")]
    rec = {"id": "p", "question": "6*7?", "trajectory": Trajectory(protocol="thor", turns=turns).to_dict()}
    backend = ScriptedBackend(tokenizer=tok, script=[" is \\boxed{42}"])

    async def go() -> dict[str, Any]:
        async with RolloutEngine(backend, RolloutConfig(self_correct=False), tools={"python": py_tool()}) as eng:
            return await eng.continue_from(rec, cut_turn=4, backoff_tokens=50, one_round=False)

    f = asyncio.run(go())
    traj = Trajectory.from_dict(f["trajectory"])
    assert [t.who for t in traj.turns] == ["policy", "critic", "tool", "critic", "policy"]
    assert f["continued_from"]["prefix_turns"] == 4  # the back-off stopped at the critic's text
    n_prefix = f["continued_from"]["prefix_tokens"]
    mask = f["completion_mask"]
    assert mask[:len(turns[0].ids)] == [1] * len(turns[0].ids)
    assert mask[len(turns[0].ids):n_prefix] == [0] * (n_prefix - len(turns[0].ids))
    assert mask[n_prefix:] == [1] * (len(mask) - n_prefix)
    assert traj.learn_mask[len(turns[0].ids):len(turns[0].ids) + len(turns[1].ids)] == [1] * len(turns[1].ids)
