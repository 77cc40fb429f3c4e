"""Tool protocols: how a model asks for a tool and how the result comes back. Data plus a parser.

- ``thor`` (THOR / ToRA / Qwen2.5-Math TIR): the model writes a ```python fenced cell, closes it
  and opens ```output; generation stops at "```output" and the engine splices
  ``"\\n" + result + "\\n```\\n"``. The final answer is the last ``\\boxed{}``.
- ``tapo`` (TAPO / Search-R1): ``<code>…</code>`` or ``<search>…</search>``; generation stops at
  the closing tag; the result comes back as ``"\\n<response>\\n" + result + "\\n</response>\\n"``.
  ``<answer>…</answer>`` ends the trajectory (``</answer>`` is a stop string).

A protocol holds its prompt (with and without tools), its stop strings, call extraction and
result formatting. Registry: ``PROTOCOLS``. Final answers (both protocols) are extracted by the
grader's ``grading.extract.extract_answer``, so the engine and the grader never disagree.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from thor_cli.errors import UsageError
from thor_cli.grading.extract import extract_answer, extract_boxed
from thor_cli.records.schema import ExecResult

COT_PROMPT = "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


@dataclass(frozen=True)
class ToolCall:
    tool: str  # the tool asked for ("python", "search"); "" when the call is malformed
    arg: str  # the code or the query
    start: int  # char index in the completion text where the call begins (the code turn starts here)
    error: str | None = None  # why the call cannot be run (malformed, unknown tool)


def last_boxed(text: str) -> str | None:
    r"""The content of the last complete ``\boxed{...}`` (or ``\fbox{...}``, ``\boxed 5``).

    The grader's extractor (``grading.extract.extract_boxed``), kept under this name for callers.

    >>> last_boxed(r"so \boxed{\frac{1}{2}} and \boxed{3}")
    '3'
    >>> last_boxed(r"\boxed{\frac{1}{2}}")
    '\\frac{1}{2}'
    >>> last_boxed("none") is None
    True
    """
    return extract_boxed(text)


def truncate_middle(text: str, max_chars: int) -> str:
    """Keep the head and the tail of ``text`` within ``max_chars`` (0 or less: no limit).

    >>> truncate_middle("a" * 10 + "b" * 10, 12)
    'aaaaaa\\n…[8 chars cut]…\\nbbbbbb'
    """
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    head = max_chars // 2
    tail = max_chars - head
    return text[:head] + f"\n…[{len(text) - max_chars} chars cut]…\n" + text[len(text) - tail:]


def result_text(res: ExecResult, max_chars: int) -> str:
    """What the model sees of a tool result: stdout, then the error line when it failed."""
    out = res.stdout.rstrip("\n")
    if res.status != "ok":
        err = res.error or (res.stderr.strip().splitlines() or [res.status])[-1]
        if res.status == "timeout" and not res.error:
            err = "TimeoutError: the cell ran out of time"
        out = f"{out}\n{err}" if out else err
    return truncate_middle(out, max_chars)


@dataclass(frozen=True)
class ToolProtocol(ABC):
    """What every protocol shares; the call syntax (parse, render, split) is each subclass's own."""

    name: str
    prompt: str  # user message template with {question}
    cot_prompt: str  # the same without tools (--no-tools)
    call_stops: tuple[str, ...]  # a completion that stops here asked for a tool
    answer_stops: tuple[str, ...]  # a completion that stops here gave its final answer
    output_template: str  # how a result is spliced back: {result}
    expects_print: bool  # a python cell that prints nothing counts as failed (self-correction)
    call_pattern: re.Pattern[str]  # a call in another author's text, with any result block after it
    tools: tuple[str, ...] = ("python",)  # the tools the protocol can call

    def available_tools(self, *, search: bool) -> tuple[str, ...]:
        """The tools a run offers: the protocol's, less search when no corpus or retriever is set."""
        return tuple(t for t in self.tools if t != "search" or search)

    def stops(self, with_tools: bool) -> tuple[str, ...]:
        return (self.call_stops + self.answer_stops) if with_tools else self.answer_stops

    def user_message(self, question: str, with_tools: bool) -> str:
        template = self.prompt if with_tools else self.cot_prompt
        return template.replace("{question}", question).replace("{{}}", "{}")

    def format_result(self, res: ExecResult, max_chars: int) -> str:
        return self.output_template.replace("{result}", result_text(res, max_chars))

    def failure(self, tool: str, res: ExecResult) -> str | None:
        """Why this result counts as a failed call for self-correction, or None."""
        if res.status in ("error", "timeout", "killed", "memory"):
            return res.status
        if res.status == "ok" and tool == "python" and self.expects_print and not res.stdout.strip():
            return "no_output"
        return None

    def final_answer(self, text: str) -> str | None:
        """The answer in the model's text, exactly as the grader extracts it (so votes over
        ``final_answer`` and over graded predictions agree): the last ``<answer>…</answer>`` (a
        ``\\boxed{}`` inside it wins), else the last ``\\boxed{}``. None when there is neither: the
        grader's looser fallbacks ("the answer is X") do not end a trajectory."""
        return extract_answer(text, fallbacks=False)

    @abstractmethod
    def parse_call(self, text: str, stop: str) -> ToolCall:
        """The tool call at the end of ``text`` (a completion that stopped at ``stop``)."""

    def split_calls(self, text: str) -> list[tuple[str, str]]:
        """Another author's text cut into ("text", s) and (tool, arg) segments, in order, with any
        result blocks it wrote itself (a critic's predicted ```output) dropped: real results are
        spliced in by whoever runs the calls."""
        segments: list[tuple[str, str]] = []
        pos = 0
        for m in self.call_pattern.finditer(text):
            if m.start() > pos:
                segments.append(("text", text[pos:m.start()]))
            tool, arg = self._call_of(m)
            segments.append((tool, arg.strip("\n")))
            pos = m.end()
        if pos < len(text):
            segments.append(("text", text[pos:]))
        return segments

    @abstractmethod
    def _call_of(self, m: re.Match[str]) -> tuple[str, str]:
        """(tool, argument) of a match of ``call_pattern``."""

    @abstractmethod
    def render_call(self, tool: str, arg: str) -> str:
        """The text of a call to ``tool`` as the model would write it, up to and including the stop
        string (what ``parse_call`` reads back): for splicing cells another author wrote."""


# A cell and the result block its author may have written after it (dropped by split_calls).
_FENCE_CALL = re.compile(r"```python[ \t]*\n(.*?)```[ \t]*\n?(?:[ \t]*```output[ \t]*\n.*?(?:```[ \t]*\n?|\Z))?", re.S)
_TAG_CALL = re.compile(r"<(code|search)>(.*?)</\1>[ \t]*\n?(?:\s*<response>.*?(?:</response>[ \t]*\n?|\Z))?", re.S)


@dataclass(frozen=True)
class FenceProtocol(ToolProtocol):
    """Markdown fences: a ```python cell closed and followed by ```output (THOR, ToRA)."""

    def parse_call(self, text: str, stop: str) -> ToolCall:
        end = text.rfind(stop)
        end = len(text) if end < 0 else end
        start = text.rfind("```python", 0, end)
        if start < 0:
            return ToolCall("", "", end, error="no ```python cell before ```output")
        body = text[start + len("```python"):end].rstrip()
        if body.endswith("```"):
            body = body[:-3]
        return ToolCall("python", body.strip("\n"), start)

    def _call_of(self, m: re.Match[str]) -> tuple[str, str]:
        return "python", m.group(1)

    def render_call(self, tool: str, arg: str) -> str:
        if tool != "python":
            raise UsageError(f"the {self.name} protocol has no {tool!r} tool", "use python")
        return f"```python\n{arg.strip(chr(10))}\n```\n{self.call_stops[0]}"


@dataclass(frozen=True)
class TagProtocol(ToolProtocol):
    """XML-like tags: <code>…</code> runs python, <search>…</search> queries (TAPO, Search-R1)."""

    def parse_call(self, text: str, stop: str) -> ToolCall:
        end = text.rfind(stop)
        end = len(text) if end < 0 else end
        tag = stop.strip("</>")
        start = text.rfind(f"<{tag}>", 0, end)
        if start < 0:
            return ToolCall("", "", end, error=f"</{tag}> without <{tag}>")
        body = text[start + len(tag) + 2:end]
        if tag == "code":
            body = re.sub(r"^\s*```(?:python|py)?\s*\n", "", body)
            body = re.sub(r"\n\s*```\s*$", "", body)
            return ToolCall("python", body.strip("\n"), start)
        return ToolCall(tag, body.strip(), start)

    def _call_of(self, m: re.Match[str]) -> tuple[str, str]:
        body = re.sub(r"^\s*```(?:python|py)?\s*\n", "", m.group(2))
        body = re.sub(r"\n\s*```\s*$", "", body)
        return ("python" if m.group(1) == "code" else "search"), body

    def render_call(self, tool: str, arg: str) -> str:
        tag = {"python": "code", "search": "search"}.get(tool)
        if tag is None:
            raise UsageError(f"the {self.name} protocol has no {tool!r} tool", "use python or search")
        return f"<{tag}>\n{arg.strip(chr(10))}\n</{tag}>"




THOR = FenceProtocol(
    name="thor",
    prompt="{question}\nPlease integrate natural language reasoning with programs to solve the problem above, "
    "and put your final answer within \\boxed{{}}.",
    cot_prompt=COT_PROMPT,
    call_stops=("```output",),
    answer_stops=(),
    output_template="\n{result}\n```\n",
    expects_print=True,
    call_pattern=_FENCE_CALL,
)

TAPO = TagProtocol(
    name="tapo",
    prompt="Answer the given question. You must conduct reasoning inside <think> and </think> first every time "
    "you get new information. If you lack some knowledge, you can call a search engine by <search> query "
    "</search>; if you need to compute, write Python code inside <code> and </code> and print the results. "
    "The results come back between <response> and </response>. You can search or run code as many times as "
    "you want. When you have the answer, give it inside <answer> and </answer> without detailed "
    "illustrations, for example <answer> Beijing </answer>. Question: {question}\n",
    cot_prompt="Answer the given question. Reason inside <think> and </think>, then give the answer inside "
    "<answer> and </answer>, for example <answer> Beijing </answer>. Question: {question}\n",
    call_stops=("</code>", "</search>"),
    answer_stops=("</answer>",),
    output_template="\n<response>\n{result}\n</response>\n",
    expects_print=True,
    call_pattern=_TAG_CALL,
    tools=("python", "search"),
)

PROTOCOLS: dict[str, ToolProtocol] = {"thor": THOR, "tapo": TAPO}


def get_protocol(name: str) -> ToolProtocol:
    if name not in PROTOCOLS:
        raise UsageError(f"unknown protocol {name!r}", f"choose one of: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
