"""Property tests over many random scripted trajectories: the token bookkeeping is exact.

For every generate call the backend records the ids it was conditioned on. Replaying those calls
must reproduce the trajectory: each prompt is the previous prompt + the previous completion +
one tool output (mask 0), or that minus a suffix dropped by a self-correction (and the Retry
holds exactly that suffix); the final prompt_ids + completion_ids is the last context plus at
most one output; masks, log-probs and texts stay aligned with ids through every cut.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rollout_helpers import py_tool

from thor_cli.backends.scripted import ScriptedBackend, fake_logprob
from thor_cli.records.schema import Trajectory
from thor_cli.rollout import RolloutConfig, RolloutEngine
from thor_cli.tools import FunctionTool

WORDS = ["Let", "x", "=", "2", "then", "compute", "é", "中文", "🙂", "\\frac{1}{2}", "\n", "  ", "$y$", "```"]
CODES = ["print(7)", "fail", "empty", "slow", "dead", "print('ü' * 3)", "print(" + "8" * 300 + ")", "x = 1"]


def random_completion(rng: random.Random, protocol: str) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 15)))
    r = rng.random()
    if protocol == "tapo":
        if r < 0.45:
            return f"<think>{text}</think><code>{rng.choice(CODES)}</code>"
        if r < 0.6:
            return f"<think>{text}</think><search>{text[:20]}</search>"
        if r < 0.7:
            return f"{text}</code>"  # malformed
        return f"<think>{text}</think><answer>{rng.choice(WORDS)}</answer>" if r < 0.9 else text
    if r < 0.55:
        return f"{text}\n```python\n{rng.choice(CODES)}\n```\n```output"
    if r < 0.62:
        return f"{text}```output"  # malformed: no cell
    if r < 0.8:
        return f"{text} \\boxed{{{rng.randint(0, 9)}}}"
    return text * rng.randint(1, 5)


def check(fields: dict[str, Any], backend: ScriptedBackend, cfg: RolloutConfig, max_context: int) -> None:
    traj = Trajectory.from_dict(fields["trajectory"])
    prompt, ids, mask = fields["prompt_ids"], fields["completion_ids"], fields["completion_mask"]
    assert len(mask) == len(ids) == len(fields["completion_logprobs"])
    assert ids == traj.completion_ids and mask == traj.completion_mask
    if len(prompt) >= max_context:
        assert not ids and traj.stop_reason == "context_overflow"
    assert len(ids) <= cfg.max_tokens and len(prompt) + len(ids) <= max(max_context, len(prompt))
    assert traj.n_tool_calls <= cfg.max_tool_calls

    shadow: list[int] = list(prompt)
    smask: list[int] = []
    retries = list(traj.retries)
    outputs = [t.ids for t in traj.turns if t.kind == "output"]
    calls = backend.calls
    for j, (p, _params, comp) in enumerate(calls):
        assert p == shadow, f"call {j} was not conditioned on the bookkept context"
        shadow = shadow + comp.ids
        smask = smask + [1] * len(comp.ids)
        nxt = calls[j + 1][0] if j + 1 < len(calls) else prompt + ids
        if len(nxt) < len(shadow):  # a self-correction dropped a suffix of sampled ids
            r = retries.pop(0)
            assert shadow[:len(nxt)] == nxt and r.dropped_ids == shadow[len(nxt):]
            assert all(m == 1 for m in smask[len(nxt) - len(prompt):])  # only sampled ids are ever dropped
            shadow, smask = list(nxt), smask[:len(nxt) - len(prompt)]
        elif len(nxt) > len(shadow):  # one tool output was spliced in
            assert nxt[:len(shadow)] == shadow
            extra = nxt[len(shadow):]
            assert extra == outputs.pop(0)
            shadow, smask = list(nxt), smask + [0] * len(extra)
        else:
            assert j == len(calls) - 1
    assert not retries and not outputs
    assert shadow == prompt + ids and smask == mask
    lps = fields["completion_logprobs"]
    assert all(lp == (fake_logprob(i) if m else 0.0) for i, m, lp in zip(ids, mask, lps, strict=True))
    for t in traj.turns:
        assert t.ids, "no empty turns"
        if t.sampled:
            assert t.logprobs is not None and len(t.logprobs) == len(t.ids)
        assert t.text == backend.tokenizer.decode([i for i in t.ids if i != backend.tokenizer.eos_token_id])
    for r in traj.retries:
        assert r.reason in ("error", "timeout", "killed", "memory", "no_output") and r.dropped_ids
    # self-corrections in a row never exceed the bound
    assert traj.n_corrections == len(traj.retries)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), protocol=st.sampled_from(["thor", "tapo"]))
def test_random_trajectories_keep_exact_bookkeeping(tok: Any, seed: int, protocol: str) -> None:
    rng = random.Random(seed)
    max_context = rng.choice([150, 600, 1000, 4000, 4000])
    cfg = RolloutConfig(protocol=protocol, max_tool_calls=rng.randint(0, 12), max_tokens=rng.choice([60, 300, 1500, 1500]),
                        backoff_tokens=rng.choice([0, 1, 5, 50, 500]), max_corrections=rng.randint(0, 4),
                        max_output_chars=rng.choice([0, 16, 200]), self_correct=rng.random() < 0.8,
                        tools=("python", "search") if protocol == "tapo" else ("python",))
    tools: dict[str, Any] = {"python": py_tool()}
    if protocol == "tapo":
        tools["search"] = FunctionTool("search")
    completions = [random_completion(rng, protocol) for _ in range(40)]
    backend = ScriptedBackend(tokenizer=tok, script=completions, max_context=max_context)

    async def go() -> dict[str, Any]:
        async with RolloutEngine(backend, cfg, tools=tools) as eng:
            return await eng.rollout({"id": "r", "question": "Q " * rng.randint(1, 20)}, str(seed), 0)

    fields = asyncio.run(go())
    assert fields["error"] is None, fields["error"]
    check(fields, backend, cfg, max_context)
