"""Helpers of the SFT tests: real trajectory records from the rollout engine with a scripted model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from thor_cli.backends.scripted import ScriptedBackend
from thor_cli.records.jsonl import InputRecord
from thor_cli.records.schema import ExecResult
from thor_cli.rollout import RolloutConfig, RolloutEngine
from thor_cli.tools import FunctionTool


def fake_python(code: str) -> ExecResult:
    """print(X) prints X; a cell containing 'fail' raises."""
    code = code.strip()
    if "fail" in code:
        return ExecResult(status="error", stderr="Traceback\nValueError: bad", error="ValueError: bad")
    if code.startswith("print(") and code.endswith(")"):
        return ExecResult(status="ok", stdout=code[6:-1] + "\n")
    return ExecResult(status="ok", stdout="done\n")


def thor_cell(code: str, before: str = "Step.\n") -> str:
    return f"{before}```python\n{code}\n```\n```output"


def rollout(tok: Any, script: list[str], *, protocol: str = "thor", question: str = "What is 6*7?",
            **cfg: Any) -> dict[str, Any]:
    """One record as thor eval/gen writes it (problem fields + the engine's fields, ids kept)."""
    config = RolloutConfig(protocol=protocol, backoff_tokens=0, **cfg)
    backend = ScriptedBackend(tokenizer=tok, script=script)
    problem = {"id": "p1", "question": question, "answer": "42"}

    async def go() -> dict[str, Any]:
        async with RolloutEngine(backend, config, tools={"python": FunctionTool("python", fake_python)}) as eng:
            return await eng.rollout(problem, "k", 0)

    return {**problem, **asyncio.run(go())}


def rec(data: dict[str, Any], line: int = 1) -> InputRecord:
    return InputRecord(data, "data.jsonl", line)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path
