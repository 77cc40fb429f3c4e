"""Exact-arithmetic TIR data for a real ``thor sft`` run (bench/sft_real_run.sh).

Writes, for multiplications of a 3-5 digit number by a 3-4 digit one (no model does these exactly
in its head; a python cell does):

- ``train.jsonl``: tool-integrated solutions, half as OpenAI chat records (``messages`` with a
  ``tool_calls`` python call and a ``tool`` result), half as trajectory records made by thor's own
  rollout engine with a scripted model and this model's tokenizer (ids + token_source, so thor sft
  reuses their ids unchanged);
- ``test.jsonl``: held-out problems (``question``, ``answer``) for ``thor eval``.

    python bench/sft_arith_data.py --model smollm2-135m --out runs/arith --train 256 --test 50
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
from pathlib import Path
from typing import Any

import orjson

from thor_cli.backends.scripted import ScriptedBackend
from thor_cli.models.resolve import resolve_model
from thor_cli.records.schema import ExecResult
from thor_cli.rollout import RolloutConfig, RolloutEngine
from thor_cli.rollout.protocols import THOR
from thor_cli.tools import FunctionTool


def problems(n: int, rng: random.Random, seen: set[str]) -> list[dict[str, Any]]:
    out = []
    while len(out) < n:
        a, b = rng.randint(100, 99999), rng.randint(100, 9999)
        q = f"What is {a} * {b}?"
        if q in seen:
            continue
        seen.add(q)
        out.append({"id": f"arith/{len(seen)}", "question": q, "answer": str(a * b), "a": a, "b": b})
    return out


def multiply(code: str) -> ExecResult:
    m = re.fullmatch(r"\s*print\((\d+) \* (\d+)\)\s*", code)
    if m is None:
        return ExecResult(status="error", error="SyntaxError: not a product")
    return ExecResult(status="ok", stdout=f"{int(m.group(1)) * int(m.group(2))}\n")


def chat_record(p: dict[str, Any]) -> dict[str, Any]:
    call = {"id": "c1", "type": "function",
            "function": {"name": "python", "arguments": orjson.dumps({"code": f"print({p['a']} * {p['b']})"}).decode()}}
    return {"id": p["id"], "messages": [
        {"role": "user", "content": THOR.user_message(p["question"], True)},
        {"role": "assistant", "content": "Let's compute the product exactly with Python.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": p["answer"]},
        {"role": "assistant", "content": f"The answer is \\boxed{{{p['answer']}}}."},
    ]}


async def trajectory_records(tok: Any, probs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def script(prompt: str, ids: list[int], call: int) -> str:
        p = next(p for p in probs if p["question"] in prompt)
        if "```output" not in prompt:  # the first turn (call counts all trajectories' calls)
            return f"Let's compute the product exactly with Python.\n```python\nprint({p['a']} * {p['b']})\n```\n```output"
        return f"The answer is \\boxed{{{p['answer']}}}."

    backend = ScriptedBackend(tokenizer=tok, script=script)
    cfg = RolloutConfig(temperature=0.0, max_tokens=256)
    out = []
    async with RolloutEngine(backend, cfg, tools={"python": FunctionTool("python", multiply)}) as eng:
        for p in probs:
            fields = await eng.rollout(p, p["id"], 0)
            out.append({**{k: p[k] for k in ("id", "question", "answer")}, **fields})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--train", type=int, default=256)
    ap.add_argument("--test", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(a.model))
    rng, seen = random.Random(a.seed), set[str]()
    test = problems(a.test, rng, seen)
    train = problems(a.train, rng, seen)
    half = len(train) // 2
    records = [chat_record(p) for p in train[:half]] + asyncio.run(trajectory_records(tok, train[half:]))
    random.Random(a.seed + 1).shuffle(records)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "train.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    (a.out / "test.jsonl").write_bytes(b"".join(orjson.dumps({k: p[k] for k in ("id", "question", "answer")}) + b"\n"
                                                for p in test))


if __name__ == "__main__":
    main()
