"""`thor eval`'s code problems: the python tool and the code tests share one sandbox pool."""

from __future__ import annotations

import asyncio
from pathlib import Path

from thor_cli.backends.scripted import ScriptedBackend
from thor_cli.data import load_benchmark
from thor_cli.evaluate.runner import EvalOptions, run_eval
from thor_cli.grading import GradeConfig
from thor_cli.records.jsonl import OutputSink
from thor_cli.rollout import RolloutConfig, RolloutEngine
from thor_cli.sandbox import SandboxConfig, SandboxPool
from thor_cli.tools import build_tools

SOLUTION = '''```python
def add(x: int, y: int):
    return x + y
print(add(2, 3))
```
```output'''


def test_code_problem_solved_with_the_tool_is_graded_in_the_same_pool(
        tiny_model_dir: Path, tmp_path: Path, pool_starts: list[SandboxPool]) -> None:
    from transformers import AutoTokenizer

    starts = pool_starts
    problem = next(p for p in load_benchmark("humaneval") if p.get("entry_point") == "add")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    backend = ScriptedBackend(tokenizer=tok, script=[SOLUTION, "That is the function."])
    sink = OutputSink(str(tmp_path / "ev.jsonl"), stage="eval")
    opts = EvalOptions(samples=1, concurrency=2, grade=GradeConfig(timeout=5, code_timeout=10))

    async def go() -> None:
        pool = await SandboxPool(SandboxConfig(timeout=10)).start()
        try:
            tools = build_tools(("python",), sandbox_pool=pool)
            async with RolloutEngine(backend, RolloutConfig(max_tokens=512), tools=tools) as engine:
                await run_eval([problem], engine, sink, opts, sandbox=pool)
        finally:
            await pool.close()

    records: list[dict] = []
    sink.write = records.append  # type: ignore[method-assign]
    asyncio.run(go())
    [rec] = records
    [result] = [t.get("exec") for t in rec["trajectory"]["turns"] if t["kind"] == "output"]
    assert result["status"] == "ok" and result["stdout"].strip() == "5"
    assert rec["grade"]["correct"] is True and rec["grade"]["method"] == "code_tests"
    assert len(starts) == 1, "the tool and the code tests must share one sandbox pool"
