"""Exact arithmetic of the fast path: values, repeating decimals, decimal approximation, bounds."""

from __future__ import annotations

from fractions import Fraction

import pytest

from thor_cli.grading.arith import collapse_parens, evaluate
from thor_cli.grading.normalize import canon, fast_equal


@pytest.mark.parametrize("text,value", [
    ("2^{100}+1", 2**100 + 1), ("\\frac{1}{10!}", Fraction(1, 3628800)), ("10^{-30}", Fraction(1, 10**30)),
    ("0.\\overline{3}", Fraction(1, 3)), ("0.1(6)", Fraction(1, 6)), ("0.1666\\ldots", Fraction(1, 6)),
    ("0.\\overline{142857}", Fraction(1, 7)), ("2^{2^{2^2}}", 65536), ("-2^2", -4), ("(-2)^2", 4),
    ("\\sqrt{16}", 4), ("3\\times10^{5}", 300000), ("1e-3", Fraction(1, 1000)), ("0.1+0.2", Fraction(3, 10)),
])
def test_exact_values(text: str, value: Fraction) -> None:
    v = evaluate(text)
    assert v is not None and v.value == value


@pytest.mark.parametrize("text", ["2^{2^{2^{2^{2^2}}}}", "(10^{10^{10}})!", "\\sqrt{2}", "2^10", "x+1", "1/0",
                                  "2\\frac{1}{2}", "\\pi"])
def test_gives_up_rather_than_guessing_or_hanging(text: str) -> None:
    assert evaluate(text) is None


def test_decimal_approximates_only_with_six_significant_digits() -> None:
    third = Fraction(1, 3)
    assert evaluate("0.333333").approximates(third)  # type: ignore[union-attr]
    assert not evaluate("0.33333").approximates(third)  # type: ignore[union-attr]
    assert not evaluate("0.000000").approximates(Fraction(1, 10**7))  # type: ignore[union-attr]
    assert evaluate("1+0.333333").places is None  # in an expression a decimal is exact  # type: ignore[union-attr]


def test_deep_parentheses_collapse() -> None:
    assert collapse_parens("(" * 500 + "1+2" + ")" * 500) == "(1+2)"
    assert collapse_parens("((1)+(2))") == "((1)+(2))"
    assert fast_equal("(" * 500 + "7" + ")" * 500, "7") == (True, "numeric")


@pytest.mark.parametrize("raw,canonical", [
    ("√12", "\\sqrt{12}"), ("x ≤ 3", "(-\\infty, 3]"), ("1 \\le x < 2", "[1, 2)"), ("∅", "\\emptyset"), ("\\{ \\}", "\\emptyset"),
    ("\\sin 30^\\circ", "\\sin\\left(\\frac{30\\pi}{180}\\right)"), ("(x, y) = (1, 2)", "(1, 2)"),
    ("(y, x) = (2, 1)", "(1, 2)"), ("y=2, x=1", "(1, 2)"), ("x=2, x=3", "2, 3"), ("0.333...", "0.333\\ldots"),
])
def test_canon(raw: str, canonical: str) -> None:
    assert canon(raw) == canonical


def test_products_of_huge_powers_stop_at_the_size_bound() -> None:
    assert evaluate("2^{500000}") is not None and evaluate("\\cdot".join(["2^{500000}"] * 50)) is None
    assert evaluate("\\cdot".join(["2^{1000}"] * 50)).value == 2**50000  # type: ignore[union-attr]
