"""Explicit arithmetic in a model's prose or LaTeX, parsed into a tree and turned into Python.

``parse_at(text, i, math=...)`` reads the longest arithmetic expression starting at ``text[i]``:
numbers (``4821``, ``4,821``, ``3.5``; in math also ``4{,}821``), ``+ - − * × · ∙ ⋅ / ÷ ^ **``,
``\\times \\cdot \\div \\bmod``, words (times, multiplied by, plus, minus, divided by, mod, to the
power of, squared, cubed), percentages (``12% of 350``, ``12 percent of``, ``12\\% of``),
parentheses (``( )``, ``\\left( \\right)``, and ``{ }`` and ``\\frac{a}{b}`` in math) and a
minus sign glued to a number. ``python_code(tree)`` gives a cell body that prints the value
exactly: plain Python where that prints the exact value (ints, or a float whose printed digits are
the exact value), else the same expression over ``fractions.Fraction``. It also refuses (None)
what it cannot compute safely: division by zero, a fractional or huge power.

Deliberately not parsed: variables (``2x + 3``), implicit products (``2(3 + 4)``), factorials,
roots, ellipses. The caller (``gen.critics``) decides which parsed expressions are arithmetic
(context, claims) and where cells go.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

NUM_TEXT = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d|,\d)|\d+(?:\.\d+)?")
NUM_MATH = re.compile(r"\d{1,3}(?:(?:,|\{,\}|\\,)\d{3})+(?:\.\d+)?(?!\d|,\d)|\d+(?:\.\d+)?")
_OPS_COMMON = [("**", "pow"), ("^", "pow"), ("*", "mul"), ("×", "mul"), ("·", "mul"), ("∙", "mul"), ("⋅", "mul"),
               ("/", "div"), ("÷", "div"), ("+", "add"), ("-", "sub"), ("−", "sub")]
_OPS_MATH = re.compile(r"\\(times|cdot|div|bmod)(?![A-Za-z])")
_MATH_OPS = {"times": "mul", "cdot": "mul", "div": "div", "bmod": "mod"}
_WORD_OPS = re.compile(r"(multiplied by|divided by|to the power of|times|plus|minus|mod|squared|cubed)\b")
_WORDS = {"multiplied by": "mul", "divided by": "div", "to the power of": "pow", "times": "mul", "plus": "add",
          "minus": "sub", "mod": "mod", "squared": "sq", "cubed": "cube"}
_PERCENT = re.compile(r"(?:%|\\%|[ \t]+percent)[ \t]+of\b")
_X_OP = re.compile(r"x(?=[ \t])")
_OPEN = re.compile(r"\\left\(|\(|\\[dt]?frac(?=\{)|\{")
_CLOSE = re.compile(r"\\right\)|\)|\}")
_WS = re.compile(r"[ \t]*")

MAX_TOKENS = 400  # an expression longer than this is not something a step computes; it also bounds the work
MAX_DEPTH = 16  # nesting of parentheses and powers (deeper is not a step's arithmetic)
BINARY = {"add": 10, "sub": 10, "mul": 20, "div": 20, "mod": 20, "pct": 25, "pow": 30}
# A power whose result would need more bits is refused: Python will not print an int of more than
# 4,300 digits (about 14,000 bits), and nobody writes such a power in a reasoning step.
MAX_POWER_BITS = 10_000


@dataclass(frozen=True)
class Tok:
    kind: str  # num, op, open, close
    value: str  # the op name, the opener ("(", "\\left(", "{", "frac"), or the number's digits
    start: int
    end: int
    spaced: bool  # whitespace before it


def tokens(text: str, i: int, *, math: bool) -> list[Tok]:
    """Tokens from ``text[i]`` until something that is not arithmetic (or a line break)."""
    return list(iter_tokens(text, i, math=math))


def iter_tokens(text: str, i: int, *, math: bool) -> Iterator[Tok]:
    """:func:`tokens`, one at a time (the parser reads only as far as it gets)."""
    num_re = NUM_MATH if math else NUM_TEXT
    prev: Tok | None = None
    for _ in range(MAX_TOKENS):
        j = _WS.match(text, i).end()  # type: ignore[union-attr]
        if j >= len(text):
            return
        prev = _token(text, j, j > i, math, num_re, prev)
        if prev is None:
            return
        yield prev
        i = prev.end


def _token(text: str, j: int, spaced: bool, math: bool, num_re: re.Pattern[str], prev: Tok | None) -> Tok | None:
    m = num_re.match(text, j)
    if m:
        value = re.sub(r"\{,\}|\\,|,", "", m.group())
        if len(value.split(".")[0]) > 1 and value.startswith("0"):
            return None  # 007, 05: codes and dates, not numbers
        return Tok("num", value, j, m.end(), spaced)
    m = _PERCENT.match(text, j) if prev is not None and prev.kind == "num" else None
    if m:
        return Tok("op", "pct", j, m.end(), spaced)
    op = next(((s, name) for s, name in _OPS_COMMON if text.startswith(s, j)), None)
    if op:
        return Tok("op", op[1], j, j + len(op[0]), spaced)
    m = _OPS_MATH.match(text, j) if math else _WORD_OPS.match(text, j) or (_X_OP.match(text, j) if spaced else None)
    if m:
        return Tok("op", _MATH_OPS[m.group(1)] if math else _WORDS.get(m.group(), "x"), j, m.end(), spaced)
    m = _OPEN.match(text, j)
    if m and (math or m.group() == "("):
        return Tok("open", "frac" if "frac" in m.group() else m.group(), j, m.end(), spaced)
    m = _CLOSE.match(text, j)
    if m and (math or m.group() == ")"):
        return Tok("close", m.group(), j, m.end(), spaced)
    return None


class _Fail(Exception):
    pass


# A tree is a tuple: ("num", Fraction, digits_text) | (op, left, right) | ("neg", x)
Tree = tuple[Any, ...]
_CLOSER = {"(": ")", "\\left(": "\\right)", "{": "}"}


class _Parser:
    def __init__(self, source: Iterator[Tok]) -> None:
        self.source = source
        self.toks: list[Tok] = []  # read so far
        self.i = 0
        self.depth = 0
        self.ops: list[Tok] = []  # the operator tokens used, for the caller's checks

    def at(self, k: int) -> Tok | None:
        while len(self.toks) <= k:
            t = next(self.source, None)
            if t is None:
                return None
            self.toks.append(t)
        return self.toks[k]

    def peek(self) -> Tok | None:
        return self.at(self.i)

    def take(self, kind: str, value: str | None = None) -> Tok:
        t = self.peek()
        if t is None or t.kind != kind or (value is not None and t.value != value):
            raise _Fail
        self.i += 1
        return t

    def operand(self) -> Tree:
        t = self.peek()
        if t is None:
            raise _Fail
        if t.kind == "num":
            self.i += 1
            return ("num", Fraction(t.value), t.value)
        if t.kind == "op" and t.value == "sub":  # a minus glued to what follows: -5, -(2 + 3)
            nxt = self.at(self.i + 1)
            if nxt is None or nxt.spaced or nxt.kind not in ("num", "open"):
                raise _Fail
            self.i += 1
            return ("neg", self.expr(28))
        if t.kind == "open" and t.value == "frac":
            self.i += 1
            self.ops.append(Tok("op", "div", t.start, t.end, t.spaced))
            num, den = self.group("{"), self.group("{")
            return ("div", num, den)
        if t.kind == "open":
            return self.group(t.value)
        raise _Fail

    def group(self, opener: str) -> Tree:
        self.take("open", opener)
        inner = self.expr(0)
        self.take("close", _CLOSER[opener])
        return inner

    def expr(self, min_bp: int) -> Tree:
        self.depth += 1
        try:
            return self._expr(min_bp)
        finally:
            self.depth -= 1

    def _expr(self, min_bp: int) -> Tree:
        if self.depth > MAX_DEPTH:
            raise _Fail
        left = self.operand()
        while True:
            t = self.peek()
            if t is None or t.kind != "op":
                return left
            if t.value in ("sq", "cube"):
                self.i += 1
                self.ops.append(t)
                left = ("pow", left, ("num", Fraction(2 if t.value == "sq" else 3), "2" if t.value == "sq" else "3"))
                continue
            name = "mul" if t.value == "x" else t.value
            bp = BINARY.get(name)
            if bp is None or bp <= min_bp or (name == "pct" and left[0] != "num"):
                return left
            save, nops = self.i, len(self.ops)
            self.i += 1
            try:
                right = self.expr(bp - 1 if name == "pow" else bp)  # ^ groups to the right
            except _Fail:
                self.i = save  # the operator has no operand here: the expression ends before it
                del self.ops[nops:]
                return left
            self.ops.insert(nops, t)
            left = ("div", ("mul", right, left), ("num", Fraction(100), "100")) if name == "pct" else (name, left, right)


@dataclass(frozen=True)
class Parsed:
    tree: Tree
    start: int
    end: int  # just after the expression's last token
    ops: tuple[Tok, ...]
    numbers: tuple[str, ...]


def parse_at(text: str, i: int, *, math: bool) -> Parsed | None:
    """The longest expression starting at ``text[i]`` (a bare number counts), or None."""
    p = _Parser(iter_tokens(text, i, math=math))
    try:
        tree = p.expr(0)
    except _Fail:
        return None
    used = p.toks[:p.i]
    return Parsed(tree, used[0].start, used[-1].end, tuple(p.ops), tuple(t.value for t in used if t.kind == "num"))


# ---- exact value and Python ----

def exact(tree: Tree) -> Fraction:
    """The exact value. Raises ArithmeticError for what must not become a cell (x/0, 2^0.5,
    a power too big to compute)."""
    kind = tree[0]
    if kind == "num":
        return tree[1]  # type: ignore[no-any-return]
    if kind == "neg":
        return -exact(tree[1])
    a, b = exact(tree[1]), exact(tree[2])
    if kind == "add":
        return a + b
    if kind == "sub":
        return a - b
    if kind == "mul":
        return a * b
    if kind in ("div", "mod"):
        if b == 0:
            raise ZeroDivisionError("division by zero")
        return a / b if kind == "div" else a % b
    if b.denominator != 1:
        raise ArithmeticError("fractional power")
    size = max(abs(a.numerator), abs(a.denominator), 2).bit_length() * abs(int(b))
    if size > MAX_POWER_BITS:
        raise ArithmeticError("power too big")
    return a ** int(b)


_PREC = {"add": 1, "sub": 1, "mul": 2, "div": 2, "mod": 2, "neg": 3, "pow": 4, "num": 5, "call": 5}
_SYM = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%", "pow": "**"}


def _is_frac(tree: Tree) -> bool:
    """Whether the Fraction rendering of ``tree`` is already a Fraction (so / on it is exact)."""
    kind = tree[0]
    if kind == "num":
        return "." in tree[2]
    if kind == "neg":
        return _is_frac(tree[1])
    if kind == "div":
        return True
    if kind == "pow":
        return _is_frac(tree[1]) or exact(tree[2]) < 0
    return _is_frac(tree[1]) or _is_frac(tree[2])


def render(tree: Tree, fractions: bool = False) -> tuple[str, int]:
    """(Python source, its precedence). With ``fractions``, decimals are ``Fraction('3.5')`` and
    a division or negative power of plain ints starts from ``Fraction(...)``."""
    kind = tree[0]
    if kind == "num":
        text = tree[2]
        return (f"Fraction('{text}')", 5) if fractions and "." in text else (text, 5)
    if kind == "neg":
        inner, p = render(tree[1], fractions)
        return ("-" + (inner if p >= 3 else f"({inner})"), 3)
    prec = _PREC[kind]
    (lt, lp), (rt, rp) = render(tree[1], fractions), render(tree[2], fractions)
    if fractions and ((kind == "div" and not _is_frac(tree[1]) and not _is_frac(tree[2]))
                      or (kind == "pow" and exact(tree[2]) < 0 and not _is_frac(tree[1]))):
        lt, lp = f"Fraction({lt})", 5
    if kind == "pow":
        left_ok, right_ok = lp > 4, rp >= 4 and tree[2][0] != "neg"
    else:
        chain = kind in ("add", "mul") and tree[2][0] == kind
        left_ok, right_ok = lp >= prec, (rp > prec or chain) and tree[2][0] != "neg"  # 3 - (-3), not 3 - -3
    lt = lt if left_ok else f"({lt})"
    rt = rt if right_ok else f"({rt})"
    return (f"{lt}{_SYM[kind]}{rt}" if kind == "pow" else f"{lt} {_SYM[kind]} {rt}", prec)


def _printed(value: Any) -> Fraction | None:
    """The exact number that ``print(value)`` shows, or None for what is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        return None
    try:
        return Fraction(repr(value) if isinstance(value, float) else value)
    except (ValueError, OverflowError):  # inf, nan
        return None


def python_code(tree: Tree) -> str | None:
    """A cell body that prints the expression's exact value, or None when that is impossible
    (division by zero, a fractional or huge power). Each candidate is run here (it holds only
    numbers, operators and Fraction) and kept only if it prints the exact value."""
    try:
        want = exact(tree)
    except ArithmeticError:
        return None
    plain = render(tree)[0]
    try:
        if _printed(eval(plain, {"__builtins__": {}})) == want:  # noqa: S307 -- built from parsed tokens only
            return f"print({plain})"
    except (ArithmeticError, ValueError):
        pass  # a float overflow: the Fraction form below
    frac = render(tree, fractions=True)[0]
    if _printed(eval(frac, {"__builtins__": {}, "Fraction": Fraction})) == want:  # noqa: S307
        return f"from fractions import Fraction\nprint({frac})"
    return None  # both forms disagree with the tree: a bug here; the text stays as it was
