"""TIRGen (THOR, arXiv 2509.13761, Algorithm 1): the actor reasons, a critic moves its computations
into executed cells, the actor continues from the rewritten text.

One try at one problem (``tirgen_try``), on the rollout engine's step-by-step driver:
1. the actor (the policy, under the paper's actor prompt: plain step-by-step CoT) samples up to
   ``step_tokens`` tokens (L_step: 512 non-reasoning, 4096 reasoning); a window that ran to its
   size is cut at its last line break (the rest is dropped and sampled again as the next step);
2. a step under ``min_step_tokens`` passes through unchanged (the actor's own ids, author policy);
3. otherwise the critic gets the problem and the step and returns it rewritten: the same text,
   with computations as python cells. A rewrite with no cells keeps the actor's step as it was;
4. each cell runs in the try's own stateful sandbox session; when one fails (the protocol's rule:
   an error, a timeout, or nothing printed) the critic is asked again with the error, up to
   ``critic_retries`` times, and then the try is abandoned. The session is rebuilt from the kept
   cells before a retry, so a failed rewrite leaves no state behind;
5. an accepted rewrite replaces the step (its text author critic, its cells' outputs author tool,
   real outputs spliced in, the critic's predicted outputs dropped) and the actor goes on from it:
   the ids already fixed are never re-tokenized.
The try ends when the actor stops (EOS, or the protocol's answer), when the token budget runs out,
or when it is abandoned. Every step records (``gen.steps``) what the actor wrote, the critic's last
rewrite (also one with no cell, which left the actor's step in place; None when the critic was not
asked), each cell's result, which text the trajectory kept (``kept``: actor, critic, or None when
abandoned) and each rewrite whose cells failed, with its error (``failed``).

Departures from the reference code: cells run in one stateful session per trajectory (the
reference runs each cell alone); the step is cut at a line break by token, never by re-encoding
text; a failed cell is retried by the critic with its error before the try is given up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from thor_cli.gen.critics import Critic
from thor_cli.records.schema import ExecResult


@dataclass(frozen=True)
class TirgenConfig:
    step_tokens: int = 512  # L_step (4096 for reasoning models)
    min_step_tokens: int = 16  # shorter fragments pass through unchanged
    critic_retries: int = 2  # K: rewrites asked again after a failed cell, then the try is abandoned
    tries: int = 8  # N: tries per problem until one is kept

    def to_dict(self) -> dict[str, Any]:
        return {"step_tokens": self.step_tokens, "min_step_tokens": self.min_step_tokens,
                "critic_retries": self.critic_retries, "tries": self.tries}


@dataclass
class TryResult:
    fields: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    abandoned: bool = False
    n_cells: int = 0


def _text_of(rewrite: Any) -> str:
    return rewrite if isinstance(rewrite, str) else str(getattr(rewrite, "text", ""))


def _cell(tool: str, arg: str, res: ExecResult) -> dict[str, Any]:
    return {"tool": tool, "code": arg, "status": res.status, "stdout": res.stdout[-2000:], "error": res.error}


async def tirgen_try(engine: Any, critic: Critic, problem: dict[str, Any], key: str, sample: int,
                     cfg: TirgenConfig, *, actor_prompt_ids: list[int]) -> TryResult:
    """One try (module doc). ``fields`` are the record fields of the trajectory (prompt_ids: the
    actor's prompt; the stage swaps in the policy's tool prompt for training)."""
    proto = engine.protocol
    eos = engine.tok.eos_id
    steps: list[dict[str, Any]] = []
    n_cells = 0
    async with engine.drive(problem, key, sample, prompt_ids=actor_prompt_ids) as tr:
        stop = "eos"
        while True:
            comp = await tr.generate(cfg.step_tokens)
            if not comp.ids:
                stop = "max_tokens"
                break
            final = comp.finish_reason != "length"
            out_of_budget = comp.finish_reason == "length" and tr.n_completion + len(comp.ids) >= engine.cfg.max_tokens
            k = len(comp.ids) if final or out_of_budget else tr.cut_at_line_break(comp.ids)
            ids, lps = comp.ids[:k], (comp.logprobs[:k] if comp.logprobs is not None else None)
            ends_with_eos = bool(ids) and ids[-1] == eos
            text = tr.decode(ids)
            step: dict[str, Any] = {"actor": text, "critic": None, "cells": [], "retries": 0, "kept": "actor"}
            steps.append(step)
            if len(ids) < cfg.min_step_tokens or not text.strip():
                tr.keep_sampled(ids, lps)
            else:
                feedback: str | None = None
                accepted = False
                for attempt in range(cfg.critic_retries + 1):
                    step["retries"] = attempt
                    rewrite = _text_of(await critic.rewrite(problem, text, feedback))
                    step["critic"] = rewrite
                    segments = proto.split_calls(rewrite)
                    calls = [(t, a) for t, a in segments if t != "text"]
                    if not calls:  # nothing to compute: the actor's own step stays, as sampled
                        tr.keep_sampled(ids, lps)
                        step["cells"] = []
                        accepted = True
                        break
                    results: list[ExecResult] = []
                    failed: str | None = None
                    for tool, arg in calls:
                        res = await tr.execute(tool, arg)
                        results.append(res)
                        why = proto.failure(tool, res)
                        if why is not None:
                            failed = f"{why}: {res.error or res.stderr.strip()[-300:] or 'the cell printed nothing'}"
                            break
                    step["cells"] = [_cell(t, a, r) for (t, a), r in zip(calls, results, strict=False)]
                    if failed is None:
                        it = iter(results)
                        for seg_tool, seg in segments:
                            if seg_tool == "text":
                                tr.add_text(seg, author="critic")
                            else:
                                tr.add_call(seg_tool, seg, next(it), author="critic")
                        if ends_with_eos:  # the step ended the actor's answer: so does its rewrite
                            tr.add_ids([eos], author="critic")
                        n_cells += len(calls)
                        step["kept"] = "critic"
                        accepted = True
                        break
                    step.setdefault("failed", []).append({"critic": rewrite, "error": failed})
                    feedback = failed
                    for tool, _ in calls:
                        tr.discard_calls(tool)
                if not accepted:
                    step["abandoned"] = True
                    step["kept"] = None
                    return TryResult(tr.fields("abandoned"), steps, abandoned=True, n_cells=n_cells)
            if final:
                stop = "answer" if tr.final_answer() is not None else "eos"
                break
            if out_of_budget or tr.n_completion >= engine.cfg.max_tokens:
                stop = "max_tokens"
                break
        return TryResult(tr.fields(stop), steps, n_cells=n_cells)
