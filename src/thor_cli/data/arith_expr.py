"""Arithmetic expression trees for the synthetic problems: exact values (Fraction), Python and
plain-text rendering with the parentheses precedence needs, and a canonical form that names one
problem however its operands are ordered."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Expr:
    """An arithmetic expression tree. ``op`` is "num" (``value``), or one of:
    + - * ; "/" exact division (integral by construction); "fdiv" true division (a terminating
    decimal); "//" floor division; "%" remainder; "**" power; "pct" (args: percent, base)."""

    op: str
    args: tuple[Expr, ...] = ()
    value: int = 0


def num(v: int) -> Expr:
    return Expr("num", value=v)


def node(op: str, *args: Expr) -> Expr:
    return Expr(op, tuple(args))


def evaluate(e: Expr) -> Fraction:
    """The exact value (Fraction arithmetic throughout)."""
    if e.op == "num":
        return Fraction(e.value)
    vals = [evaluate(a) for a in e.args]
    a, b = vals
    if e.op == "+":
        return a + b
    if e.op == "-":
        return a - b
    if e.op == "*":
        return a * b
    if e.op in ("/", "fdiv"):
        return a / b
    if e.op == "//":
        return Fraction(a // b)
    if e.op == "%":
        return a % b
    if e.op == "**":
        return a ** int(b)
    if e.op == "pct":
        return a * b / 100
    raise ValueError(f"unknown op {e.op!r}")


_PREC = {"num": 9, "+": 1, "-": 1, "*": 2, "/": 2, "fdiv": 2, "//": 2, "%": 2, "pct": 2, "**": 3}
PY_SYMBOLS = {"+": "+", "-": "-", "*": "*", "/": "//", "fdiv": "/", "//": "//", "%": "%", "**": "**"}


def render(e: Expr, sym: dict[str, str] | None = None) -> str:
    """Infix text with the parentheses precedence needs. ``sym`` maps ops to symbols for text
    (default: Python, where an exact division is ``//`` and a percentage ``x * p // 100``)."""
    return _render(e, sym or PY_SYMBOLS, sym is None)


def _render(e: Expr, sym: dict[str, str], python: bool) -> str:
    if e.op == "num":
        return str(e.value)
    if e.op == "pct":
        p, x = e.args
        if python:
            return f"{_wrap(x, e.op, 2, sym, python)} * {p.value} // 100"
        return f"{p.value}% of {_wrap(x, e.op, 9, sym, python)}"
    left, right = e.args
    if e.op == "**":
        return f"{_wrap(left, e.op, 4, sym, python)}{sym['**']}{_wrap(right, e.op, 4, sym, python)}"
    prec = _PREC[e.op]
    return f"{_wrap(left, e.op, prec, sym, python)} {sym[e.op]} {_wrap(right, e.op, prec + 0.5, sym, python)}"


def _wrap(e: Expr, parent_op: str, parent: float, sym: dict[str, str], python: bool) -> str:
    """A child in parentheses when it binds less tightly than its parent needs. Right operands need
    more (``parent + 0.5``) except in a chain of + or of * (``a + (b - c)`` keeps its parentheses;
    ``a * (b // c)`` must)."""
    text = _render(e, sym, python)
    mine = _PREC[e.op]
    if parent_op in ("+", "*") and e.op == parent_op:
        return text
    if mine < parent or (e.op == "pct" and parent_op != "pct" and not python):
        return f"({text})"
    return text


def canonical(e: Expr) -> str:
    """One string per problem: + and * chains flattened and their operands sorted."""
    if e.op == "num":
        return str(e.value)
    if e.op in ("+", "*"):
        terms: list[str] = []

        def flat(x: Expr) -> None:
            if x.op == e.op:
                for a in x.args:
                    flat(a)
            else:
                terms.append(canonical(x))

        flat(e)
        return f"{e.op}(" + ",".join(sorted(terms)) + ")"
    return f"{e.op}(" + ",".join(canonical(a) for a in e.args) + ")"


def count_ops(e: Expr) -> int:
    return 0 if e.op == "num" else 1 + sum(count_ops(a) for a in e.args)


def exact_str(v: Fraction) -> str:
    """An exact answer as text: an integer, a terminating decimal, else ``a/b``.

    >>> exact_str(Fraction(4821, 16))
    '301.3125'
    >>> exact_str(Fraction(-42))
    '-42'
    >>> exact_str(Fraction(1, 3))
    '1/3'
    """
    if v.denominator == 1:
        return str(v.numerator)
    d, twos, fives = v.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    if d != 1:
        return f"{v.numerator}/{v.denominator}"
    k = max(twos, fives)  # v * 10**k is an integer
    digits = str(abs(v.numerator) * 10**k // v.denominator).rjust(k + 1, "0")
    return ("-" if v < 0 else "") + f"{digits[:-k]}.{digits[-k:]}".rstrip("0")
