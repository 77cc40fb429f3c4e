"""Final-answer extraction: the last ``\\boxed{}``, the protocol's ``<answer>``, or a pattern.

Pure string functions (no sympy), cheap enough to run in the parent process on every record.

>>> extract_boxed(r"so \\boxed{\\frac{1}{2}} and then \\boxed{3}")
'3'
>>> extract_answer(r"<answer>The capital is \\boxed{Paris}</answer>")
'Paris'
"""

from __future__ import annotations

import re
from typing import Any

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S)
_HASHES = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(r"(?:final answer|the answer) is[:\s]*\$?([^\n$]+?)\$?\s*(?:\.|$)", re.I | re.M)


def _balanced(text: str, start: int) -> str | None:
    """The content of the brace group opening at text[start] == '{', or None if unclosed."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":  # \{ and \} are literal braces in LaTeX, not grouping
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
        i += 1
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` (or ``\\fbox{}``, ``\\boxed 5``); None if none."""
    for m in reversed(list(_BOXED.finditer(text))):
        end = m.end()
        if end < len(text) and text[end] == "{":
            inner = _balanced(text, end)
            if inner is not None:
                return inner.strip()
        elif end < len(text):
            word = re.match(r"[^\s$.,;]+", text[end:])  # \boxed 5
            if word:
                return word.group(0)
    return None


def extract_answer(text: str | None, *, pattern: str | re.Pattern[str] | None = None,
                   fallbacks: bool = True) -> str | None:
    """The final answer in a model's text.

    Order: a configured ``pattern`` (last match; group 1 if it has one) when given; else the
    protocol's ``<answer>…</answer>`` (a ``\\boxed{}`` inside it wins); else the last ``\\boxed{}``;
    then, with ``fallbacks``, GSM8K's ``#### X`` and "the answer is X".
    """
    if not text:
        return None
    if pattern is not None:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        matches = list(rx.finditer(text))
        if not matches:
            return None
        m = matches[-1]
        return (m.group(1) if rx.groups else m.group(0)).strip() or None
    tags = _ANSWER_TAG.findall(text)
    if tags:
        inner = tags[-1]
        return (extract_boxed(inner) or inner).strip() or None
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    if fallbacks:
        for rx in (_HASHES, _ANSWER_IS):
            found = rx.findall(text)
            if found:
                return found[-1].strip().rstrip(".") or None
    return None


def trajectory_text(traj: dict[str, Any]) -> str:
    """The model's own text of a trajectory (text and code turns; tool outputs left out)."""
    return "".join(t.get("text", "") for t in traj.get("turns", []) if t.get("kind") != "output")


def prediction(record: dict[str, Any], *, pattern: str | None = None) -> str | None:
    """The predicted answer of a record: ``pred``; else from ``trajectory`` or ``response`` text.

    A trajectory's ``final_answer`` (set by the rollout engine) is used as is unless a pattern
    is configured, in which case the pattern is applied to the trajectory's text.
    """
    if record.get("pred") is not None:
        return str(record["pred"])
    traj = record.get("trajectory")
    if isinstance(traj, dict):
        if traj.get("final_answer") is not None and pattern is None:
            return str(traj["final_answer"])
        return extract_answer(trajectory_text(traj), pattern=pattern)
    resp = record.get("response")
    if isinstance(resp, str):
        return extract_answer(resp, pattern=pattern)
    return None
