"""One record rendered for people with rich: the problem, reasoning, code, outputs, retries, verdict.

Colours and syntax highlighting on a terminal; the same layout as plain text when piped.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.rule import Rule
from rich.syntax import Syntax
from rich.text import Text

_FENCE = re.compile(r"^\s*```(?:python|py|output)?\s*\n?|\n?\s*```\s*$")
_TAGS = re.compile(r"^\s*<code>\s*|\s*</code>\s*$")
_RESPONSE = re.compile(r"^\s*</?response>\s*|\s*</?response>\s*$")
MAX_OUTPUT_LINES = 40


def _code_body(text: str) -> str:
    return _TAGS.sub("", _FENCE.sub("", text)).strip("\n")


def _clip(text: str, lines: int = MAX_OUTPUT_LINES) -> str:
    rows = text.splitlines()
    if len(rows) <= lines:
        return text
    half = lines // 2
    return "\n".join([*rows[:half], f"... {len(rows) - lines} lines cut ...", *rows[-half:]])


def _exec_line(ex: dict[str, Any] | None) -> Text:
    if not ex:
        return Text("")
    status = str(ex.get("status", "?"))
    style = "green" if status == "ok" else "bold red"
    line = Text(f"[{status}]", style=style)
    if ex.get("error"):
        line.append(f" {ex['error']}", style="red")
    if ex.get("duration_ms") is not None:
        line.append(f"  {float(ex['duration_ms']):.0f} ms", style="dim")
    return line


def _turns(traj: dict[str, Any]) -> list[RenderableType]:
    parts: list[RenderableType] = []
    retries_at: dict[int, list[dict[str, Any]]] = {}
    for r in traj.get("retries", []):
        retries_at.setdefault(int(r.get("at_turn", 0)), []).append(r)
    turns = traj.get("turns", [])
    for i, t in enumerate([*turns, None]):
        for r in retries_at.pop(i, []):
            parts.append(_retry(r))
        if t is None:
            break
        kind, text = t.get("kind"), t.get("text", "")
        if kind == "text":
            if text.strip():
                parts.append(Text(text.strip("\n")))
        elif kind == "code":
            title = f"cell ({t.get('tool') or 'python'})"
            body: RenderableType = (Syntax(_code_body(text), "python", theme="ansi_dark", word_wrap=True)
                                    if (t.get("tool") or "python") == "python" else Text(_code_body(text)))
            parts.append(Panel(body, title=title, title_align="left", border_style="blue"))
        elif kind == "output":
            ex = t.get("exec")
            ok = not ex or ex.get("status") == "ok"
            body_text = _code_body(_RESPONSE.sub("", text))
            out = Text(_clip(body_text) or "(no output)", style="" if ok else "red")
            parts.append(Panel(Group(out, _exec_line(ex)) if ex else out, title="output", title_align="left",
                               border_style="green" if ok else "red"))
    for rs in retries_at.values():  # retries pointing past the end
        parts.extend(_retry(r) for r in rs)
    return parts


def _retry(r: dict[str, Any]) -> RenderableType:
    head = Text(f"self-correction: dropped a failed cell ({r.get('reason', '?')})", style="bold yellow")
    body = [head]
    if r.get("exec"):
        body.append(_exec_line(r["exec"]))
    dropped = re.sub(r"^\s*```\w*\s*$\n?", "", str(r.get("dropped_text", "")), flags=re.M)
    if dropped.strip():
        body.append(Text(_clip(dropped, 20), style="dim strike"))
    return Panel(Group(*body), title="retry", title_align="left", border_style="yellow")


def verdict(rec: dict[str, Any]) -> Text:
    grade = rec.get("grade") if isinstance(rec.get("grade"), dict) else None
    traj = rec.get("trajectory") or {}
    pred = grade.get("pred") if grade else traj.get("final_answer", rec.get("pred"))
    gold = grade.get("gold") if grade else rec.get("answer")
    line = Text()
    if grade is None:
        line.append("not graded", style="dim")
    elif grade.get("correct"):
        line.append("CORRECT", style="bold green")
    else:
        line.append("WRONG", style="bold red")
    line.append(f"  answer: {pred if pred is not None else '(none)'}  gold: {gold}")
    if grade and grade.get("method"):
        line.append(f"  [{grade['method']}]", style="dim")
    if grade and grade.get("detail"):
        line.append(f"\n{grade['detail']}", style="dim")
    return line


def render_record(rec: dict[str, Any], index: int | None = None) -> RenderableType:
    traj = rec.get("trajectory") or {}
    title = f"{rec.get('id', index if index is not None else '')}"
    if rec.get("sample") is not None:
        title += f"  sample {rec['sample']}"
    meta = []
    if traj:
        meta.append(f"{traj.get('n_tool_calls', 0)} tool calls, {traj.get('n_corrections', 0)} corrections, "
                    f"stop: {traj.get('stop_reason', '?')}")
    if rec.get("error"):
        meta.append(f"error: {rec['error']}")
    parts: list[RenderableType] = [Rule(title, style="bold")]
    question = rec.get("question") or rec.get("problem")
    if question:
        parts.append(Panel(Text(str(question)), title="problem", title_align="left", border_style="magenta"))
    if traj:
        parts.extend(_turns(traj))
    elif isinstance(rec.get("response"), str):
        parts.append(Text(rec["response"]))
    if meta:
        parts.append(Text("  ".join(meta), style="dim"))
    parts.append(verdict(rec))
    parts.append(Text(""))
    return Group(*parts)
