"""The synthetic arithmetic problems: exact, deterministic, disjoint splits, gradable."""

from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction

import pytest

from thor_cli.data.arith import SPLITS, WORD_BASIC, WORD_HARD, generate, home_split
from thor_cli.data.arith_expr import canonical, evaluate, exact_str, node, num, render
from thor_cli.errors import UsageError


def recs(split: str, n: int, seed: int = 0, form: str = "mixed") -> list[dict]:
    return list(generate(split, n, seed, form))


def test_same_seed_same_problems_other_seed_others() -> None:
    assert recs("train", 300, 7) == recs("train", 300, 7)
    a, b = recs("test", 100, 0), recs("test", 100, 1)
    assert len({r["question"] for r in a} & {r["question"] for r in b}) < 5
    assert [r["id"] for r in a[:2]] == ["arith-test/0/0", "arith-test/0/1"]


def test_splits_never_share_a_problem_whatever_the_seeds() -> None:
    by_split = {s: recs(s, 1500 if s == "train" else 400, seed) for s in SPLITS for seed in (0,)}
    by_split["test"] += recs("test", 400, 1)  # another seed of test against train seed 0
    keys = {}
    for split, rows in by_split.items():
        qs = [r["question"] for r in rows if r["meta"]["seed"] == 0]
        assert len(qs) == len(set(qs)), f"{split} repeats a question"
        keys[split] = {r["meta"]["expression"] for r in rows}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["hard"] and not keys["test"] & keys["hard"]
    # train-hard shares train's expressions, never an evaluation split's
    assert not keys["train-hard"] & keys["test"] and not keys["train-hard"] & keys["hard"]
    questions = {s: {r["question"] for r in rows} for s, rows in by_split.items()}
    assert not questions["train"] & questions["test"] and not questions["test"] & questions["hard"]


def test_commuted_operands_are_one_problem_in_one_split() -> None:
    ab, ba = node("*", num(4821), num(739)), node("*", num(739), num(4821))
    abc, cab = node("+", node("+", num(1), num(2)), num(3)), node("+", num(3), node("+", num(2), num(1)))
    assert canonical(ab) == canonical(ba) and home_split(ab) == home_split(ba)
    assert canonical(abc) == canonical(cab)
    assert canonical(node("-", num(5), num(3))) != canonical(node("-", num(3), num(5)))


@pytest.mark.parametrize("split", SPLITS)
def test_meta_expression_computes_the_answer_in_plain_python(split: str) -> None:
    for r in recs(split, 400):
        value = eval(r["meta"]["expression"], {"__builtins__": {}})  # Python's own ints and floats
        assert isinstance(value, int | float)
        assert (str(value) if isinstance(value, int) else repr(value)) == r["answer"], r


def _exact(expr_text: str) -> Fraction:
    """A plain question's expression, evaluated exactly (every literal a Fraction)."""
    py = expr_text.replace("×", "*").replace("÷", "/").replace("^", "**")
    py = re.sub(r"(\d+)% of", r"\1/100 *", py)
    py = re.sub(r"\d+", lambda m: f"F({m.group()})", py)
    return eval(py, {"F": Fraction, "__builtins__": {}})


@pytest.mark.parametrize("split", SPLITS)
def test_plain_questions_say_what_the_answer_is(split: str) -> None:
    checked = 0
    for r in recs(split, 400, form="plain"):
        q = r["question"]
        m = re.fullmatch(r"(?:Compute|What is|Calculate|Evaluate) (.+?)(?: exactly, as a decimal)?[.?]", q)
        rem = re.fullmatch(r"What is the remainder when (.+) is divided by (\d+)\?", q)
        flo = re.fullmatch(r"What is (.+) divided by (\d+), rounded down to a whole number\?", q)
        if rem:
            want = _exact(rem.group(1)) % int(rem.group(2))
        elif flo:
            want = _exact(flo.group(1)) // int(flo.group(2))
        else:
            assert m, q
            want = _exact(m.group(1))
        assert Fraction(r["answer"]) == want, (q, r["answer"])
        checked += 1
    assert checked == 400


def test_difficulty_of_the_splits() -> None:
    easy = recs("train", 500)
    hard = recs("hard", 500)
    assert {r["meta"]["ops"] for r in easy} == {1, 2}
    assert {r["meta"]["ops"] for r in hard} <= {2, 3, 4} and Counter(r["meta"]["ops"] for r in hard)[4] > 20
    assert all(r["meta"]["difficulty"] == "hard" for r in hard)
    train_hard = recs("train-hard", 300)  # RL prompts: drawn like hard
    assert Counter(r["meta"]["ops"] for r in train_hard)[4] > 10 and min(r["meta"]["ops"] for r in train_hard) >= 2
    for r in easy + hard:  # nothing to do in one's head: an operand of 3+ digits, a power, or a 4+ digit answer
        q = r["question"]
        assert max(len(d) for d in re.findall(r"\d+", q)) >= 3 or "^" in q or len(r["answer"]) >= 4, q
    assert sum(r["meta"]["form"] == "word" for r in hard) > 150 and sum(r["meta"]["form"] == "plain" for r in hard) > 150
    assert {r["meta"]["kind"] for r in recs("train", 800, form="word")} == set(WORD_BASIC)
    assert {r["meta"]["kind"] for r in recs("hard", 400, form="word")} == set(WORD_HARD)


def test_records_look_like_the_shipped_benchmarks() -> None:
    r = recs("test", 1)[0]
    assert set(r) == {"id", "question", "answer", "source", "task", "answer_form", "meta"}
    assert r["answer_form"] == "number"  # graded as a value: the expression restated is not an answer
    assert r["source"] == "arith-test" and r["task"] == "math" and isinstance(r["answer"], str)
    assert {"expression", "ops", "difficulty", "kind", "form", "seed"} <= set(r["meta"])


def test_decimal_answers_are_exact_strings() -> None:
    assert exact_str(Fraction(4821, 16)) == "301.3125" and exact_str(Fraction(7, 40)) == "0.175"
    assert exact_str(Fraction(-3, 8)) == "-0.375" and exact_str(Fraction(2, 3)) == "2/3"
    decimals = [r for r in recs("train", 2000) if "." in r["answer"]]
    assert decimals, "the train split should have some decimal quotients"
    for r in decimals:
        assert Fraction(r["answer"]) == evaluate(node("fdiv", *(num(int(x)) for x in
                                                               r["meta"]["expression"].split(" / "))))


def test_python_rendering_keeps_the_grouping() -> None:
    tiles = node("*", node("/", num(520), num(40)), node("/", num(3600), num(40)))
    assert render(tiles) == "520 // 40 * (3600 // 40)"
    assert render(node("-", num(9), node("-", num(5), num(3)))) == "9 - (5 - 3)"
    assert render(node("pct", num(15), node("+", num(30), num(10)))) == "(30 + 10) * 15 // 100"


def test_gold_answers_grade_as_correct_and_near_misses_as_wrong() -> None:
    from thor_cli.grading import GradeConfig, Grader

    rows = recs("train", 15) + recs("test", 15) + recs("hard", 15)
    batch = []
    for r in rows:
        batch.append({"answer": r["answer"], "pred": r["answer"]})
        batch.append({"answer": r["answer"], "response": f"so the answer is \\boxed{{{r['answer']}}}"})
        if "." not in r["answer"]:
            batch.append({"answer": r["answer"], "pred": f"{int(r['answer']):,}"})
        # off by one, big ones too: exact answers are compared exactly (see the test below)
        batch.append({"answer": r["answer"], "pred": str(Fraction(r["answer"]) + 1), "wrong": True})
    with Grader(GradeConfig(workers=1)) as g:
        grades = g.grade(batch)
    assert all(gr.correct != bool(b.get("wrong")) for b, gr in zip(batch, grades, strict=True))


def test_grader_tells_apart_big_integers_that_differ_by_one() -> None:
    from thor_cli.grading import fast_equal

    assert fast_equal("2305391059", "2305391058") == (False, "numeric")


def test_bad_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown split"):
        next(generate("dev", 1))
    with pytest.raises(UsageError, match="unknown form"):
        next(generate("train", 1, form="latex"))


def test_worked_solutions_run_the_problems_own_expression_and_print_the_gold_answer() -> None:
    from thor_cli.data.arith import generate, worked_solution

    for split in ("train", "hard"):
        for rec in generate(split, 150, seed=3):
            msgs = worked_solution(rec)
            assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
            assert msgs[2]["content"] == rec["answer"]  # what the cell prints is the exact gold answer
            assert msgs[3]["content"] == f"The answer is \\boxed{{{rec['answer']}}}."
