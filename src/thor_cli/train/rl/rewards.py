"""TAPO's reward: -1 for a format violation, else a task score in [0, 1].

Format (the ``tapo`` protocol in ``rollout/protocols.py``): the model reasons in
``<think>…</think>``, calls tools with ``<search>…</search>`` / ``<code>…</code>``, gets results
in ``<response>…</response>`` (spliced by the engine, never written by the model) and ends with
one ``<answer>…</answer>``. A violation, checked on the model's own text (tool output left out):

- ``no_answer`` / ``multiple_answers`` / ``empty_answer``: not exactly one non-empty answer;
- ``unbalanced:<tag>``: a think/search/code/answer tag opened inside another, closed without
  being opened, or left open (TAPO's tags never nest);
- ``fake_response``: the model wrote a ``<response>`` tag itself (it would be faking tool output);
- ``over_budget``: more tool calls than ``max_tool_calls`` (self-corrected calls count), or the
  engine stopped the trajectory at its tool budget.

Task scores: ``math`` by thor's grader (``grading``: the fast paths, then math-verify), ``fact``
by SQuAD-style token F1 (lower case, punctuation and a/an/the removed; the best over a list of
aliases), ``numeric`` by tolerance (``|p - g| <= max(abs_tol, rel_tol * |g|)``). The paper names
exact match for math, fuzzy match for facts and tolerance for calculations without saying which
fuzzy match or tolerance; these are thor's choices. An optional per-call penalty
(``call_penalty * n_tool_calls``, the score floored at 0 so a valid answer never ranks below a
format violation) discourages tool-call reward hacking. ``tapo_rewards`` scores a batch and
lets a ``grading.Grader`` decide its math answers in time-bounded worker processes.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from thor_cli.errors import UsageError
from thor_cli.grading.arith import evaluate
from thor_cli.grading.extract import extract_answer, trajectory_text
from thor_cli.grading.normalize import clean, fast_equal

if TYPE_CHECKING:
    from thor_cli.grading import Grader

Kind = Literal["math", "fact", "numeric"]
KINDS: tuple[str, ...] = ("math", "fact", "numeric")
_TAG = re.compile(r"<(/?)(think|search|code|answer|response)>")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


@dataclass(frozen=True)
class TapoRewardConfig:
    max_tool_calls: int = 4  # TAPO: at most 4 tool turns
    call_penalty: float = 0.0  # subtracted per tool call from a valid answer's score
    rel_tol: float = 1e-3  # numeric answers
    abs_tol: float = 1e-6


def format_violation(traj: dict[str, Any], *, max_tool_calls: int = 4) -> str | None:
    """The first format violation of a TAPO trajectory (see the module doc), or None."""
    text = trajectory_text(traj)
    open_tag: str | None = None
    answers = 0
    for m in _TAG.finditer(text):
        closing, tag = m.group(1) == "/", m.group(2)
        if tag == "response":
            return "fake_response"
        if not closing:
            if open_tag is not None:
                return f"unbalanced:{tag}"
            open_tag = tag
            answers += tag == "answer"
        elif open_tag != tag:
            return f"unbalanced:{tag}"
        else:
            open_tag = None
    if open_tag is not None and open_tag != "answer":
        return f"unbalanced:{open_tag}"
    if answers == 0 or open_tag == "answer":  # an answer left open was cut off: no answer given
        return "no_answer"
    if answers > 1:
        return "multiple_answers"
    if not (extract_answer(text, fallbacks=False) or "").strip():
        return "empty_answer"
    calls = int(traj.get("n_tool_calls") or 0)
    if calls > max_tool_calls or traj.get("stop_reason") == "max_tool_calls":
        return "over_budget"
    return None


def _norm_tokens(s: str) -> list[str]:
    s = s.lower()
    s = "".join(c for c in s if c not in string.punctuation)
    return _ARTICLES.sub(" ", s).split()


def token_f1(pred: str, gold: str | Sequence[str]) -> float:
    """SQuAD-style token F1, the best over the gold aliases.

    >>> round(token_f1("the Eiffel Tower", "Eiffel Tower in Paris"), 4)  # p = 2/2, r = 2/4
    0.6667
    """
    golds = [gold] if isinstance(gold, str) else list(gold)
    best = 0.0
    p = _norm_tokens(pred)
    for g in golds:
        gt = _norm_tokens(g)
        common = sum((Counter(p) & Counter(gt)).values())
        if not p or not gt:
            best = max(best, float(p == gt))
            continue
        if common:
            prec, rec = common / len(p), common / len(gt)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


def numeric_close(pred: str, gold: str, *, rel_tol: float = 1e-3, abs_tol: float = 1e-6) -> bool:
    """Both parse as numbers (thor's normaliser: "1,000", "\\frac{1}{2}", "50%") and agree within tolerance."""
    pv, gv = evaluate(clean(pred)), evaluate(clean(gold))
    if pv is None or gv is None:
        return False
    p, g = float(pv.value), float(gv.value)
    return abs(p - g) <= max(abs_tol, rel_tol * abs(g))


def math_equal(pred: str, gold: str) -> bool:
    """thor's grader in this process: the fast paths, then math-verify. No time bound: for a batch,
    grade with ``grading.Grader`` and pass its verdicts as ``math_correct``."""
    fast = fast_equal(pred, gold)
    if fast is not None:
        return fast[0]
    from thor_cli.grading.equiv import equivalent  # imports sympy: only when the fast paths cannot decide

    return equivalent(pred, gold)[0]


def task_score(pred: str | None, gold: str | Sequence[str], kind: Kind, *, math_correct: bool | None = None,
               rel_tol: float = 1e-3, abs_tol: float = 1e-6) -> float:
    """The answer's score in [0, 1] for its task kind (see the module doc)."""
    if kind not in KINDS:
        raise UsageError(f"unknown reward kind {kind!r}", f"use one of: {', '.join(KINDS)}")
    if pred is None or not pred.strip():
        return 0.0
    golds = [gold] if isinstance(gold, str) else list(gold)
    if kind == "fact":
        return token_f1(pred, golds)
    if kind == "numeric":
        return float(any(numeric_close(pred, g, rel_tol=rel_tol, abs_tol=abs_tol) for g in golds))
    if math_correct is not None:
        return float(math_correct)
    return float(any(math_equal(pred, g) for g in golds))


def kind_of(rec: dict[str, Any]) -> Kind:
    """A record's reward kind: ``task`` "qa" -> fact, otherwise math (numeric is asked for explicitly)."""
    return "fact" if rec.get("task") == "qa" else "math"


def _golds(rec: dict[str, Any]) -> list[str] | str:
    gold = rec.get("answer")
    if gold is None:
        raise UsageError(f"record {rec.get('id', '?')!r} has no gold answer", 'give every RL problem an "answer"')
    return [str(g) for g in gold] if isinstance(gold, list) else str(gold)


def tapo_reward(rec: dict[str, Any], *, kind: Kind | None = None, cfg: TapoRewardConfig | None = None,
                math_correct: bool | None = None) -> tuple[float, str]:
    """(reward, why) for a TAPO rollout record with a gold ``answer`` (a string or a list of aliases).

    ``why`` is the format violation, or "scored". ``math_correct``: the grader's verdict, when the
    caller graded the batch already (math kind only).
    """
    cfg = cfg or TapoRewardConfig()
    traj = rec.get("trajectory") or {}
    bad = format_violation(traj, max_tool_calls=cfg.max_tool_calls)
    if bad is not None:
        return -1.0, bad
    golds = _golds(rec)
    pred = extract_answer(trajectory_text(traj), fallbacks=False)
    score = task_score(pred, golds, kind or kind_of(rec), math_correct=math_correct,
                       rel_tol=cfg.rel_tol, abs_tol=cfg.abs_tol)
    calls = int(traj.get("n_tool_calls") or 0)
    return max(score - cfg.call_penalty * calls, 0.0), "scored"


def tapo_rewards(records: Sequence[dict[str, Any]], *, grader: Grader | None = None,
                 cfg: TapoRewardConfig | None = None, kinds: Sequence[Kind] | None = None) -> list[tuple[float, str]]:
    """``tapo_reward`` for a batch. With a ``grader`` (``grading.Grader``), the math answers of
    well-formed records are decided together by its time-bounded worker pool (a gold list: any
    alias), instead of math-verify in this process with no time bound."""
    cfg = cfg or TapoRewardConfig()
    ks: list[Kind] = list(kinds) if kinds is not None else [kind_of(r) for r in records]
    if len(ks) != len(records):
        raise UsageError(f"{len(ks)} reward kinds for {len(records)} records", "pass one kind per record")
    verdicts: dict[int, bool] = {}
    if grader is not None:
        items: list[dict[str, Any]] = []
        owner: list[int] = []
        for i, rec in enumerate(records):
            traj = rec.get("trajectory") or {}
            if ks[i] != "math" or format_violation(traj, max_tool_calls=cfg.max_tool_calls) is not None:
                continue
            golds = _golds(rec)
            pred = extract_answer(trajectory_text(traj), fallbacks=False)
            for g in [golds] if isinstance(golds, str) else golds:
                items.append({"pred": pred, "answer": g})
                owner.append(i)
        for i, grade in zip(owner, grader.grade_math(items), strict=True):
            verdicts[i] = verdicts.get(i, False) or grade.correct
    return [tapo_reward(r, kind=ks[i], cfg=cfg, math_correct=verdicts.get(i)) for i, r in enumerate(records)]
