"""The labelled hard set (hard_pairs.jsonl): thor's grader agrees with >= 97% of the labels, and
precision (no reward for a wrong answer) is measured apart from recall.

Each line: {"class", "pred", "gold", "label"}; label true when pred is a correct answer for gold.
The set holds the classes the grader once missed (repeating decimals, trig in degrees, complex
numbers, Unicode, empty sets, unions, labelled tuples), exact huge/tiny values that floats would
merge, pathological input, the usual answer forms, and near-miss negatives of each.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from thor_cli.grading import GradeConfig, Grader

HARD = Path(__file__).with_name("hard_pairs.jsonl")


def _rows() -> list[dict]:
    return [json.loads(line) for line in HARD.read_text().splitlines() if line.strip()]


def test_hard_set_is_large_labelled_and_has_near_misses() -> None:
    rows = _rows()
    assert len(rows) >= 300
    assert all(set(r) == {"class", "pred", "gold", "label"} and isinstance(r["label"], bool) for r in rows)
    negatives = sum(not r["label"] for r in rows)
    assert negatives >= 0.35 * len(rows)  # enough negatives that precision means something
    per_class = Counter((r["class"], r["label"]) for r in rows)
    for cls in {r["class"] for r in rows} - {"text", "choice"}:
        assert per_class[(cls, True)] and per_class[(cls, False)], cls


@pytest.fixture(scope="module")
def graded() -> list[tuple[dict, bool, str]]:
    rows = _rows()
    with Grader(GradeConfig(workers=2, timeout=10)) as g:
        grades = g.grade_math([{"pred": r["pred"], "answer": r["gold"]} for r in rows])
    return [(r, gr.correct, gr.method) for r, gr in zip(rows, grades, strict=True)]


def test_agreement_precision_recall(graded: list[tuple[dict, bool, str]]) -> None:
    tp = sum(ok and r["label"] for r, ok, _ in graded)
    said = sum(ok for _, ok, _ in graded)
    agree = sum(ok == r["label"] for r, ok, _ in graded) / len(graded)
    precision = tp / said
    recall = tp / sum(r["label"] for r, _, _ in graded)
    wrong = [(r["class"], r["pred"][:40], r["gold"][:40], r["label"], m) for r, ok, m in graded if ok != r["label"]]
    summary = f"agreement {agree:.1%}, precision {precision:.1%}, recall {recall:.1%}; wrong: {wrong[:10]}"
    assert agree >= 0.97, summary
    assert precision >= 0.99, summary  # a false positive is a reward for a wrong answer
    assert recall >= 0.95, summary


def test_pathological_simple_answers_do_not_time_out(graded: list[tuple[dict, bool, str]]) -> None:
    timed_out = [r["pred"][:40] for r, _, m in graded if r["class"] == "pathological" and m == "timeout"]
    assert not timed_out
