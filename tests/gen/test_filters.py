"""`thor gen filter`: each filter keeping and rejecting at its exact boundary (both protocols where
they differ), the funnel, the deterministic single-call draw, --cot-eval, --rejected, malformed
input, and the command end to end."""

from __future__ import annotations

import doctest
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from thor_cli.errors import InputError, UsageError
from thor_cli.gen import filter_checks, filters
from thor_cli.gen.filter_checks import dollar_delimiters, foreign_letters, read_cell, repeated_ngram
from thor_cli.gen.filter_run import FilterPipeline, load_cot_solved
from thor_cli.gen.filters import FILTERS, FilterConfig, FilterContext
from thor_cli.records.jsonl import InputRecord

THOR = str(Path(sys.executable).with_name("thor"))


def run_thor(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command under test: `thor gen filter`."""
    return subprocess.run([THOR, "gen", "filter", *args], input=stdin, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


# ---- building records ----------------------------------------------------------------------------

LONG = "import math\nvals = []\nfor k in range(1, 4):\n    vals.append(math.factorial(k))\ntotal = sum(vals)\nprint(total)"
PROSE = "We want the sum of the first three factorials, so we compute each one and add them up carefully. "


def cell(code: str = LONG, stdout: str = "9\n", status: str = "ok", proto: str = "thor",
         error: str | None = None, tool: str = "python") -> list[dict[str, Any]]:
    """A code turn and its output turn, written the way the rollout engine writes them."""
    ex = {"status": status, "stdout": stdout, "stderr": "", "error": error, "duration_ms": 1.0, "truncated": False}
    if proto == "thor":
        return [{"kind": "code", "text": f"```python\n{code}\n```\n```output", "tool": tool},
                {"kind": "output", "text": f"\n{stdout}```\n", "tool": tool, "exec": ex}]
    tag = "code" if tool == "python" else "search"
    return [{"kind": "code", "text": f"<{tag}>\n{code}\n</{tag}>", "tool": tool},
            {"kind": "output", "text": f"\n<response>\n{stdout}</response>\n", "tool": tool, "exec": ex}]


def final(proto: str = "thor", answer: str = "9") -> dict[str, Any]:
    text = f"So the answer is \\boxed{{{answer}}}." if proto == "thor" else f"<answer>{answer}</answer>"
    return {"kind": "text", "text": text}


def record(turns: list[dict[str, Any]] | None = None, *, proto: str = "thor", rid: str = "p1",
           correct: bool | None = True, **extra: Any) -> dict[str, Any]:
    """A record that passes every filter unless the test changes it: two long cells that import a
    library and loop, enough prose, a final answer."""
    if turns is None:
        turns = [{"kind": "text", "text": PROSE * 2}, *cell(proto=proto), {"kind": "text", "text": "Check: "},
                 *cell(proto=proto), final(proto)]
    traj = {"v": 1, "protocol": proto, "turns": turns, "retries": [], "final_answer": "9", "stop_reason": "answer",
            "n_tool_calls": sum(t["kind"] == "output" for t in turns), "n_corrections": 0}
    rec: dict[str, Any] = {"id": rid, "question": "1!+2!+3!?", "answer": "9", "trajectory": traj, **extra}
    if correct is not None:
        rec["grade"] = {"correct": correct, "pred": "9", "gold": "9", "method": "exact"}
    return rec


def run(recs: list[dict[str, Any]], cfg: FilterConfig | None = None, ctx: FilterContext | None = None,
        **kw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], FilterPipeline]:
    """(kept, rejected, pipeline) for records fed as if read from x.jsonl."""
    rejected: list[dict[str, Any]] = []
    pipe = FilterPipeline(cfg or FilterConfig(), ctx, on_reject=rejected.append, **kw)
    kept = [r for r, _ in pipe.run(InputRecord(r, "x.jsonl", i) for i, r in enumerate(recs, 1))]
    return kept, rejected, pipe


def rejected_by(rec: dict[str, Any], cfg: FilterConfig | None = None) -> str | None:
    kept, rejected, _ = run([rec], cfg)
    return None if kept else rejected[0]["filter"]["rejected_by"]


@pytest.mark.parametrize("proto", ["thor", "tapo"])
def test_a_good_record_passes_every_filter(proto: str) -> None:
    kept, rejected, pipe = run([record(proto=proto)])
    assert rejected == [] and len(kept) == 1
    assert kept[0]["filter"] == {"passed": [n for n in FILTERS if n != "cot_solved"]}
    assert all(r["removed"] == 0 and r["out"] == 1 for r in pipe.funnel.rows())


def test_doctests() -> None:
    for mod in (filter_checks, filters):
        res = doctest.testmod(mod)
        assert res.attempted > 0 and res.failed == 0


# ---- 1. correct ----------------------------------------------------------------------------------

def test_correct_rejects_wrong_and_can_be_turned_off() -> None:
    wrong = record(correct=False)
    assert rejected_by(wrong) == "correct"
    assert rejected_by(wrong, FilterConfig(correct=False)) is None


def test_ungraded_records_are_graded() -> None:
    from thor_cli.grading import GradeConfig, Grader

    right, wrong = record(correct=None, rid="a"), record(correct=None, rid="b", answer="10")
    with pytest.raises(UsageError, match="no grade"):
        run([right])
    with Grader(GradeConfig(workers=1)) as g:
        kept, rejected, _ = run([right, wrong], grade=lambda recs: [x.to_dict() for x in g.grade(recs)])
    assert [r["id"] for r in kept] == ["a"] and kept[0]["grade"]["correct"] is True
    assert rejected[0]["filter"]["rejected_by"] == "correct" and rejected[0]["grade"]["gold"] == "10"


# ---- 2. executed ---------------------------------------------------------------------------------

@pytest.mark.parametrize("proto", ["thor", "tapo"])
@pytest.mark.parametrize(("status", "stdout", "reason"), [
    ("error", "", "error"), ("timeout", "", "timeout"), ("memory", "", "memory"), ("ok", "", "no_output"),
    ("ok", "  \n", "no_output")])
def test_executed_rejects_failed_cells(proto: str, status: str, stdout: str, reason: str) -> None:
    turns = [{"kind": "text", "text": PROSE * 2}, *cell(proto=proto), *cell(proto=proto, status=status, stdout=stdout),
             final(proto)]
    kept, rejected, _ = run([record(turns, proto=proto)])
    assert kept == []
    assert rejected[0]["filter"]["rejected_by"] == "executed" and rejected[0]["filter"]["reason"] == reason
    assert rejected[0]["filter"]["detail"].startswith("cell 2 of 2")


def test_executed_silent_cells_tunable_and_unrun_cells() -> None:
    silent = [{"kind": "text", "text": PROSE * 2}, *cell(), *cell(stdout=""), final()]
    assert rejected_by(record(silent), FilterConfig(silent_cells_fail=False)) is None
    errored = [{"kind": "text", "text": PROSE * 2}, *cell(), *cell(status="error", stdout="")]
    assert rejected_by(record(errored + [final()]), FilterConfig(silent_cells_fail=False)) == "executed"
    unrun = [{"kind": "text", "text": PROSE * 2}, *cell(), cell()[0]]  # stopped at its tool budget
    _, rejected, _ = run([record(unrun)])
    assert rejected[0]["filter"]["reason"] == "not_run"


def test_executed_retries_count_only_when_asked() -> None:
    rec = record()
    rec["trajectory"]["retries"] = [{"at_turn": 1, "dropped_text": "```python\n1/0\n```", "dropped_ids": [],
                                     "reason": "error", "exec": {"status": "error"}}]
    assert rejected_by(rec) is None
    assert rejected_by(rec, FilterConfig(count_retries=True)) == "executed"


def test_a_search_call_needs_no_print() -> None:
    turns = [{"kind": "text", "text": PROSE * 2}, *cell(proto="tapo", tool="search", code="capital of France",
                                                       stdout=""), *cell(proto="tapo"), *cell(proto="tapo"),
             final("tapo")]
    assert rejected_by(record(turns, proto="tapo")) is None


# ---- 3. boxed ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("last_text", "reason"), [
    ("So the answer is \\boxed{9}.", None), ("The answer is 9.", "no_answer"), ("\\boxed{ }", "empty_answer"),
    ("<answer>9</answer>", "no_answer")])
def test_boxed_thor(last_text: str, reason: str | None) -> None:
    rec = record([{"kind": "text", "text": PROSE * 2}, *cell(), *cell(), {"kind": "text", "text": last_text}])
    _, rejected, _ = run([rec])
    assert (rejected[0]["filter"]["reason"] if rejected else None) == reason
    assert not rejected or rejected[0]["filter"]["rejected_by"] == "boxed"


@pytest.mark.parametrize(("last_text", "reason"), [
    ("<answer>9</answer>", None), ("<answer>the value is \\boxed{9}</answer>", None),
    ("So the answer is \\boxed{9}.", "no_answer"), ("<answer> </answer>", "empty_answer"),
    ("<answer>\\boxed{}</answer>", "empty_answer"), ("<answer>9", "no_answer")])
def test_boxed_tapo(last_text: str, reason: str | None) -> None:
    rec = record([{"kind": "text", "text": PROSE * 2}, *cell(proto="tapo"), *cell(proto="tapo"),
                  {"kind": "text", "text": last_text}], proto="tapo")
    _, rejected, _ = run([rec])
    assert (rejected[0]["filter"]["reason"] if rejected else None) == reason


def test_boxed_must_come_after_the_last_tool_output() -> None:
    rec = record([{"kind": "text", "text": PROSE * 2 + "Guess \\boxed{9}."}, *cell(), *cell(),
                  {"kind": "text", "text": "Done."}])
    assert rejected_by(rec) == "boxed"


# ---- 4. length -----------------------------------------------------------------------------------

def filler(n: int, letters: str = "abcdefghijklmnopqrstuvwxyz", seed: int = 0) -> str:
    """``n`` random letters: no n-gram repeats, so the repetition filter stays out of the way."""
    rng = random.Random(seed)
    return "".join(rng.choice(letters) for _ in range(n))


def _with_chars(n: int) -> dict[str, Any]:
    rec = record()
    size = sum(len(t["text"]) for t in rec["trajectory"]["turns"])
    rec["trajectory"]["turns"][0]["text"] += filler(n - size)
    return rec


def test_length_in_chars_without_ids() -> None:
    cfg = FilterConfig(min_chars=1000, max_chars=1200, lib_or_flow=True)
    assert rejected_by(_with_chars(999), cfg) == "length"
    assert rejected_by(_with_chars(1000), cfg) is None
    assert rejected_by(_with_chars(1200), cfg) is None
    assert rejected_by(_with_chars(1201), cfg) == "length"
    assert rejected_by(_with_chars(5000), FilterConfig(min_chars=1000)) is None  # max 0: no bound


def test_length_in_tokens_when_ids_are_there() -> None:
    cfg = FilterConfig(min_tokens=50, max_tokens=60)
    for n, verdict in ((49, "length"), (50, None), (60, None), (61, "length")):
        assert rejected_by(_with_chars(100) | {"completion_ids": list(range(n))}, cfg) == verdict
    per_turn = record()  # --drop-ids absent but no top-level list: the turns' ids count
    for t in per_turn["trajectory"]["turns"]:
        t["ids"] = [1] * 10
    assert rejected_by(per_turn, FilterConfig(min_tokens=71)) == "length"
    assert rejected_by(per_turn, FilterConfig(min_tokens=70)) is None


# ---- 5. code quality -----------------------------------------------------------------------------

SHORT = "import math\nx = math.factorial(5)\ny = x + 1\nz = y * 2\nprint(z)"  # 5 code lines
LONG6 = SHORT + "\nprint(z + 1)"  # 6


def _cells_record(codes: list[str], proto: str = "thor") -> dict[str, Any]:
    turns: list[dict[str, Any]] = [{"kind": "text", "text": PROSE * 3}]
    for c in codes:
        turns += cell(c, proto=proto)
    return record(turns + [final(proto)], proto=proto)


def test_cell_lines_skip_comments_and_blanks() -> None:
    padded = "# a comment\n\n" + SHORT.replace("\n", "\n   # note\n\n") + "\n# end"
    assert read_cell(padded).lines == 5 and read_cell(LONG6).lines == 6


@pytest.mark.parametrize("proto", ["thor", "tapo"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_short_cells_ceil_rule(proto: str, n: int) -> None:
    allowed = {1: 1, 2: 1, 3: 2, 4: 2, 5: 2}[n]  # ceil(0.4 n)
    for short in range(n + 1):
        rec = _cells_record([SHORT] * short + [LONG6] * (n - short), proto)
        want = "code_quality" if short > allowed else None
        assert rejected_by(rec, FilterConfig(single_call=False)) == want, (n, short)


def test_short_cell_threshold_and_fraction_are_tunable() -> None:
    two_short = _cells_record([SHORT, SHORT])
    assert rejected_by(two_short) == "code_quality"
    assert rejected_by(two_short, FilterConfig(short_cell_lines=4)) is None
    assert rejected_by(two_short, FilterConfig(max_short_fraction=1.0)) is None
    assert rejected_by(_cells_record([LONG6, LONG6]), FilterConfig(short_cell_lines=6)) == "code_quality"


def test_a_cell_that_does_not_parse_is_short() -> None:
    broken = LONG6 + "\nprint((("
    assert rejected_by(_cells_record([LONG6, broken])) is None  # 1 of 2 may be short
    assert rejected_by(_cells_record([broken, broken])) == "code_quality"


ARITH = "a = 3\nb = 4\nc = a * b\nd = c + a\ne = d - b\nprint(e)"  # 6 lines, no library, no flow


@pytest.mark.parametrize(("codes", "ok"), [
    ([ARITH, ARITH], False),
    ([ARITH, "import math\n" + ARITH], True),
    ([ARITH, ARITH.replace("print(e)", "print(math.sqrt(e))")], False),  # math never imported: not a library call
    (["from sympy import Rational\n" + ARITH, ARITH.replace("print(e)", "print(Rational(e, 2))")], True),
    ([ARITH, ARITH.replace("print(e)", "for i in range(2):\n    print(e + i)")], True),
    ([ARITH, ARITH.replace("print(e)", "print(sum([i for i in range(e)]))")], True),
    ([ARITH, ARITH.replace("print(e)", "if e > 2:\n    print(e)")], True),
    ([ARITH, ARITH.replace("print(e)", "while e > 2:\n    e -= 1\nprint(e)")], True),
    ([ARITH, ARITH.replace("print(e)", "xs = [e]\nxs.append(1)\nprint(xs)")], False),  # a method, not a library
    ([ARITH, "# for i in range(3): import numpy\n" + ARITH], False),  # a comment is not code
])
def test_library_or_control_flow(codes: list[str], ok: bool) -> None:
    for proto in ("thor", "tapo"):
        got = rejected_by(_cells_record(codes, proto))
        assert got == (None if ok else "code_quality"), (codes, proto)
    assert rejected_by(_cells_record([ARITH, ARITH]), FilterConfig(lib_or_flow=False)) is None


def test_library_use_across_cells() -> None:
    lib = filter_checks.library_or_flow
    nested_import = "def f():\n    import numpy as np\n    return 1"
    assert lib([read_cell(nested_import), read_cell("v = np.arange(3)")])  # an import anywhere counts
    assert lib([read_cell("def f():\n    return np.arange(3)"), read_cell(nested_import)])
    assert not lib([read_cell("v = np.arange(3)")])  # np never imported
    assert lib([read_cell("def f(n):\n    return [i for i in range(n)]")])  # a nested comprehension
    assert not lib([read_cell("import numpy as np\nfor i in range(3):\n  print(i")])  # does not parse


def test_no_cells_is_rejected() -> None:
    rec = record([{"kind": "text", "text": PROSE * 3}, final()])
    _, rejected, _ = run([rec])
    assert rejected[0]["filter"]["rejected_by"] == "code_quality" and rejected[0]["filter"]["reason"] == "no_cells"


# ---- 6. repetition -------------------------------------------------------------------------------

GRAM = "ABCDEFGHIJKLMNOPQRST"  # 20 characters


def _repeated(k: int) -> str:
    return "".join(GRAM + chr(0x100 + i) for i in range(k))  # a distinct separator: only GRAM repeats


@pytest.mark.parametrize(("k", "verdict"), [(20, None), (21, "repetition")])
def test_repetition_boundary(k: int, verdict: str | None) -> None:
    rec = record()
    rec["trajectory"]["turns"][0]["text"] += _repeated(k)
    assert rejected_by(rec) == verdict
    assert repeated_ngram(_repeated(k)) == (None if k == 20 else (GRAM, 21))


def test_repetition_counts_model_text_only_and_is_tunable() -> None:
    rec = record()
    rec["trajectory"]["turns"][2]["text"] = "\n" + _repeated(40) + "```\n"  # in a tool output
    assert rejected_by(rec) is None
    rec = record()
    rec["trajectory"]["turns"][0]["text"] += _repeated(25)
    assert rejected_by(rec) == "repetition"
    assert rejected_by(rec, FilterConfig(max_repeats=25)) is None
    assert rejected_by(rec, FilterConfig(max_repeats=24)) == "repetition"
    assert rejected_by(rec, FilterConfig(ngram=21)) is None  # every 21-gram holds a distinct separator
    assert rejected_by(rec, FilterConfig(repetition=False)) is None


def test_repeated_ngram_matches_a_plain_counter() -> None:
    rng = random.Random(7)
    for _ in range(300):
        n, k = rng.randint(1, 6), rng.randint(1, 8)
        text = "".join(rng.choice("abé中") for _ in range(rng.randint(0, 80)))
        grams = Counter(text[i:i + n] for i in range(len(text) - n + 1))
        over = {g: c for g, c in grams.items() if c > k}
        got = repeated_ngram(text, n, k)
        if not over:
            assert got is None
        else:
            assert got is not None and got[1] == max(over.values()) and over[got[0]] == got[1]


# ---- 7. dollars ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "ok"), [
    ("so $x = 9$ holds", True), ("so $x = 9 holds", False), ("costs \\$9 and $y$", True),
    ("$$x = 9$$", True), ("$$x = 9$", False), ("$$x$$ and $y", False), ("$a$ $b$ $c$", True),
    ("$$a$$ $$b", False), ("no math", True)])
def test_dollars(text: str, ok: bool) -> None:
    rec = record()
    rec["trajectory"]["turns"][0]["text"] += text
    assert rejected_by(rec) == (None if ok else "dollars")
    assert rejected_by(rec, FilterConfig(dollars=False)) is None


def test_dollars_in_code_and_output_do_not_count() -> None:
    code = LONG + '\nprint(f"${total}")'
    rec = _cells_record([code, LONG])
    rec["trajectory"]["turns"][2]["text"] = "\n$9\n```\n"
    assert rejected_by(rec) is None
    assert dollar_delimiters("\\\\$x$") == (2, 0)  # an escaped backslash does not escape the $


# ---- 8. language ---------------------------------------------------------------------------------

def _letters(latin: int, other: str, n_other: int) -> dict[str, Any]:
    rec = record()
    base = sum(c.isalpha() for t in rec["trajectory"]["turns"] if t["kind"] != "output" for c in t["text"])
    rec["trajectory"]["turns"][0]["text"] += " " + filler(latin - base - n_other) + " " + filler(n_other, other)
    return rec


@pytest.mark.parametrize("other", ["жзиклмноп", "中文数学问题答案计算", "あいうえおかきくけこ", "한국어수학문제"])
def test_language_boundary(other: str) -> None:
    assert rejected_by(_letters(1000, other, 50)) is None  # exactly 5%
    assert rejected_by(_letters(1000, other, 51)) == "language"
    assert rejected_by(_letters(1000, other, 51), FilterConfig(max_foreign=0.06)) is None
    assert rejected_by(_letters(1000, other, 51), FilterConfig(language=False)) is None


def test_language_greek_and_notation() -> None:
    greek, notation, cyrillic = "πθαβγδλμσω", "ℝℕℤℚℂℵ𝑥𝑦", "жзиклмноп"
    assert rejected_by(_letters(1000, greek, 200)) is None  # Greek is allowed by default
    assert rejected_by(_letters(1000, greek, 200), FilterConfig(scripts="latin")) == "language"
    assert rejected_by(_letters(1000, notation, 200), FilterConfig(scripts="latin")) is None
    assert rejected_by(_letters(1000, cyrillic, 200), FilterConfig(scripts="latin,cyrillic")) is None
    assert foreign_letters("abc", frozenset({"CJK"})) == (3, 3, "LATIN")
    with pytest.raises(UsageError, match="--scripts"):
        FilterConfig(scripts="latin,klingon").check()


# ---- 9. cot_solved -------------------------------------------------------------------------------

def test_cot_eval_drops_problems_plain_cot_solved(tmp_path: Path) -> None:
    cot = tmp_path / "cot.jsonl"
    rows = [{"id": "p1", "sample": 0, "grade": {"correct": False}}, {"id": "p1", "sample": 1, "grade": {"correct": True}},
            {"id": "p2", "sample": 0, "grade": {"correct": False}}, {"id": 7, "grade": {"correct": True}}]
    cot.write_text("".join(json.dumps(r) + "\n" for r in rows))
    solved = load_cot_solved(str(cot))
    assert solved == {"p1", "7"}
    kept, rejected, pipe = run([record(rid="p1"), record(rid="p2"), record(rid=7)], ctx=FilterContext(solved))  # type: ignore[arg-type]
    assert [r["id"] for r in kept] == ["p2"]
    assert {r["filter"]["rejected_by"] for r in rejected} == {"cot_solved"}
    assert pipe.funnel.stages["cot_solved"].removed == 2
    _, _, pipe = run([record()])
    assert not pipe.funnel.enabled("cot_solved")
    cot.write_text('{"id": "p1", "grade": {"correct": "yes"}}\n')
    with pytest.raises(InputError, match=r'cot.jsonl:1: field "grade.correct"'):
        load_cot_solved(str(cot))


# ---- 10. one per problem -------------------------------------------------------------------------

def test_one_per_problem_keeps_the_shortest_whatever_the_order() -> None:
    recs = [_with_chars(n) | {"id": pid, "sample": i} for i, (pid, n) in
            enumerate([("a", 900), ("a", 700), ("b", 800), ("a", 750), ("b", 800), ("c", 1000)])]
    results = []
    for seed in range(5):
        order = recs[:]
        random.Random(seed).shuffle(order)
        kept, rejected, pipe = run([json.loads(json.dumps(r)) for r in order])
        results.append(sorted((r["id"], r["sample"]) for r in kept))
        assert len(rejected) == 3 and {r["filter"]["rejected_by"] for r in rejected} == {"one_per_problem"}
        assert pipe.funnel.stages["one_per_problem"].removed == 3
    assert results[0][:1] == [("a", 1)] and results[0][2] == ("c", 5)
    assert all(r == results[0] for r in results)  # the tie in b goes the same way every time


def test_one_per_problem_tokens_and_question_fallback() -> None:
    long_ids = record(rid="q") | {"completion_ids": list(range(300))}
    short_ids = _with_chars(5000) | {"id": "q", "completion_ids": list(range(200))}
    kept, _, _ = run([long_ids, short_ids])
    assert len(kept) == 1 and len(kept[0]["completion_ids"]) == 200  # tokens decide, not characters
    a, b = _with_chars(400), _with_chars(300)
    for r in (a, b):
        del r["id"]
    kept, _, _ = run([a, b, _with_chars(300) | {"question": "other"}] )
    assert len(kept) == 2
    kept, _, _ = run([record(rid="x"), record(rid="x")], FilterConfig(one_per_problem=False))
    assert len(kept) == 2


# ---- 11. single call -----------------------------------------------------------------------------

def _single(i: int) -> dict[str, Any]:
    return record([{"kind": "text", "text": PROSE * 2 + f"Problem {i}. "}, *cell(), final()], rid=f"s{i}")


def test_single_call_down_sampling_is_deterministic() -> None:
    recs = [_single(i) for i in range(300)]
    kept_ids = []
    for seed in range(3):
        order = [json.loads(json.dumps(r)) for r in recs]
        random.Random(seed).shuffle(order)
        kept, rejected, pipe = run(order)
        kept_ids.append(sorted(r["id"] for r in kept))
        assert {r["filter"]["reason"] for r in rejected} == {"down_sampled"}
    assert kept_ids[0] == kept_ids[1] == kept_ids[2]
    assert 105 <= len(kept_ids[0]) <= 195  # p = 0.5 of 300 (6 sigma each side)
    other_seed, _, _ = run([json.loads(json.dumps(r)) for r in recs], FilterConfig(seed=1))
    assert sorted(r["id"] for r in other_seed) != kept_ids[0]
    assert len(run(recs, FilterConfig(single_call_keep=1.0))[0]) == 300
    assert len(run(recs, FilterConfig(single_call_keep=0.0))[0]) == 0
    assert len(run([record(rid=f"m{i}") for i in range(50)])[0]) == 50  # two cells: never dropped
    _, _, pipe = run(recs[:5], FilterConfig(single_call_keep=1.0))
    assert not pipe.funnel.enabled("single_call")


# ---- the funnel, --rejected, malformed ------------------------------------------------------------

def test_funnel_counts_chain() -> None:
    bad_exec = [{"kind": "text", "text": PROSE * 2}, *cell(), *cell(status="error"), final()]
    recs = [record(rid="a"), record(rid="a"), record(correct=False, rid="b"), record(bad_exec, rid="c"),
            _cells_record([ARITH, ARITH]) | {"id": "d"}, _single(1), record(rid="e")]
    kept, rejected, pipe = run(recs, FilterConfig(single_call_keep=0.0))
    rows = {r["filter"]: r for r in pipe.funnel.rows()}
    assert [r["filter"] for r in pipe.funnel.rows()] == ["malformed", *FILTERS]
    assert rows["malformed"]["in"] == 7
    assert rows["correct"]["removed"] == 1 and rows["executed"]["removed"] == 1
    assert rows["code_quality"]["removed"] == 1 and rows["code_quality"]["reasons"] == {"no_library_or_flow": 1}
    assert rows["one_per_problem"]["in"] == 4 and rows["one_per_problem"]["removed"] == 1
    assert rows["single_call"]["in"] == 3 and rows["single_call"]["removed"] == 1
    assert rows["single_call"]["out"] == len(kept) == 2 and len(rejected) == 5
    names = ["malformed", *FILTERS]
    for prev, nxt in zip(names, names[1:], strict=False):
        assert rows[prev]["out"] == rows[nxt]["in"]
    assert rows["correct"]["kept_pct"] == round(100 * 6 / 7, 2)


def test_malformed_records_name_file_line_and_field() -> None:
    cases = [({"id": "x"}, "trajectory"), (record() | {"trajectory": "text"}, "trajectory"),
             (record() | {"grade": {"correct": "yes"}}, "grade.correct"), (record() | {"id": [1]}, "id")]
    for bad, fld in cases:
        with pytest.raises(InputError, match=rf'x.jsonl:2: field "{fld}"'):
            run([record(), bad])
    bad_kind = record()
    bad_kind["trajectory"]["turns"][1]["kind"] = "tool"
    with pytest.raises(InputError, match=r'field "trajectory.turns\[1\].kind"'):
        run([bad_kind])
    kept, rejected, pipe = run([record(), {"id": "x"}, bad_kind], skip_malformed=True)
    assert len(kept) == 1 and pipe.funnel.stages["malformed"].removed == 2
    assert [r["filter"]["rejected_by"] for r in rejected] == ["malformed", "malformed"]
    assert 'x.jsonl:2: field "trajectory"' in rejected[0]["filter"]["detail"]


def test_bad_settings_are_usage_errors() -> None:
    for cfg in (FilterConfig(max_short_fraction=1.5), FilterConfig(ngram=0), FilterConfig(min_chars=-1)):
        with pytest.raises(UsageError):
            cfg.check()


# ---- the command end to end -----------------------------------------------------------------------

def _jsonl(recs: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in recs)


MIX = [record(rid="a"), record(rid="a"), record(correct=False, rid="b"), _single(1), record(rid="c", proto="tapo")]


def test_cli_stdin_to_stdout_with_funnel_table() -> None:
    res = run_thor("--single-call-keep", "1", stdin=_jsonl(MIX))
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["id"] for r in out] == ["a", "s1", "c"]
    assert all(r["filter"]["passed"] and r["keys"]["filter"] for r in out)
    assert "one_per_problem" in res.stderr and "% kept" in res.stderr
    quiet = subprocess.run([THOR, "-q", "gen", "filter"], input=_jsonl(MIX), capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "% kept" not in quiet.stderr


def test_cli_files_manifest_summary_rejected_config(tmp_path: Path) -> None:
    src, out, rej, summ = (tmp_path / n for n in ("in.jsonl", "out.jsonl", "rej.jsonl", "sum.json"))
    src.write_text(_jsonl(MIX))
    conf = tmp_path / "filter.yaml"
    conf.write_text("single-call-keep: 0.0\nmin_chars: 100\n")
    res = run_thor(str(src), "-o", str(out), "--rejected", str(rej), "--summary", str(summ), "--config", str(conf))
    assert res.returncode == 0, res.stderr
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in kept] == ["a", "c"]
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert manifest["stage"] == "filter" and manifest["config"]["single_call_keep"] == 0.0
    assert manifest["config"]["min_chars"] == 100
    rejected = [json.loads(x) for x in rej.read_text().splitlines()]
    assert sorted(r["filter"]["rejected_by"] for r in rejected) == ["correct", "one_per_problem", "single_call"]
    summary = json.loads(summ.read_text())
    assert summary["read"] == 5 and summary["kept"] == 2
    assert [r["filter"] for r in summary["funnel"]] == summary["order"] == ["malformed", *FILTERS]
    assert not list(tmp_path.glob("*.part"))


def test_cli_errors() -> None:
    res = run_thor(stdin=_jsonl([record(), {"id": "x", "trajectory": {"turns": "none"}}]))
    assert res.returncode == 1 and '<stdin>:2: field "trajectory.turns"' in res.stderr and res.stdout == ""
    res = run_thor("--max-foreign", "2", stdin=_jsonl([record()]))
    assert res.returncode == 2 and "--max-foreign" in res.stderr
    res = run_thor("--skip-malformed", stdin=_jsonl([record(), {"id": "x"}]))
    assert res.returncode == 0 and len(res.stdout.splitlines()) == 1


def test_cli_help() -> None:
    res = run_thor("--help")
    assert res.returncode == 0 and "reads every record before it" in " ".join(res.stdout.split())
