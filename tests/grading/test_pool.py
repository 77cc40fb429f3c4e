"""The time-bounded pool: pathological answers time out, the run goes on, workers are replaced."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from thor_cli.grading import GradeConfig, GradePool, Grader


@pytest.fixture(scope="module")
def pool() -> Iterator[GradePool]:
    with GradePool(workers=2, timeout=1.5) as p:
        yield p


def test_pathological_answer_times_out_and_the_rest_is_graded(pool: GradePool) -> None:
    pairs = [("9^{9^{9^{9^{9}}}}", "1"), ("x^2", "x\\cdot x"), ("(10^{10^{10}})!", "5"), ("2", "2"),
             ("\\sqrt{8}", "2\\sqrt2")]
    before = pool.killed
    out = pool.check(pairs)
    assert [v[1] for v in out] == ["timeout", "math_verify", "timeout", "exact", "exact_sympy"]
    assert [v[0] for v in out] == [False, True, False, True, True]
    assert "1.5s" in (out[0][2] or "")
    assert pool.killed == before + 2
    # the replacements work
    assert pool.check([("x+1", "1+x")]) == [(True, "math_verify", None)]


def test_many_pairs_keep_their_order(pool: GradePool) -> None:
    pairs = [(f"{i}+x", f"x+{i}") if i % 2 else (f"{i}+x", f"x+{i + 1}") for i in range(40)]
    out = pool.check(pairs)
    assert [v[0] for v in out] == [bool(i % 2) for i in range(40)]


def test_grader_records() -> None:
    recs = [{"answer": "1000", "response": "so \\boxed{1,000}"},
            {"answer": "5"},
            {"pred": "3"},
            {"answer": "\\frac12", "trajectory": {"turns": [], "final_answer": "0.5"}},
            {"final_answer": "7", "pred": "7.0"}]
    with Grader(GradeConfig(workers=1)) as g:
        grades = g.grade(recs)
    assert [x.correct for x in grades] == [True, False, False, True, True]
    assert [x.method for x in grades] == ["exact", "no_answer", "no_gold", "numeric", "numeric"]
    assert grades[0].pred == "1,000" and grades[0].gold == "1000"


def test_a_worker_that_died_while_idle_is_replaced() -> None:
    # Sending to a dead idle worker raised BrokenPipeError out of check() (a silent exit 1 at the CLI).
    with GradePool(workers=1, timeout=10) as p:
        assert p.check([("x+1", "1+x")]) == [(True, "math_verify", None)]
        for w in p._workers:
            w.proc.kill()
            w.proc.wait(5)
        assert p.check([("x^2", "x\\cdot x"), ("2x", "x+x+1")]) == [(True, "math_verify", None),
                                                                  (False, "math_verify", None)]
        assert p.killed == 1
