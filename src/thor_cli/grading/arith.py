"""Exact rational arithmetic on answer strings: the numbers the fast path decides without sympy.

``evaluate(s)`` reads a cleaned answer (``normalize.clean``: no whitespace) made of integers,
decimals, repeating decimals (``0.\\overline{3}``, ``0.(3)``, ``0.333...``), ``+ - * / ^``,
``\\cdot \\times \\div``, ``\\frac{a}{b}``, ``n!``, ``\\sqrt`` of a perfect square, parentheses and
braces, and returns its exact value as a ``Fraction``, or None when the string is anything else
(a symbol, an irrational root, a power too large to build). Never floats: ``2^{100}`` and
``2^{100}+1`` differ, ``\\frac{1}{10!}`` and ``\\frac{1}{9!}`` differ, ``10^{-30}`` is not 0.

A bare decimal literal is also reported as an *approximation* (``Value.places``): the fast path
accepts it for an exact value only when it has at least ``MIN_SIG_DIGITS`` significant digits
and lies within one unit of its last place (``0.333333`` for 1/3 -- rounded or truncated; a float's
17-digit repr within 1e-15 relative).
Sizes are bounded (exponents, factorials, nesting, length) so that a hostile answer costs
microseconds: beyond a bound the answer is "not decidable here" (None), never an error.

>>> evaluate(r"2^{2^{2^2}}").value == 65536
True
>>> evaluate(r"0.1\\overline{6}")
Value(value=Fraction(1, 6), places=None, sig=0)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

MIN_SIG_DIGITS = 6  # a decimal approximates an exact value only with this many significant digits
MAX_LEN = 100_000  # characters
MAX_BITS = 1 << 20  # largest numerator/denominator built by a power (about 315,000 digits)
MAX_FACTORIAL = 3000
MAX_DEPTH = 200  # nesting of groups after redundant parentheses are collapsed


class _GiveUp(Exception):
    pass


@dataclass(frozen=True)
class Value:
    value: Fraction
    places: int | None = None  # decimal places when the answer is one (signed) decimal literal
    sig: int = 0  # its significant digits

    def approximates(self, exact: Fraction) -> bool:
        """A decimal literal with enough significant digits, within one unit in its last place."""
        if self.places is None or self.sig < MIN_SIG_DIGITS:
            return False
        # float output (0.38095238095238093 for 8/21) is off in its 17th digit: allow 1e-15 relative
        return abs(exact - self.value) < max(Fraction(1, 10**self.places), abs(exact) * Fraction(1, 10**15))


_NUM = re.compile(r"(\d+)(?:\.(\d*))?|\.(\d+)")
_OVERLINE = re.compile(r"\\(?:overline|bar|dot)\{(\d+)\}|\((\d+)\)|\\overline(\d)|\\dot(\d)")
_ELLIPSIS = re.compile(r"\.\.\.|\\[lc]?dots|\\ldots|…")
_OPS = {"\\cdot": "*", "\\times": "*", "\\div": "/", "*": "*", "/": "/", "+": "+", "-": "-"}
_DIGIT = re.compile(r"\d(?!\d)")  # ^2 (2^10 is 2^1 then 0 in LaTeX: left to math-verify)
_SCI = re.compile(r"[eE]([-+]?\d{1,4})(?![\d.])")
_INT_SUM = re.compile(r"[-+]?\d+(?:[-+]\d+)*")
_INT_TERM = re.compile(r"[-+]?\d+")
_OP_RX = re.compile(r"\\cdot|\\times|\\div|[*/+\-]")


def _repeating(intpart: str, frac: str, block: str) -> Fraction:
    a, p = len(frac), len(block)
    num = int(frac + block) - int(frac or "0")
    return int(intpart or "0") + Fraction(num, 10**a * (10**p - 1))


def _ellipsis_value(intpart: str, frac: str) -> Fraction | None:
    """``0.1666...``: the shortest block the digits end with twice repeats; None if none does."""
    for p in range(1, len(frac) // 2 + 1):
        block = frac[-p:]
        if frac[-2 * p:-p] == block:
            prefix = frac
            while prefix.endswith(block):
                prefix = prefix[:-p]
            return _repeating(intpart, prefix, block)
    return None


class _Parser:
    def __init__(self, s: str) -> None:
        self.s = s
        self.i = 0
        self.depth = 0
        self.literals = 0  # number literals read
        self.places: int | None = None  # of the last decimal literal
        self.sig = 0

    def peek(self, tok: str) -> bool:
        return self.s.startswith(tok, self.i)

    def eat(self, tok: str) -> bool:
        if self.s.startswith(tok, self.i):
            self.i += len(tok)
            return True
        return False

    def expr(self) -> Fraction:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _GiveUp
        v = self.term()
        while self.i < len(self.s) and self.s[self.i] in "+-":
            op = self.s[self.i]
            self.i += 1
            t = self.term()
            v = _bounded(v + t if op == "+" else v - t)
        self.depth -= 1
        return v

    def term(self) -> Fraction:
        v = self.unary()
        while True:
            m = _OP_RX.match(self.s, self.i)
            if m and _OPS[m.group(0)] in "*/":
                self.i = m.end()
                r = self.unary()
                if _OPS[m.group(0)] == "*":
                    v = _bounded(v * r)
                else:
                    if r == 0:
                        raise _GiveUp
                    v = _bounded(v / r)
            elif self.peek("(") or self.peek("\\sqrt"):
                v = _bounded(v * self.unary())  # implicit product 2(3+4); 2\frac{1}{2} (a mixed number?) is left alone
            else:
                return v

    def unary(self) -> Fraction:
        if self.eat("-"):
            return -self.unary()
        if self.eat("+"):
            return self.unary()
        return self.power()

    def power(self) -> Fraction:
        base = self.postfix()
        if not self.eat("^"):
            return base
        if self.peek("{"):
            exp = self.group()
        else:  # 2^10 in LaTeX is 2^1 then 0: only a single digit is unambiguous
            m = _DIGIT.match(self.s, self.i)
            if not m:
                raise _GiveUp
            self.i += 1
            exp = Fraction(int(m.group(0)))
        return _pow(base, exp)

    def postfix(self) -> Fraction:
        v = self.atom()
        if self.peek("!!"):
            raise _GiveUp  # a double factorial, not (n!)!
        while self.eat("!"):
            if v.denominator != 1 or not 0 <= v <= MAX_FACTORIAL:
                raise _GiveUp
            v = Fraction(math.factorial(int(v)))
        return v

    def group(self) -> Fraction:
        """``{expr}`` or one digit (``\\frac12``)."""
        if self.eat("{"):
            v = self.expr()
            if not self.eat("}"):
                raise _GiveUp
            return v
        if self.i < len(self.s) and self.s[self.i].isdigit():
            self.i += 1
            self.literals += 1
            return Fraction(int(self.s[self.i - 1]))
        raise _GiveUp

    def atom(self) -> Fraction:
        for open_, close in (("(", ")"), ("{", "}")):
            if self.eat(open_):
                v = self.expr()
                if not self.eat(close):
                    raise _GiveUp
                return v
        if self.eat("\\frac"):
            num = self.group()
            den = self.group()
            if den == 0:
                raise _GiveUp
            return num / den
        if self.eat("\\sqrt"):
            if self.peek("["):
                raise _GiveUp
            v = self.group()
            return _sqrt(v)
        return self.number()

    def number(self) -> Fraction:
        m = _NUM.match(self.s, self.i)
        if not m:
            raise _GiveUp
        self.i = m.end()
        self.literals += 1
        intpart, frac = (m.group(1) or ""), (m.group(2) if m.group(2) is not None else m.group(3))
        if frac is None:  # an integer, maybe in scientific notation
            v = Fraction(int(intpart))
            e = _SCI.match(self.s, self.i)
            if e:
                self.i = e.end()
                v *= Fraction(10) ** int(e.group(1))
            return v
        rep = _OVERLINE.match(self.s, self.i)
        if rep:
            self.i = rep.end()
            return _repeating(intpart, frac, next(g for g in rep.groups() if g))
        dots = _ELLIPSIS.match(self.s, self.i)
        if dots:
            self.i = dots.end()
            exact = _ellipsis_value(intpart, frac)
            if exact is not None:
                return exact
        self.places = len(frac)
        self.sig = len((intpart + frac).lstrip("0"))
        return Fraction(int(intpart or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)


def _bounded(v: Fraction) -> Fraction:
    """Every intermediate result stays within MAX_BITS: a product of many huge powers would
    otherwise cost seconds in the calling process, where nothing bounds the time."""
    if abs(v.numerator).bit_length() > MAX_BITS or v.denominator.bit_length() > MAX_BITS:
        raise _GiveUp
    return v


def _pow(base: Fraction, exp: Fraction) -> Fraction:
    if exp.denominator != 1:
        if exp.denominator == 2 and base >= 0:
            return _sqrt(base) ** exp.numerator if exp > 0 else 1 / _sqrt(base) ** -exp.numerator
        raise _GiveUp
    n = int(exp)
    if base == 0 and n < 0:
        raise _GiveUp
    if base in (0, 1):
        return base
    if base == -1:
        return Fraction(-1 if n % 2 else 1)
    bits = max(abs(base.numerator).bit_length(), base.denominator.bit_length())
    if bits * abs(n) > MAX_BITS:
        raise _GiveUp
    return base**n


def _sqrt(v: Fraction) -> Fraction:
    if v < 0:
        raise _GiveUp
    rn, rd = math.isqrt(v.numerator), math.isqrt(v.denominator)
    if rn * rn != v.numerator or rd * rd != v.denominator:
        raise _GiveUp  # irrational: sympy's business
    return Fraction(rn, rd)


def collapse_parens(s: str) -> str:
    """``((x))`` -> ``(x)``: redundant pairs removed in one linear pass (deeply nested input)."""
    if s.count("(") < 2:
        return s
    match: dict[int, int] = {}
    stack: list[int] = []
    for i, c in enumerate(s):
        if c == "(":
            stack.append(i)
        elif c == ")":
            if not stack:
                return s
            match[stack.pop()] = i
    if stack:
        return s
    drop = {i for i, j in match.items() if s[i + 1:i + 2] == "(" and match.get(i + 1) == j - 1}
    drop |= {match[i] for i in drop}
    return "".join(c for k, c in enumerate(s) if k not in drop)


def evaluate(s: str) -> Value | None:
    """The exact value of a cleaned arithmetic answer, or None (not plain arithmetic, too big)."""
    if not s or len(s) > MAX_LEN or not re.match(r"^[-+(\d.{\\]", s):
        return None
    if _INT_SUM.fullmatch(s) and s.count("+") + s.count("-") > 8:  # 0+0+...+0: one regex, not a parse
        return Value(Fraction(sum(int(t) for t in _INT_TERM.findall(s))))
    s = collapse_parens(s)
    p = _Parser(s)
    try:
        v = p.expr()
    except (_GiveUp, RecursionError, ZeroDivisionError, OverflowError, ValueError):
        return None
    if p.i != len(s):
        return None
    # a lone decimal literal (maybe signed) is an approximation; in a larger expression it is exact
    lone = p.literals == 1 and p.places is not None
    return Value(v, p.places, p.sig) if lone else Value(v)
