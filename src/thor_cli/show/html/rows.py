"""One trajectory record as a compact row of the report's browser, with its diffs computed here.

The browser (``assets/report.js``) renders rows a page at a time, so a row keeps only what the
page shows, in short keys (10,000 rows are parsed by the browser at load):

    run, id, s (sample), b (benchmark), q (question), c (correct: true/false/null), p (pred),
    g (gold), m (grade method), t (tool calls), x (self-corrections), f (a failed cell),
    stop, n (completion tokens), e (record error),
    turns: [{k: text|code|output, a: author, tx: text, st: exec status, er: exec error}],
    ret:   [{at: turn index, why: reason, er: error, diff: [line, ...]}]   self-corrections,
    gen:   [{i: step, diff: [line, ...], cells: n}]                       the critic's rewrites.

Diff lines are ``difflib.unified_diff`` lines (``@@``, `` ``, ``-``, ``+`` first). Long texts are
cut in the middle (``clip``) so one runaway output cannot make the file huge.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from thor_cli.evaluate.metrics import tokens_of
from thor_cli.records.access import benchmark_of
from thor_cli.show.filters import has_failed_cell, is_correct
from thor_cli.show.render import _RESPONSE, _code_body

MAX_TEXT = 6000  # chars of one reasoning turn or question
MAX_OUTPUT = 2000  # chars of one tool output (the engine already caps what the model saw)
_FENCE_LINE = re.compile(r"^\s*```\w*\s*$\n?", flags=re.M)


def clip(text: str, limit: int) -> str:
    """``text`` cut in the middle to about ``limit`` chars, saying how much was cut."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - 2 * half} characters cut] ...\n{text[-half:]}"


def udiff(old: str, new: str) -> list[str]:
    """Unified diff lines of two texts by line, without the file header."""
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=3)
    return [ln for ln in lines if not ln.startswith(("---", "+++"))]


def _body(text: str) -> str:
    """A cell or output without its fences: the code turn of THOR's protocol is
    "```python\\n...\\n```\\n```output", its output "\\n19\\n```\\n"."""
    return _FENCE_LINE.sub("", _code_body(text)).strip("\n")


def _turn(t: dict[str, Any]) -> dict[str, Any]:
    kind = str(t.get("kind", "text"))
    text = str(t.get("text", ""))
    row: dict[str, Any] = {"k": kind}
    if t.get("author"):
        row["a"] = t["author"]
    if kind == "code":
        row["tx"] = clip(_body(text), MAX_TEXT)
        if t.get("tool") and t["tool"] != "python":
            row["tool"] = t["tool"]
    elif kind == "output":
        row["tx"] = clip(_body(_RESPONSE.sub("", text)), MAX_OUTPUT)
        ex = t.get("exec") or {}
        if ex:
            row["st"] = str(ex.get("status", "?"))
            if ex.get("error"):
                row["er"] = clip(str(ex["error"]), MAX_OUTPUT)
    else:
        row["tx"] = clip(text, MAX_TEXT)
    return row


def _replacement(turns: list[dict[str, Any]], at: int) -> str:
    """What the model wrote instead of a dropped attempt: the text and code from ``at`` up to the
    next cell's output."""
    parts = []
    for t in turns[at:]:
        if t.get("kind") == "output":
            break
        parts.append(_body(str(t.get("text", ""))) + "\n" if t.get("kind") == "code" else str(t.get("text", "")))
    return "".join(parts)


def _retries(traj: dict[str, Any]) -> list[dict[str, Any]]:
    turns = traj.get("turns") or []
    out = []
    for r in traj.get("retries") or []:
        ex = r.get("exec") or {}
        at = int(r.get("at_turn", 0))
        dropped = _FENCE_LINE.sub("", str(r.get("dropped_text", "")))
        row: dict[str, Any] = {"at": at, "why": str(ex.get("status") or r.get("reason") or "error"),
                               "diff": udiff(clip(dropped, MAX_TEXT), clip(_replacement(turns, at), MAX_TEXT))}
        if ex.get("error"):
            row["er"] = clip(str(ex["error"]), MAX_OUTPUT)
        out.append(row)
    return out


def _rewrites(rec: dict[str, Any]) -> list[dict[str, Any]]:
    gen = rec.get("gen")
    if not isinstance(gen, dict):
        return []
    out = []
    for i, step in enumerate(gen.get("steps") or []):
        if isinstance(step, dict) and isinstance(step.get("critic"), str):
            out.append({"i": i, "diff": udiff(clip(str(step.get("actor", "")), MAX_TEXT),
                                              clip(step["critic"], MAX_TEXT)),
                        "cells": len(step.get("cells") or [])})
    return out


def row_of(rec: dict[str, Any], run: str) -> dict[str, Any]:
    """The browser row of one record of run ``run``."""
    traj: dict[str, Any] = rec["trajectory"] if isinstance(rec.get("trajectory"), dict) else {}
    grade: dict[str, Any] = rec["grade"] if isinstance(rec.get("grade"), dict) else {}
    question = rec.get("question") or rec.get("problem") or ""
    row: dict[str, Any] = {
        "run": run, "id": str(rec.get("id", "")), "s": rec.get("sample"), "b": benchmark_of(rec),
        "q": clip(str(question), MAX_TEXT), "c": is_correct(rec),
        "p": grade.get("pred", traj.get("final_answer")), "g": grade.get("gold", rec.get("answer")),
        "m": grade.get("method"), "t": int(traj.get("n_tool_calls", 0) or 0),
        "x": int(traj.get("n_corrections", 0) or 0), "f": has_failed_cell(rec),
        "stop": traj.get("stop_reason"), "n": tokens_of(rec),
        "turns": [_turn(t) for t in traj.get("turns") or []],
    }
    if rec.get("error"):
        row["e"] = clip(str(rec["error"]), MAX_OUTPUT)
    if not traj and isinstance(rec.get("response"), str):
        row["turns"] = [{"k": "text", "tx": clip(rec["response"], MAX_TEXT)}]
    if ret := _retries(traj):
        row["ret"] = ret
    if gen := _rewrites(rec):
        row["gen"] = gen
    return row
