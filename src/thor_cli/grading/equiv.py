"""Full answer equivalence: the fast paths, an exact sympy check, math-verify, then structure.

Order: ``normalize.fast_equal`` (exact arithmetic, strings, choices); then, when both answers
parse to *exact* numbers (no decimal point written, no free symbol but the imaginary unit ``i``),
an exact decision in sympy (``exact_equal``: 2^{100} vs 2^{100}+1, \\sin 30° vs 1/2, (1+i)^2 vs
2i -- math-verify would round floats to 6 places and read ``i`` as a variable); else math-verify
on the ``canon`` forms (Unicode, empty set, degrees, labelled tuples normalised); else element-wise
structure (tuples in order; sets, lists and unions of intervals in any order).

A "no" says how sure it is: ``math_verify`` (both answers parsed as mathematics and differ) or
``unparsed`` (math-verify read nothing, or one answer is prose -- words math-verify would
multiply as symbols): the rules could not compare them, and ``thor grade --judge`` asks a judge.

Runs inside grader worker processes (``grading.pool``), which bound its time by killing the
worker; so math-verify's own signal-based timeouts are switched off here (they break in threads).
Calling ``equivalent`` directly has no time bound: use ``grading.pool.GradePool`` for that.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from thor_cli.grading.normalize import (
    MATH_WORDS,
    UNORDERED,
    canon,
    clean,
    fast_equal,
    match_unordered,
    structure,
)

logging.getLogger("math_verify").setLevel(logging.ERROR)

_DECIMAL = re.compile(r"\d\.\d|(?<![\d}])\.\d|\d\.(?!\d)|\d[eE][-+]?\d")
_EXACT_DIGITS = 60  # working precision of the numeric test that backs the exact one


@lru_cache(maxsize=4096)
def _parse(text: str) -> Any:
    from math_verify import parse

    # Wrapped in \boxed{} so math-verify parses the whole answer, not a number inside it.
    return parse("\\boxed{" + text + "}", parsing_timeout=None)  # type: ignore[arg-type]


def math_verify_equal(pred: str, gold: str) -> bool:
    from math_verify import verify

    g, p = _parse(gold), _parse(pred)
    if not g or not p:
        return False
    return bool(verify(g, p, timeout_seconds=None))


def _exact_number(text: str) -> Any:
    """The sympy number an answer denotes when it is exact (no decimals), with ``i`` = sqrt(-1)."""
    import sympy

    if _DECIMAL.search(text):
        return None
    parsed = _parse(text)
    if not parsed or not isinstance(parsed[0], sympy.Expr):
        return None
    e = parsed[0]
    free = e.free_symbols
    if free and {s.name for s in free} != {"i"}:
        return None
    if free:
        e = e.subs({s: sympy.I for s in free})
    if not e.is_number or e.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
        return None
    return e


def exact_equal(pred: str, gold: str) -> bool | None:
    """Exact equality of two exact numbers; None when either is not one (or sympy cannot tell)."""
    import sympy

    g = _exact_number(gold)
    if g is None:
        return None
    p = _exact_number(pred)
    if p is None:
        return None
    d = sympy.expand(p - g)
    if d == 0:
        return True
    if d.is_Rational:
        return False  # a nonzero rational difference, however small
    approx = sympy.N(d, _EXACT_DIGITS)
    scale = max(1, abs(sympy.N(g, 15)))
    if abs(approx) > sympy.Float(10) ** (-_EXACT_DIGITS // 2) * scale:
        return False  # the difference shows at 30 digits: they differ
    zero = sympy.simplify(d) == 0 or d.equals(0)
    return True if zero else None


def equivalent(pred: str, gold: str) -> tuple[bool, str]:
    """(correct, method). Never raises: a math-verify failure counts as not equivalent."""
    fast = fast_equal(pred, gold)
    if fast is not None:
        return fast
    # a trailing \ldots made a repeating decimal for the fast path; for math-verify the digits
    # written are an approximation (2.718281828... is e, though 1828 happens to repeat)
    cp, cg = (re.sub(r"(?<=\d)\\ldots", "", canon(x)) for x in (pred, gold))
    try:
        ex = exact_equal(cp, cg)
        if ex is not None:
            return ex, "exact_sympy"
    except Exception:  # noqa: BLE001 -- sympy raises anything on odd input; math-verify tries next
        pass
    try:
        if math_verify_equal(cp, cg):
            return True, "math_verify"
    except Exception:  # noqa: BLE001 -- sympy raises anything on odd input; that is "not equal"
        pass
    gs, ps = structure(clean(gold)), structure(clean(pred))
    if gs is not None and ps is not None and gs[0] == ps[0] and len(gs[1]) == len(ps[1]):
        if gs[0] in UNORDERED:
            if match_unordered(ps[1], gs[1], lambda a, b: equivalent(a, b)[0]):
                return True, "structure"
        elif all(equivalent(a, b)[0] for a, b in zip(ps[1], gs[1], strict=True)):
            return True, "structure"
    return False, "unparsed" if _unparsed(cp) or _unparsed(cg) else "math_verify"


def _unparsed(text: str) -> bool:
    """math-verify reads nothing in it, or it is prose (a word of 3+ letters that is no command)."""
    words = re.sub(r"\\[A-Za-z]+", " ", clean(text, keep_space=True))
    if any(len(w) >= 3 and w.lower() not in MATH_WORDS for w in re.findall(r"[A-Za-z]+", words)):
        return True
    try:
        return not _parse(text)
    except Exception:  # noqa: BLE001 -- a parser crash is "nothing read"
        return True


def warm() -> None:
    """Import sympy and math-verify and fill their caches (done once in the fork server)."""
    math_verify_equal("\\frac{1}{2}", "0.5")
    exact_equal("\\sqrt{2}", "2")
