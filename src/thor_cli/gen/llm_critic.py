"""The LLM critic of TIRGen: any backend, through the rollout engine (no tools), with THOR's prompt.

The prompt is a template (``CRITIC_PROMPT``: the paper's Figure 7, with the problem given as
context and the step to revise) with ``{question}``, ``{step}`` and, on a retry, ``{feedback}``
(``FEEDBACK_NOTE``: the failed cell's error); both are editable in the config
(``critic_prompt``, ``critic_feedback``). The critic's answer is the rewritten step: its cells
are parsed by the policy's protocol (``ToolProtocol.split_calls``) and run by the pipeline.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from thor_cli.gen.critics import CriticResult

CRITIC_PROMPT = """You are a scientist proficient in computer science and mathematics. I will provide you with a \
detailed thought process (chain of thought) from a powerful model for a mathematical problem. Your task is to \
revise this thought process.

## Revision Goal:
Without altering the original model's reasoning flow and methods, identify any steps in the chain of thought that \
can be assisted by code for numerical calculations, equation solving, hypothesis testing, data processing, etc., \
and replace these natural language descriptions of computational processes with corresponding code execution and \
predicted results.

### You need to complete the following steps:
1. Identify Codable Parts: pinpoint any parts involving specific numerical calculations, algebraic operations, set \
operations or logical verifications that can be precisely executed using Python code.
2. Write Python Code: for the identified parts, write clear, concise Python code blocks. Every code block should \
print its output with the `print()` function.
3. Predict Code Output: provide the expected output of the Python code you have written.
4. Embed in Chain of Thought: embed the code and its results into the chain of thought. Keep the parts that were \
not modified exactly as they were! Only modify the parts included in the original chain of thought; do not extend \
or continue solving parts not covered by it.

### Note:
1. You can output multiple code blocks.
2. Each code block is independent: it runs on its own and imports what it needs.
3. Do not alter the core reasoning logic, step order or methods of the original chain of thought.
4. Ensure that the code is correct and the predicted output is accurate.
5. No problem solving: only revise the chain of thought; output unchanged parts as they are.

Use exactly this format:
Original reasoning step, ...
```python
Python block 1
```
```output
Code output 1
```
Continue reasoning...

## The problem (context only; do not solve it)
{question}

## The chain of thought to revise
{step}
{feedback}"""

FEEDBACK_NOTE = """
## Your previous revision failed
A code block of your previous revision did not run: {error}
Write code that runs and prints its result."""


class LLMCritic:
    """Rewrites steps with a model through a ``RolloutEngine`` whose config has no tools."""

    def __init__(self, engine: Any, *, name: str, prompt: str = CRITIC_PROMPT, feedback: str = FEEDBACK_NOTE) -> None:
        if engine.cfg.tools:
            raise ValueError("the critic's engine must run without tools")
        self.engine = engine
        self.name = name
        self.prompt = prompt
        self.feedback = feedback
        self.calls = 0

    async def rewrite(self, problem: dict[str, Any], step: str, feedback: str | None = None) -> CriticResult:
        note = self.feedback.replace("{error}", feedback) if feedback else ""
        text = (self.prompt.replace("{question}", str(problem.get("question", "")))
                .replace("{step}", step).replace("{feedback}", note))
        self.calls += 1
        key = hashlib.sha256(text.encode()).hexdigest()[:20]  # same prompt, same sample: reruns agree
        fields = await self.engine.rollout({"prompt": text}, key, 0)
        if fields.get("error"):
            raise RuntimeError(f"the critic failed: {fields['error']}")
        out = "".join(t["text"] for t in fields["trajectory"]["turns"])
        out = re.sub(r"<\|[a-z_]+\|>\s*$", "", out)  # a chat model's end marker, when decoded as text
        n_cells = sum(1 for t, _ in self.engine.protocol.split_calls(out) if t != "text")
        return CriticResult(out, n_cells, out.strip() != step.strip())
