"""Equivalence: the fast paths decide what they can and never contradict math-verify's truths."""

from __future__ import annotations

import pytest

from thor_cli.grading.equiv import equivalent
from thor_cli.grading.normalize import fast_equal

SAME = [
    ("1,000", "1000"), ("1{,}000", "1000"), ("\\$18", "18"), ("18 dollars", "18"),
    ("50\\%", "50"), ("50", "50\\%"), ("30^\\circ", "30"), ("30^{\\circ}", "30"), ("30°", "30"),
    ("10\\text{ inches}", "10"), ("10 \\mbox{cm}", "10"), ("x = 5", "5"), ("27", "27.0"),
    ("\\dfrac{1}{2}", "\\frac12"), ("0.5", "\\frac{1}{2}"), ("1/2", "0.5"), ("-\\frac{3}{4}", "-0.75"),
    ("0.3333333333333333", "\\frac{1}{3}"),
    ("C", "\\text{(C)}"), ("(B) 17", "B"), ("\\textbf{(A)}", "A"),
    ("\\text{Evelyn}", "Evelyn"), ("the odd", "\\text{odd}"), ("Devon", "devon"),
    ("(1, 2)", "(1,2)"), ("[1,2)", "[1, 2)"), ("\\{1,2\\}", "\\{2,1\\}"), ("3, 1, 2", "1,2,3"),
    ("\\begin{pmatrix}1 & 2\\\\ 3 & 4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
    ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("(x+1)^2", "x^2+2x+1"), ("\\sqrt{8}", "2\\sqrt{2}"),
    ("\\begin{pmatrix} 0.5 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} \\frac12 \\\\ 2 \\end{pmatrix}"),
]
DIFFERENT = [
    ("1001", "1000"), ("0.33", "\\frac13"), ("B", "C"), ("(B)", "\\text{(C)}"), ("Eve", "Evelyn"),
    ("[1,2]", "[1,2)"), ("(1,2)", "(2,1)"), ("\\{1,3\\}", "\\{1,2\\}"), ("x^2+1", "(x+1)^2"),
    ("\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
    ("\\text{(C)}+1", "\\text{(C)}"), ("5", "x"),
]


@pytest.mark.parametrize("pred,gold", SAME)
def test_equivalent(pred: str, gold: str) -> None:
    ok, method = equivalent(pred, gold)
    assert ok, method


@pytest.mark.parametrize("pred,gold", DIFFERENT)
def test_not_equivalent(pred: str, gold: str) -> None:
    ok, method = equivalent(pred, gold)
    assert not ok, method


@pytest.mark.parametrize("pred,gold,method", [
    ("2", "2", "exact"), ("2.0", "2", "numeric"), ("3", "2", "numeric"), ("A", "B", "choice"),
    ("Paris", "\\text{Paris}", "exact"), ("London", "Paris", "string"),
])
def test_fast_path_decides_without_math_verify(pred: str, gold: str, method: str) -> None:
    verdict = fast_equal(pred, gold)
    assert verdict is not None and verdict[1] == method


def test_fast_path_defers_when_unsure() -> None:
    assert fast_equal("x^2+2x+1", "(x+1)^2") is None
    assert fast_equal("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}") is None


def test_a_record_that_asks_for_a_number_does_not_accept_the_expression_restated() -> None:
    from thor_cli.grading import GradeConfig, Grader

    recs = [{"answer": "23472852", "pred": "5406 * 4342", "answer_form": "number"},
            {"answer": "23472852", "pred": "23,472,852", "answer_form": "number"},
            {"answer": "23472852", "pred": "5406 * 4342"}]
    with Grader(GradeConfig(workers=1)) as g:
        grades = g.grade(recs)
    assert [x.correct for x in grades] == [False, True, True]
    assert grades[0].method == "not_a_number"
