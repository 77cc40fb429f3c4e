"""The arithmetic critic: explicit arithmetic becomes THOR cells that print the exact value; nothing else moves."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from fractions import Fraction

import pytest

from thor_cli.gen import ArithmeticCritic, Critic, CriticResult, cells, rewrite_arithmetic
from thor_cli.gen.critics import box_stated_answer
from thor_cli.rollout.protocols import THOR

F = Fraction

# (step, the exact values its cells must print, in order). The values are Python's own arithmetic.
CASES: list[tuple[str, list[Fraction | int]]] = [
    ("4821 * 739 = 3562719", [4821 * 739]),
    ("So 4821 × 739 = 3562710 (roughly).", [4821 * 739]),  # a wrong claim: dropped, the cell says
    ("so 12% of 350 is 40", [F(12 * 350, 100)]),
    ("Next, 3562719 + 12 = 3562731.", [3562719 + 12]),
    ("4821 times 739 is 3562719", [4821 * 739]),
    ("We have 4,821 · 2 = 9,642 items.", [9642]),
    ("The sum 1,234,567 + 89 = 1,234,656.", [1234567 + 89]),
    ("(4821 + 12) × (739 − 39) = 3383100", [(4821 + 12) * (739 - 39)]),
    ("Then 3562719 ÷ 739 = 4821.", [4821]),
    ("The area is $4821 \\times 739 = 3562719$ square meters.", [4821 * 739]),
    ("$$\\frac{3}{4} \\cdot 120 = 90$$", [90]),
    ("Hence \\(2^{10} - 1 = 1023\\).", [2**10 - 1]),
    ("So $r = 17 \\bmod 5 = 2$.", [17 % 5]),
    ("2 to the power of 10 is 1024", [2**10]),
    ("37 squared is 1369 and 12 cubed is 1728.", [37**2, 12**3]),
    ("0.1 + 0.2 = 0.3", [F(3, 10)]),
    ("10 / 3 = 3.33", [F(10, 3)]),
    ("-5 + 3 = -2", [-2]),
    ("3 - 5 = -2", [-2]),
    ("\\[f(3) - f(-3) = 3 - (-3) = 6\\]", [6]),
    ("10-3=7", [7]),
    ("12.5% of 80 is 10", [10]),
    ("She makes $2 * 9 = $18 every day.", [18]),
    ("We multiply 4821 × 739 to get the total. Then we stop.", [4821 * 739]),
    ("A 2 × 3 grid has 6 cells, and 4 x 5 = 20.", [6, 20]),
    ("17 mod 5 = 2", [2]),
    ("(2 + 3) * (4 + 5) = 45, then 45 + 10 = 55.", [45, 55]),
    ("12 ÷ 4 + 2 × 3 = 9", [F(12, 4) + 6]),
    ("2^3^2 = 512", [2 ** (3**2)]),
    ("(-2)^2 = 4 but -2^2 = -4", [4, -4]),
    ("1.5 * 4 = 6", [6]),
    ("4821*739=3562719", [4821 * 739]),
    ("x = 4821 * 739 = 4821 * 700 + 4821 * 39 = 3562719", [4821 * 739, 4821 * 700 + 4821 * 39]),
    ("First 48 * 3 = 144.\nThen 144 + 6 = 150.\nSo the total is \\boxed{150}.", [144, 150]),
    ("The total (4821 * 739) is large.", [4821 * 739]),
    ("We need 2^100 / 3.", [F(2**100, 3)]),
    ("7 divided by 8 is 0.875 and 9 multiplied by 11 is 99", [F(7, 8), 99]),
    ("so $2x = 4821 \\times 739$ and x follows.", [4821 * 739]),
    ("(" * 500 + "1 + 2", [3]),  # unbalanced and deeper than any step's nesting: no RecursionError
]

UNCHANGED = [
    "Let x be the number of boxes.",
    "The answer is \\boxed{3562719}.",
    "Solve $2x + 3 = 7$, so $x = 2$.",
    "$x^2 + 3x - 4 = 0$ factors as $(x + 4)(x - 1) = 0$.",
    "Pages 10-20, dated 12/25/2023, call 555-1234.",
    "The ratio is 3:4 and the version 3.5.2.",
    "```python\nprint(4821 * 739)\n```\n```output\n3562719\n```\nSo 3562719.",
    "Inline `2 + 3` code.",
    "Divide by zero: 5 / 0 = 0.",
    "a huge 9^9^9 power and 2^0.5",
    "$\\sqrt{2} \\approx 1.414$",
    "f(3) + 2 is the value at 3.",
    "the sum 1 + 2 + \\cdots + 100 = 5050",
    "$\\frac{a}{b} = \\frac{3}{4}$",
    "Use $\\sin(30) = 0.5$ here.",
    "The 3-4-5 triangle and a 3 x 4 grid.",
    "It costs $5 and $7, or $5 - $7 in all.",
    "$4821 \\times 739 = 3562719 > 10^6$",
    "It is 3 + 4x or 2y - 3.",
    "We have 007 + 5 agents.",
    "A $45-45-90$ triangle; $(2^2)^x = 2^3$ and $7^{-1}$; the squares $2^2$, $3^2$.",
    "\\begin{align*}\n1 + 3 + 6 &= 10 \\\\\n4821 \\times 739 &= 3562719\n\\end{align*}",
    "[asy]\ndraw((0,0)--(3 + 4, 5));\nlabel(\"$2 + 3 = 5$\", (1,1));\n[/asy]",
    "So $\\frac{255}{512}$ is close to a half.",
    "Squares are $0, 1, 4$, or $9 \\bmod 10$; and 3 mod 10 too.",
    "",
    # the actor computes it in its own cell already (SmolLM2 does, once cells are in its prefix)
    "Total = 48 + 184 =\n```python\nprint(48 + 184)\n```\n```output\n156\n```",
    "So 12 * 2 = 24.\n\n```python\nprint(12 * 2)\n```",
]


def run_cell(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {})  # noqa: S102 -- the critic's cell, as the sandbox would run it
    return out.getvalue()


def balanced_dollars(text: str) -> bool:
    return len(re.findall(r"(?<!\\)\$", text)) % 2 == 0


@pytest.mark.parametrize(("step", "values"), CASES, ids=[c[0][:40] for c in CASES])
def test_each_cell_prints_the_exact_value_and_thor_parses_it(step: str, values: list) -> None:
    res = rewrite_arithmetic(step)
    assert res.changed and res.n_cells == len(values), res.text
    found = cells(res.text)
    assert len(found) == len(values)
    for (code, end), want in zip(found, values, strict=True):
        printed = run_cell(code)
        assert printed.endswith("\n") and Fraction(printed.strip()) == want, (code, printed)
        call = THOR.parse_call(res.text[:end] + "```output", "```output")
        assert call.error is None and call.tool == "python" and call.arg == code
        assert res.text[call.start:end] == f"```python\n{code}\n```\n"


@pytest.mark.parametrize(("step", "values"), CASES, ids=[c[0][:40] for c in CASES])
def test_the_prose_is_kept_and_nothing_is_invented(step: str, values: list) -> None:
    res = rewrite_arithmetic(step)
    prose = re.sub(r"```python\n.*?\n```\n", " ", res.text, flags=re.S)
    words = prose.split()
    rest = step
    for w in words:  # every word outside the cells is the step's own, in the step's order
        if w not in rest:  # a math span closed early: "$4821 \\times 739 =$"
            w = re.sub(r"(\$\$|\$|\\\)|\\\])$", "", w)
        i = rest.find(w)
        assert i >= 0, (w, step, res.text)
        rest = rest[i + len(w):]
    assert balanced_dollars(res.text) == balanced_dollars(step)


@pytest.mark.parametrize("step", UNCHANGED)
def test_no_arithmetic_no_change(step: str) -> None:
    res = rewrite_arithmetic(step)
    assert res == CriticResult(step, 0, False)


def test_exact_layout_of_a_rewrite() -> None:
    step = "So the total is 4821 * 739 = 3562719 screws.\nAdding 12% of 350 is 42, so we are done."
    assert rewrite_arithmetic(step).text == (
        "So the total is 4821 * 739 =\n```python\nprint(4821 * 739)\n```\nscrews.\n"
        "Adding 12% of 350 is\n```python\nprint(350 * 12 / 100)\n```\nso we are done.")
    assert rewrite_arithmetic("The area is $4821 \\times 739 = 3562719$ m.").text == (
        "The area is $4821 \\times 739 =$\n```python\nprint(4821 * 739)\n```\nm.")
    assert rewrite_arithmetic("We multiply 4821 × 739 to get it. Then stop.").text == (
        "We multiply 4821 × 739 to get it.\n```python\nprint(4821 * 739)\n```\nThen stop.")


def test_splicing_real_outputs_gives_a_trajectory_thor_reads_cell_by_cell() -> None:
    step = "First 48 * 3 = 140. Then 140 + 6 = 146. So the answer is \\boxed{146}."
    text = rewrite_arithmetic(step).text
    spliced, pos = "", 0
    for code, end in cells(text):  # what the pipeline does: run each cell, put its output after it
        spliced += text[pos:end] + "```output" + THOR.output_template.replace("{result}", run_cell(code).strip())
        pos = end
        call = THOR.parse_call(spliced[:spliced.rfind("```output") + len("```output")], "```output")
        assert call.arg == code
    spliced += text[pos:]
    assert "```output\n144\n```\n" in spliced and "```output\n146\n```\n" in spliced
    assert "= 140" not in spliced and spliced.endswith("So the answer is \\boxed{146}.")


def test_code_is_plain_python_where_python_prints_the_exact_value() -> None:
    codes = {step: [c for c, _ in cells(rewrite_arithmetic(step).text)][0] for step in
             ("3 - (-3) = 6", "12% of 350 is 42", "0.1 + 0.2 = 0.3", "10 / 3 = 3.3", "2 ** -2 = 0.25")}
    assert codes == {
        "3 - (-3) = 6": "print(3 - (-3))",
        "12% of 350 is 42": "print(350 * 12 / 100)",  # prints 42.0: exact
        "0.1 + 0.2 = 0.3": "from fractions import Fraction\nprint(Fraction('0.1') + Fraction('0.2'))",  # not 0.30000000000000004
        "10 / 3 = 3.3": "from fractions import Fraction\nprint(Fraction(10) / 3)",
        "2 ** -2 = 0.25": "print(2**(-2))",
    }


def test_only_arithmetic_not_already_in_a_cell_gets_one() -> None:
    step = "First 3 * 4 = 12. Then 48 + 184 =\n```python\nprint(48 + 184)\n```\nand 5 * 7 = 35 more."
    assert rewrite_arithmetic(step).text == (
        "First 3 * 4 =\n```python\nprint(3 * 4)\n```\nThen 48 + 184 =\n```python\nprint(48 + 184)\n```\n"
        "and 5 * 7 =\n```python\nprint(5 * 7)\n```\nmore.")


@pytest.mark.parametrize(("step", "boxed"), [
    ("So the final answer is 1,234.", "So the final answer is \\boxed{1234}."),
    ("the answer is: $-3.5$", "the answer is: $\\boxed{-3.5}$"),
    ("The answer is 12 apples (twelve).", "The answer is \\boxed{12} apples (twelve)."),
    ("Answer: \\boxed{3}", "Answer: \\boxed{3}"),
    # an expression stated as the answer: none of its numbers is the answer (SmolLM2 on GSM8K wrote
    # "the answer is 16 + 16 = 32" and got \boxed{16}: the gold, graded correct)
    ("So, the answer is 16 + 16 = 32", "So, the answer is 16 + 16 = 32"),
    ("The answer is 3x4 = 12, the answer is 3 times 4, the answer is 7(3+4)",
     "The answer is 3x4 = 12, the answer is 3 times 4, the answer is 7(3+4)"),
    ("The final answer is 40x = 400x", "The final answer is 40x = 400x"),  # a term, not a number
])
def test_a_stated_answer_is_boxed_only_when_it_is_a_number(step: str, boxed: str) -> None:
    assert box_stated_answer(step) == boxed


def test_the_critic_does_not_box_part_of_an_expression() -> None:
    res = asyncio.run(ArithmeticCritic().rewrite({}, "So, the answer is 16 + 16 = 32."))
    assert "\\boxed" not in res.text and [c for c, _ in cells(res.text)] == ["print(16 + 16)"]


def test_min_digits_skips_small_sums() -> None:
    res = rewrite_arithmetic("3 + 4 = 7 and 4821 * 739 = 3562719", min_digits=3)
    assert res.n_cells == 1 and [c for c, _ in cells(res.text)] == ["print(4821 * 739)"]


def test_critic_protocol_and_retry() -> None:
    critic: Critic = ArithmeticCritic()  # the interface an LLM critic implements too
    problem = {"question": "How many screws?", "answer": "3562719"}
    res = asyncio.run(critic.rewrite(problem, "4821 * 739 = 3562719"))
    assert res.changed and res.n_cells == 1
    retry = asyncio.run(critic.rewrite(problem, "4821 * 739 = 3562719", feedback="NameError: x"))
    assert retry == CriticResult("4821 * 739 = 3562719", 0, False)


@pytest.mark.parametrize("bench", ["gsm8k", "math500", "olympiadbench"])
def test_real_solutions_give_cells_that_run_and_parse(bench: str) -> None:
    """The shipped benchmarks' reference solutions as actor steps: every cell runs and prints a
    number, THOR reads it back, and no $ is left unpaired."""
    from thor_cli.data import load_benchmark

    n_cells = 0
    for rec in load_benchmark(bench, limit=150):
        sol = rec.get("solution") or ""
        step = re.sub(r"<<[^>]*>>", "", "\n".join(sol) if isinstance(sol, list) else sol)  # GSM8K's calculator notes
        res = rewrite_arithmetic(step)
        for code, end in cells(res.text):
            Fraction(run_cell(code).strip())
            assert THOR.parse_call(res.text[:end] + "```output", "```output").arg == code
        assert balanced_dollars(res.text) == balanced_dollars(step), step
        assert res.n_cells == len(cells(res.text)) - len(cells(step))
        n_cells += res.n_cells
    assert n_cells > 10
