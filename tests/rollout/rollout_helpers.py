"""Shared helpers of the rollout tests: a scripted python tool and a driver."""

from __future__ import annotations

import asyncio
from typing import Any

from thor_cli.backends.scripted import ScriptedBackend
from thor_cli.records.schema import ExecResult
from thor_cli.rollout import RolloutConfig, RolloutEngine
from thor_cli.tools import FunctionTool


def fake_python(code: str) -> ExecResult:
    """print(X) prints X; 'fail' errors; 'empty' prints nothing; 'slow' times out; 'dead' is killed."""
    code = code.strip()
    if "fail" in code:
        return ExecResult(status="error", stderr="Traceback\nValueError: bad", error="ValueError: bad")
    if "slow" in code:
        return ExecResult(status="timeout", error="TimeoutError: the cell ran past its 1 s limit")
    if "dead" in code:
        return ExecResult(status="killed", error="killed by signal 9")
    if "empty" in code:
        return ExecResult(status="ok")
    if code.startswith("print(") and code.endswith(")"):
        return ExecResult(status="ok", stdout=code[6:-1] + "\n")
    return ExecResult(status="ok", stdout="done\n")


def py_tool(**kw: Any) -> FunctionTool:
    return FunctionTool("python", fake_python, stateful=True, **kw)


def cell(code: str, before: str = "Step.\n") -> str:
    return f"{before}```python\n{code}\n```\n```output"


def run_one(tok: Any, script: Any, cfg: RolloutConfig | None = None, tools: dict[str, Any] | None = None,
            problem: dict[str, Any] | None = None, key: str = "k", sample: int = 0,
            **backend_kw: Any) -> tuple[dict[str, Any], ScriptedBackend, dict[str, Any]]:
    cfg = cfg or RolloutConfig()
    backend = ScriptedBackend(tokenizer=tok, script=script, **backend_kw)
    tools = tools if tools is not None else {"python": py_tool()}

    async def go() -> dict[str, Any]:
        async with RolloutEngine(backend, cfg, tools=tools) as eng:
            return await eng.rollout(problem or {"id": "p1", "question": "What is 1+1?"}, key, sample)

    return asyncio.run(go()), backend, tools
