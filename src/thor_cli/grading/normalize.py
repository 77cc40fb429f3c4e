"""Fast, sympy-free answer comparison: the cases math-verify misses or that need no CAS.

``fast_equal(pred, gold)`` returns ``(correct, method)`` when it can decide, else ``None`` (then the
worker pool asks math-verify). It decides: identical strings after LaTeX clean-up ("exact"),
plain numbers with thousands separators, units, percent and degrees ("numeric"), multiple-choice
letters ("choice"), plain-text answers ("string"), and tuples, intervals, sets and matrices
whose elements it can all decide ("structure").

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

import math
import re
from fractions import Fraction

_SPACING = re.compile(r"(?<!\\)\\[!,;:> ]|\\q?quad|~|\\displaystyle|\\left|\\right|\\big|\\Big")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\^\s*\{\s*\\text\{\s*o\s*\}\s*\}")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_TRAILING_UNIT = re.compile(r"^(.*?[\d}])\s*\\(?:text|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z .^\d/]*\}$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:(?:,|\{,\}|\\,)\d{3})+(?:\.\d+)?$")
_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_FRAC = re.compile(r"^([-+]?)\\frac\{?([-+]?\d+)\}?\{?(\d+)\}?$")
_SLASH = re.compile(r"^([-+]?\d+)/(\d+)$")
_NUMBER_THEN_WORDS = re.compile(r"^([-+]?[\d.,]+(?:/\d+)?)\s*[A-Za-z][A-Za-z .]*$")
_CHOICE = re.compile(r"^(?:\(([A-E])\)|([A-E]))(?:$|[.:]$|[.:]?\s+\S.*$)", re.S)
_WORDS = re.compile(r"^[A-Za-z][A-Za-z '\-]*[A-Za-z]$")
_MATH_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt", "pi", "infty",
               "inf", "frac", "lim", "max", "min", "det", "arcsin", "arccos", "arctan"}
_MATRIX = re.compile(r"^\\begin\{([pbvBV]?matrix|array)\}(?:\{[^}]*\})?(.*)\\end\{\1\}$", re.S)


def clean(s: str, *, keep_space: bool = False) -> str:
    """LaTeX and formatting noise removed; the meaning kept. Whitespace is dropped unless asked."""
    s = s.strip()
    for a, b in (("\\(", ""), ("\\)", ""), ("\\[", ""), ("\\]", "")):
        if s.startswith(a) or s.endswith(b):
            s = s.replace(a, "").replace(b, "")
    s = s.strip().strip("$").strip()
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


def to_number(s: str) -> Fraction | float | None:
    """A plain number (int, decimal, a/b, \\frac{a}{b}) as an exact Fraction where possible."""
    if _NUMBER.match(s):
        try:
            return Fraction(s)
        except (ValueError, ZeroDivisionError):
            return float(s)
    m = _FRAC.match(s) or _SLASH.match(s)
    if m:
        g = m.groups()
        sign, num, den = (g if len(g) == 3 else ("", *g))
        if int(den) == 0:
            return None
        v = Fraction(int(num), int(den))
        return -v if sign == "-" else v
    return None


def numbers_equal(a: Fraction | float, b: Fraction | float, *, rounded: bool = False) -> bool:
    """Exact for rationals; with ``rounded`` (one side was written as a decimal) also equal when
    both agree to 6 decimal places, as math-verify's default float rounding does."""
    if isinstance(a, Fraction) and isinstance(b, Fraction) and a == b:
        return True
    if math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12):
        return True
    return rounded and round(float(a), 6) == round(float(b), 6)


def _choice(s: str) -> str | None:
    m = _CHOICE.match(s)
    return (m.group(1) or m.group(2)) if m else None


def _is_text(s: str) -> bool:
    if not _WORDS.match(s):
        return False
    words = re.findall(r"[A-Za-z]+", s)
    return any(len(w) >= 3 for w in words) and not any(w.lower() in _MATH_WORDS for w in words)


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


def structure(s: str) -> tuple[str, list[str]] | None:
    """(kind, elements) for a tuple/interval "(a,b]", a set "\\{a,b\\}", a matrix, or a bare list."""
    m = _MATRIX.match(s)
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        cells = [split_top(r, "&") for r in rows]
        return f"matrix{len(rows)}x{len(cells[0]) if cells else 0}", [c for row in cells for c in row]
    if s.startswith("\\{") and s.endswith("\\}"):
        return "set", sorted(split_top(s[2:-2]))
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
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
    gn = to_number(g)
    if gn is not None:
        pn = to_number(p)
        if pn is None:
            m = _NUMBER_THEN_WORDS.match(p)  # "18 dollars"
            if m:
                pn = to_number(clean(m.group(1)))
        if pn is not None:
            return numbers_equal(pn, gn, rounded="." in p + g), "numeric"
        return None
    if _is_text(g):
        if _is_text(p) or not re.search(r"[\\^_{}\d]", p):
            norm = lambda x: re.sub(r"[^a-z0-9]", "", x.lower().removeprefix("the"))  # noqa: E731
            return norm(p) == norm(g), "string"
        return None
    gs, ps = structure(g), structure(p)
    if gs is not None and ps is not None:
        if gs[0] != ps[0] or len(gs[1]) != len(ps[1]):
            return False, "structure"
        verdicts = [fast_equal(a, b) for a, b in zip(ps[1], gs[1], strict=True)]
        if any(v is not None and not v[0] for v in verdicts) and gs[0] not in ("set", "list"):
            return False, "structure"
        if all(v is not None and v[0] for v in verdicts):
            return True, "structure"
    return None
