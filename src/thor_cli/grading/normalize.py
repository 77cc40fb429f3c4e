"""Fast, sympy-free answer comparison: the cases math-verify misses or that need no CAS.

``fast_equal(pred, gold)`` returns ``(correct, method)`` when it can decide, else ``None`` (then the
worker pool asks math-verify). It decides: identical strings after LaTeX clean-up ("exact"),
exact rational arithmetic -- integers, fractions, powers, factorials, repeating decimals, with
thousands separators, units, percent and degrees -- compared EXACTLY (``arith``: never through
floats, so 2^{100} != 2^{100}+1; a decimal only approximates a value when it has 6+ significant
digits) ("numeric"), multiple-choice letters ("choice"), plain-text answers ("string"), and
tuples, intervals, unions, sets and matrices whose elements it can all decide ("structure").

``canon`` is the LaTeX both this module and math-verify see: Unicode math (√ π ≤ ∞ × −) as
LaTeX, every spelling of the empty set as ``\\emptyset``, trig functions of degrees in radians
(``\\sin 30^\\circ`` -> ``\\sin(\\frac{30\\pi}{180})``, before degree signs are dropped), and
labelled tuples as tuples (``(x, y) = (1, 2)`` and ``x=1, y=2`` -> ``(1, 2)``).

>>> fast_equal("1,000", "1000")
(True, 'exact')
>>> fast_equal(r"\\dfrac{1}{2}", "0.5")
(True, 'numeric')
>>> fast_equal("(C) 12", r"\\text{(C)}")
(True, 'choice')
>>> fast_equal(r"[1, 2)", r"[1,2]")
(False, 'structure')
"""

from __future__ import annotations

import re
from collections.abc import Callable

from thor_cli.grading.arith import Value, evaluate

_SPACING = re.compile(r"(?<!\\)\\[!,;:> ]|\\q?quad|~|\\displaystyle|\\left|\\right|\\big|\\Big")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\^\s*\{\s*\\text\{\s*o\s*\}\s*\}")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_TRAILING_UNIT = re.compile(r"^(.*?[\d}])\s*\\(?:text|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z .^\d/]*\}$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:(?:,|\{,\}|\\,)\d{3})+(?:\.\d+)?$")
_NUMBER_THEN_WORDS = re.compile(r"^([-+]?[\d.,]+(?:/\d+)?)\s*([A-Za-z][A-Za-z .]*)$")
# "18 dollars", "5 cm": a unit is a word of 3+ letters or a known short one (never "2i", "3x")
_SHORT_UNITS = {"cm", "mm", "km", "m", "kg", "g", "mg", "ft", "in", "yd", "mi", "lb", "lbs", "oz", "ml", "l", "s",
                "h", "hr", "hrs", "min", "sec", "mph", "kmh"}
_CHOICE = re.compile(r"^(?:\(([A-E])\)|([A-E]))(?:$|[.:]$|[.:]?\s+\S.*$)", re.S)
_WORDS = re.compile(r"^[A-Za-z][A-Za-z '\-]*[A-Za-z]$")
MATH_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt", "pi", "infty",
               "inf", "frac", "lim", "max", "min", "det", "arcsin", "arccos", "arctan"}
_UNICODE = {"π": "\\pi ", "∞": "\\infty ", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "×": "\\times ",
            "·": "\\cdot ", "⋅": "\\cdot ", "÷": "\\div ", "−": "-", "–": "-", "∪": "\\cup ", "∩": "\\cap ",
            "∈": "\\in ", "±": "\\pm ", "∅": "\\emptyset ", "½": "\\frac{1}{2}", "⅓": "\\frac{1}{3}",
            "¼": "\\frac{1}{4}", "¾": "\\frac{3}{4}", "²": "^2", "³": "^3", "ℝ": "\\mathbb{R}", "\u00a0": " ",
            "…": "..."}
_UNICODE_RX = re.compile("|".join(map(re.escape, _UNICODE)))
_ROOT = re.compile(r"√\s*(\d+|[A-Za-z]|\\pi)|√\s*\(([^()]*)\)")
_EMPTY = re.compile(r"^(?:\\emptyset|\\varnothing|\\O|\{\s*\}|\\\{(?:\s|\\[,;:! ])*\\\}|\\left\\\{\s*\\right\\\}|"
                    r"(?:\\text\{)?\s*(?:the\s+)?empty\s+set\s*\}?)$", re.I)
_TRIG_DEG = re.compile(r"\\(sin|cos|tan|cot|sec|csc)\s*(?:\\left)?\s*(?P<o>[({])?\s*(-?\d+(?:\.\d+)?)\s*"
                       r"(?:\^\s*\{?\s*\\circ\s*\}?|°|\\degree)\s*(?(o)(?:\\right)?\s*[)}])")
_TUPLE_LABEL = re.compile(r"^(?:\\left)?\((\s*[A-Za-z](?:_\{?\d+\}?)?(?:\s*,\s*[A-Za-z](?:_\{?\d+\}?)?)+)\s*"
                          r"(?:\\right)?\)\s*=\s*(?=\S)")
_ASSIGN = re.compile(r"^\s*([A-Za-z](?:_\{?\d+\}?)?)\s*=\s*([^=]+?)\s*$")
_AND = re.compile(r"\s*(?:\\text\{\s*and\s*\}|\band\b|;)\s*")
_NUM_BOUND = r"(-?(?:\d+(?:\.\d+)?|\\frac\{[^{}]*\}\{[^{}]*\}|\\sqrt\{[^{}]*\}|\\pi))"
_LT, _LE, _GT, _GE = r"(?:<|\\lt)", r"(?:\\le|\\leq|\\leqslant|<=)", r"(?:>|\\gt)", r"(?:\\ge|\\geq|\\geqslant|>=)"
_INEQ_ONE = re.compile(rf"^([A-Za-z])\s*({_LE}|{_GE}|{_LT}|{_GT})\s*{_NUM_BOUND}$")
_INEQ_TWO = re.compile(rf"^{_NUM_BOUND}\s*({_LE}|{_LT})\s*([A-Za-z])\s*({_LE}|{_LT})\s*{_NUM_BOUND}$")
_IN_SET = re.compile(r"^[A-Za-z]\s*\\in\s*(?=\S)")
_MATRIX = re.compile(r"^\\begin\{([pbvBV]?matrix|array)\}(?:\{[^}]*\})?(.*)\\end\{\1\}$", re.S)


def _root(m: re.Match[str]) -> str:
    return "\\sqrt{" + (m.group(1) or m.group(2)) + "}"


def _assignments(s: str) -> str:
    """``x=1, y=2`` -> ``(1, 2)`` (values in the order of the names); ``x=1, x=2`` -> ``1, 2``."""
    if s.count("=") < 2:
        return s
    parts = [_ASSIGN.match(p) for p in split_top(_AND.sub(",", s))]
    if len(parts) < 2 or not all(parts):
        return s
    pairs = [(m.group(1).replace("{", "").replace("}", ""), m.group(2)) for m in parts if m]
    names = [n for n, _ in pairs]
    if len(set(names)) == 1:
        return ", ".join(v for _, v in pairs)
    if len(set(names)) != len(names):
        return s
    return "(" + ", ".join(v for _, v in sorted(pairs)) + ")"


def _labelled(s: str) -> str:
    """``(y, x) = (2, 1)`` -> ``(1, 2)``: the values in the order of the sorted labels."""
    m = _TUPLE_LABEL.match(s)
    if not m:
        return s
    names = [n.strip().replace("{", "").replace("}", "") for n in m.group(1).split(",")]
    value = s[m.end():].strip()
    inner = re.sub(r"^\\left\(|\\right\)$", "", value)
    if inner.startswith("("):
        inner = inner[1:-1] if inner.endswith(")") else inner
        vals = split_top(inner)
        if len(vals) == len(names) and len(set(names)) == len(names) and _wraps(value):
            return "(" + ", ".join(v.strip() for _, v in sorted(zip(names, vals, strict=True))) + ")"
    return value


def _interval(s: str) -> str:
    """``x > 3`` -> ``(3, \\infty)``; ``1 \\le x < 2`` -> ``[1, 2)``; ``x \\in [1, 2]`` -> ``[1, 2]``."""
    s = _IN_SET.sub("", s)
    m = _INEQ_ONE.match(s)
    if m:
        op, b = m.group(2), m.group(3)
        closed = op not in ("<", ">", "\\lt", "\\gt")
        if op in ("<", "\\lt") or (closed and ("le" in op or op == "<=")):
            return f"(-\\infty, {b}" + ("]" if closed else ")")
        return ("[" if closed else "(") + f"{b}, \\infty)"
    m = _INEQ_TWO.match(s)
    if m:
        lo, op1, op2, hi = m.group(1), m.group(2), m.group(4), m.group(5)
        return ("(" if op1 in ("<", "\\lt") else "[") + f"{lo}, {hi}" + (")" if op2 in ("<", "\\lt") else "]")
    return s


def canon(s: str) -> str:
    """Unicode math as LaTeX, one empty set, degrees in trig calls as radians, labelled tuples
    as tuples; spaces kept (math-verify reads the result)."""
    s = s.strip()
    if not s.isascii():
        s = _ROOT.sub(_root, s).replace("√", "\\sqrt")
        s = _UNICODE_RX.sub(lambda m: _UNICODE[m.group(0)], s).strip()
    if "\\varnothing" in s or "\\O" in s:
        s = re.sub(r"\\varnothing|\\O(?![A-Za-z])", r"\\emptyset", s)
    if "..." in s:  # 0.333... is a repeating decimal: keep its dots from the sentence-end strip
        s = re.sub(r"(\d)\s*\.\.\.", r"\1\\ldots", s)
    if _EMPTY.match(s.strip("$ .")):
        return "\\emptyset"
    if "\\" in s:
        s = _TRIG_DEG.sub(lambda m: f"\\{m.group(1)}\\left(\\frac{{{m.group(3)}\\pi}}{{180}}\\right)", s)
    if any(c in s for c in "<>") or "\\l" in s or "\\g" in s or "\\in" in s:
        s = _interval(s)
    if "=" in s:
        s = _labelled(s)
        s = _assignments(s)
    return s


def clean(s: str, *, keep_space: bool = False) -> str:
    """LaTeX and formatting noise removed; the meaning kept. Whitespace is dropped unless asked."""
    s = s.strip()
    for a, b in (("\\(", ""), ("\\)", ""), ("\\[", ""), ("\\]", "")):
        if s.startswith(a) or s.endswith(b):
            s = s.replace(a, "").replace(b, "")
    s = canon(s.strip().strip("$").strip())
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = _SPACING.sub(" ", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "")
    m = _TRAILING_UNIT.match(s)
    if m:
        s = m.group(1)
    for _ in range(3):  # nested \text{\textbf{..}}
        s2 = _TEXT_CMD.sub(r"\1", s)
        if s2 == s:
            break
        s = s2
    s = s.strip().rstrip(".").strip()
    if s.startswith("$") or s.endswith("$"):
        s = s.strip("$").strip()
    s = re.sub(r"^[a-zA-Z]\s*=\s*(?=[^=]+$)", "", s)  # "x = 5" -> "5"
    if _THOUSANDS.match(s.replace(" ", "")):
        s = s.replace("{,}", "").replace("\\,", "").replace(",", "")
    return s if keep_space else re.sub(r"\s+", "", s)


def values_equal(a: Value, b: Value) -> bool:
    """Exact; a lone decimal also matches a value within one unit of its last place if it has
    6+ significant digits (0.333333 for 1/3, rounded or cut; never 0.000000 for 10^{-7})."""
    return a.value == b.value or a.approximates(b.value) or b.approximates(a.value)


def _is_unit(word: str) -> bool:
    w = word.strip(" .").lower()
    return w in _SHORT_UNITS or (len(w) >= 3 and not any(x in MATH_WORDS for x in w.split()))


def _choice(s: str) -> str | None:
    m = _CHOICE.match(s)
    return (m.group(1) or m.group(2)) if m else None


def _is_text(s: str) -> bool:
    if not _WORDS.match(s):
        return False
    words = re.findall(r"[A-Za-z]+", s)
    return any(len(w) >= 3 for w in words) and not any(w.lower() in MATH_WORDS for w in words)


def split_top(s: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside any (), [], {} nesting."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    i = 0
    while i < len(s):
        c = s[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if depth == 0 and s.startswith(sep, i):
            out.append("".join(cur))
            cur = []
            i += len(sep)
            continue
        cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def _wraps(s: str) -> bool:
    """Whether the bracket opening s closes at its very end ("(1,2)" yes, "(1,2)\\cup(3,4)" no)."""
    depth = 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return False
    return depth == 0


UNORDERED = ("set", "list", "union")


def structure(s: str) -> tuple[str, list[str]] | None:
    """(kind, elements) for a tuple/interval "(a,b]", a set "\\{a,b\\}", a union of intervals, a
    matrix, or a bare list. Elements of unordered kinds (``UNORDERED``) come sorted."""
    m = _MATRIX.match(s)
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        cells = [split_top(r, "&") for r in rows]
        return f"matrix{len(rows)}x{len(cells[0]) if cells else 0}", [c for row in cells for c in row]
    if "\\cup" in s:
        parts = split_top(s, "\\cup")
        if len(parts) >= 2:
            return "union", sorted(parts)
    if s.startswith("\\{") and s.endswith("\\}") and _wraps("{" + s[2:-2] + "}"):
        return "set", sorted(split_top(s[2:-2]))
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _wraps("(" + s[1:-1] + ")"):
        inner = s[1:-1]
        # "(1+2)" is a grouped expression, not a 1-tuple
        parts = split_top(inner)
        if len(parts) >= 2:
            return s[0] + s[-1], parts
        return None
    parts = split_top(s)
    if len(parts) >= 2:
        return "list", sorted(parts)
    return None


def match_unordered(ps: list[str], gs: list[str], eq: Callable[[str, str], bool | None]) -> bool | None:
    """Whether each pred element pairs with its own gold element (greedy; ``eq`` None: unknown)."""
    left = list(gs)
    unsure = False
    for p in ps:
        for j, g in enumerate(left):
            v = eq(p, g)
            if v:
                del left[j]
                break
            unsure = unsure or v is None
        else:
            return None if unsure else False
    return True


def fast_equal(pred: str, gold: str) -> tuple[bool, str] | None:
    """Decide cheaply when possible; None means "ask math-verify"."""
    p, g = clean(pred), clean(gold)
    if p == g:
        return True, "exact"
    gc = _choice(g) if len(g) <= 3 else None
    if gc is not None:
        pc = _choice(clean(pred, keep_space=True))
        if pc is not None:
            return pc == gc, "choice"
        return None
    gv = evaluate(g)
    if gv is not None:
        pv = evaluate(p)
        if pv is None:
            m = _NUMBER_THEN_WORDS.match(p)  # "18 dollars"
            if m and _is_unit(m.group(2)):
                pv = evaluate(clean(m.group(1)))
        if pv is not None:
            return values_equal(pv, gv), "numeric"
        return _tower(p, g)
    tower = _tower(p, g) or _tower(g, p)
    if tower is not None:
        return tower
    if _is_text(g):
        if _is_text(p) or not re.search(r"[\\^_{}\d]", p):
            norm = lambda x: re.sub(r"[^a-z0-9]", "", x.lower().removeprefix("the"))  # noqa: E731
            return norm(p) == norm(g), "string"
        return None
    gs, ps = structure(g), structure(p)
    if gs is not None and ps is not None:
        if gs[0] != ps[0] or len(gs[1]) != len(ps[1]):
            # a union may merge into fewer intervals ((1,2]\cup(2,3) = (1,3)), a set repeat an
            # element ({1,2,2} = {1,2}): only sympy knows
            return None if {gs[0], ps[0]} & set(UNORDERED) else (False, "structure")
        if gs[0] in UNORDERED:
            found = match_unordered(ps[1], gs[1], _fast_bool)
            if found is None or (not found and gs[0] == "union"):
                return None
            return found, "structure"
        verdicts = [fast_equal(a, b) for a, b in zip(ps[1], gs[1], strict=True)]
        if any(v is not None and not v[0] for v in verdicts):
            return False, "structure"
        if all(v is not None and v[0] for v in verdicts):
            return True, "structure"
    return None


_POWER = re.compile(r"^(\d+)\^(?=\{)")


def _tower(p: str, g: str) -> tuple[bool, str] | None:
    """``b^{x}`` against ``b^{y}`` or an integer, b >= 2: compares exponents, so power towers too
    big to build (2^{2^{2^{2^{2^2}}}}) are decided without evaluating them."""
    m = _POWER.match(p)
    if not m or int(m.group(1)) < 2 or not _wraps(p[m.end():]):
        return None
    base, exp = int(m.group(1)), p[m.end() + 1:-1]
    mg = _POWER.match(g)
    if mg and int(mg.group(1)) == base and _wraps(g[mg.end():]):
        other = g[mg.end() + 1:-1]
    else:
        gv = evaluate(g)
        if gv is None or gv.places is not None or gv.value.denominator != 1 or gv.value < 1:
            return None
        n, k = int(gv.value), 0
        while n % base == 0:
            n, k = n // base, k + 1
        if n != 1:
            return None  # not an integer power of the base; a fractional one may be (8^{1/3} = 2)
        other = str(k)
    v = fast_equal(exp, other)
    return (v[0], "numeric") if v is not None and v[1] in ("exact", "numeric") else None


def _fast_bool(a: str, b: str) -> bool | None:
    v = fast_equal(a, b)
    return None if v is None else v[0]
