"""Full answer equivalence: the fast paths, then math-verify, then element-wise structure.

Runs inside grader worker processes (``grading.pool``), which bound its time by killing the
worker; so math-verify's own signal-based timeouts are switched off here (they break in threads).
Calling ``equivalent`` directly has no time bound: use ``grading.pool.GradePool`` for that.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from thor_cli.grading.normalize import clean, fast_equal, structure

logging.getLogger("math_verify").setLevel(logging.ERROR)


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


def equivalent(pred: str, gold: str) -> tuple[bool, str]:
    """(correct, method). Never raises: a math-verify failure counts as not equivalent."""
    fast = fast_equal(pred, gold)
    if fast is not None:
        return fast
    try:
        if math_verify_equal(pred, gold):
            return True, "math_verify"
    except Exception:  # noqa: BLE001 -- sympy raises anything on odd input; that is "not equal"
        pass
    gs, ps = structure(clean(gold)), structure(clean(pred))
    if gs is not None and ps is not None and gs[0] == ps[0] and len(gs[1]) == len(ps[1]):
        if all(equivalent(a, b)[0] for a, b in zip(ps[1], gs[1], strict=True)):
            return True, "structure"
    return False, "math_verify"


def warm() -> None:
    """Import sympy and math-verify and fill their caches (done once in the fork server)."""
    math_verify_equal("\\frac{1}{2}", "0.5")
