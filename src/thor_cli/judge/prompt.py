"""The judge's prompt, its verdict parser, and the content key of one judgement.

The judge answers on two lines, ``VERDICT: yes|no`` then ``REASON: ...``; its reply is started
for it with ``PREFILL`` (``VERDICT:``), so it only has to say yes or no (SmolLM2-135M, asked
without it, wrote prose 50 times out of 50). ``parse_verdict`` takes the last VERDICT line (a
model may think aloud first); anything without one is ``invalid``.

>>> parse_verdict("Both are 1/2.\\nVERDICT: yes\\nREASON: 0.5 = 1/2")
('yes', '0.5 = 1/2')
>>> parse_verdict("I think so")[0]
'invalid'
"""

from __future__ import annotations

import hashlib
import json
import re

PROMPT_VERSION = "v2"  # part of every cache key: change it when the template or PREFILL changes
PREFILL = "VERDICT:"  # the reply starts here (appended to the prompt), so even a small model answers in form
TEMPLATE = """You are grading the final answer of a math problem. Decide whether the candidate answer \
means the same as the reference answer: the same number, expression, set, interval or statement, \
whatever its notation, formatting or units. Do not solve the problem again; compare the answers.

Question: {question}
Reference answer: {gold}
Candidate answer: {pred}

Reply with exactly two lines:
VERDICT: yes  (or VERDICT: no)
REASON: one short sentence"""

_VERDICT = re.compile(r"verdict\W{0,3}[:=]\W{0,3}(yes|no|correct|incorrect|equivalent|not equivalent|true|false)\b",
                      re.I)
_REASON = re.compile(r"reason\W{0,3}[:=]\s*(.+)", re.I)
_YES = {"yes", "correct", "equivalent", "true"}


def render(pred: str, gold: str, question: str | None) -> str:
    return TEMPLATE.format(pred=pred, gold=gold, question=question.strip() if question else "(not given)")


def parse_verdict(text: str) -> tuple[str, str]:
    """("yes" | "no" | "invalid", reason) from the judge's reply."""
    found = _VERDICT.findall(text)
    if not found:
        snippet = " ".join(text.split())[:200]
        return "invalid", f"no VERDICT line in the judge's reply: {snippet!r}"
    verdict = "yes" if found[-1].lower() in _YES else "no"
    reasons = _REASON.findall(text)
    reason = reasons[-1].strip() if reasons else ""
    return verdict, reason[:500]


def content_key(pred: str, gold: str, question: str | None, model: str, system_prompt: str | None = None) -> str:
    """The cache key of a judgement: what the judge saw (prompt, model, template version)."""
    payload = json.dumps({"pred": pred, "gold": gold, "question": question or "", "model": model,
                          "prompt": render(pred, gold, question), "system": system_prompt or "",
                          "version": PROMPT_VERSION}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()
