"""TIRGen critics: rewrite an actor's reasoning step so that its computations become Python cells.

A critic returns the step unchanged except that each computation becomes a THOR cell,
``"```python\\n" + code + "\\n```\\n"``, whose code prints the result; the claimed result the
actor wrote is dropped. The critic never writes outputs: the pipeline (``thor gen``) runs each
cell in the sandbox and splices ``"```output\\n" + result + "\\n```\\n"`` right after it
(:func:`cells` gives where), so the text up to a cell's end plus ``"```output"`` is exactly what
``rollout.protocols.THOR.parse_call`` reads back.

- :class:`Critic` is the interface (an LLM critic, as in the paper with Qwen3-32B, implements the
  same ``rewrite``; ``feedback`` carries the failed cell's error on a retry).
- :class:`ArithmeticCritic` is rule-based: it finds explicit arithmetic ("4821 * 739 = 3562719",
  "4,821 × 739", "12% of 350 is 40", "4821 times 739 is", ``$4821 \\times 739 = 3562719$``) and
  turns each into a cell (parsing and Python in ``gen.arith_parse``). Where the paper's critic
  also writes code for equation solving or hypothesis checks, this one only does arithmetic, and
  it never invents a computation: anything it cannot parse whole stays as it was.

Placement: with a claimed result ("= 3562719", "is 40") the cell replaces the claim (the text keeps
the expression and the "=" or "is"); without one, the cell follows the end of the sentence. A
LaTeX span ``$...$`` is rewritten only when it is ``[lhs =] expression [= claims]``: the claim is
dropped and the span closed before the cell; any other span is left alone, as are existing code
blocks and inline code, and arithmetic that leads straight into a python cell ("48 + 184 =" then
the actor's own cell: a small actor writes cells itself once its prefix has some).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from thor_cli.gen.arith_parse import Parsed, parse_at, python_code

CELL_OPEN, CELL_CLOSE = "```python\n", "\n```\n"


def cell(code: str) -> str:
    """One THOR cell around ``code`` (the pipeline adds ```output after it)."""
    return f"{CELL_OPEN}{code.strip(chr(10))}{CELL_CLOSE}"


def cells(text: str) -> list[tuple[str, int]]:
    """(code, end) of each ```python cell in ``text``; ``end`` is where its output goes.

    >>> cells("So\\n```python\\nprint(2 * 3)\\n```\\nhence")
    [('print(2 * 3)', 30)]
    """
    return [(m.group(1), m.end()) for m in re.finditer(r"```python\n(.*?)\n```\n?", text, re.S)]


@dataclass(frozen=True)
class CriticResult:
    text: str  # the rewritten step (the step itself when nothing changed)
    n_cells: int  # cells the critic wrote
    changed: bool


class Critic(Protocol):
    async def rewrite(self, problem: dict[str, Any], step: str, feedback: str | None = None) -> CriticResult:
        """The step with its computations as cells. ``problem`` is the problem record (the paper's
        critic does not see it; an implementation may). ``feedback``: the error of a cell this
        critic wrote for the same step, on a retry."""
        ...


# ---- regions: prose, math spans, code ----

_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_ENVIRONMENT = re.compile(r"\\begin\{([^}]+)\}.*?(?:\\end\{\1\}|\Z)|\[asy\].*?(?:\[/asy\]|\Z)", re.S)
_DISPLAY = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)", re.S)
_DOLLAR = re.compile(r"(?<![\\$])\$(?=[^\s$])((?:[^$\n\\]|\\.|\n(?!\s*\n))+?)(?<=\S)(?<!\\)\$(?!\d|\$)")


@dataclass(frozen=True)
class Region:
    kind: str  # text, math, code
    start: int
    end: int
    inner: tuple[int, int] = (0, 0)  # for math: the content between the delimiters


def regions(text: str) -> list[Region]:
    """``text`` cut into prose, math spans ($..$ by pandoc's rules, so "$5 and $7" is prose) and
    code (fenced blocks, inline code), in order, covering all of it."""
    taken: list[Region] = []
    for m in _FENCE.finditer(text):
        taken.append(Region("code", m.start(), m.end()))
    for m in _ENVIRONMENT.finditer(text):  # align, equation, asy ...: left whole, like code
        if not any(r.start < m.end() and m.start() < r.end for r in taken):
            taken.append(Region("code", m.start(), m.end()))

    def free(a: int, b: int) -> bool:
        return not any(r.start < b and a < r.end for r in taken)

    for rx, kind in ((_INLINE_CODE, "code"), (_DISPLAY, "math"), (_DOLLAR, "math")):
        for m in rx.finditer(text):
            if free(m.start(), m.end()):
                g = next(i for i in range(1, (m.lastindex or 0) + 1) if m.group(i) is not None) if kind == "math" else 0
                taken.append(Region(kind, m.start(), m.end(), (m.start(g), m.end(g)) if g else (0, 0)))
    taken.sort(key=lambda r: r.start)
    out, pos = [], 0
    for r in taken:
        if r.start > pos:
            out.append(Region("text", pos, r.start))
        out.append(r)
        pos = r.end
    if pos < len(text):
        out.append(Region("text", pos, len(text)))
    return out


# ---- finding arithmetic ----

_START = re.compile(r"\(|\\left\(|\\[dt]?frac\{|[-−]?\d")
_OPERATOR_BEFORE = re.compile(r"(?:[-+*/^×÷·∙⋅−%]|\\times|\\cdot|\\div|\b(?:times|plus|minus))[ \t]*\Z")
_AFTER_BAD = re.compile(r"[ \t]*(?:[-+*/^×÷·∙⋅−%!(]|\\times|\\cdot|\\div|\\%|times\b|plus\b|minus\b)"
                        r"|[A-Za-z_\d]|\.\d")
_CONNECT = re.compile(r"[ \t]*(=|≈|\\approx|is equal to|equals|is|gives(?: us)?|yields|makes|comes to|which is)"
                      r"(?![A-Za-z])[ \t]*")
_PAREN_BEFORE = re.compile(r"(?:\\left\(|\()[ \t]*\Z")
_PAREN_AFTER = re.compile(r"[ \t]*(?:\\right\)|\))")
_CHAIN = re.compile(r"[ \t]*(=|≈|\\approx)[ \t]*")
_CURRENCY = re.compile(r"\\?\$")


@dataclass(frozen=True)
class Match:
    code: str
    start: int  # of the expression
    end: int  # of the expression
    cut: int  # where the claim begins (after the connector); == end when there is no claim
    claim_end: int  # == end when there is no claim


def _claim(text: str, i: int, math: bool) -> tuple[int, int] | None:
    """(cut, end) of a claimed result after an expression ending at ``i``: a connector ("=", "is",
    ...) and a stated value (a number, -n, a/b; after "$" in prose), then more "= value" parts;
    None if there is none."""
    m = _CONNECT.match(text, i)
    if not m:
        return None
    cut, end, rx = m.end(), None, _CONNECT
    cur = _CURRENCY.match(text, cut) if not math else None
    cut = cur.end() if cur else cut  # "= $18": the dollar sign is prose and stays
    while m:
        j = cut if end is None else m.end()
        p = parse_at(text, j, math=math)
        if p is None or p.start != j or not _is_value(p.tree) or _AFTER_BAD.match(text, p.end):
            break  # "= 4821 * 700 + ..." is more reasoning, not a result: it stays (and is found next)
        end = p.end
        rx = _CHAIN
        m = rx.match(text, end)
    return None if end is None else (cut, end)


def _is_value(tree: tuple) -> bool:
    """A stated result: a number, a negative number, or a fraction of two numbers."""
    if tree[0] == "neg":
        return tree[1][0] == "num"
    return tree[0] == "num" or (tree[0] == "div" and tree[1][0] == "num" and tree[2][0] == "num")


def _context_ok(seg: str, a: int, s: int, e: int) -> bool:
    """Nothing glued to the expression ``seg[s:e]`` makes it part of something bigger (``2x + 3``,
    ``x^2 + 3``, ``(2^2)^x``, ``f(3) + 2``): checked outside any parentheses around it too."""
    while True:
        before = seg[max(a, s - 1):s]
        left = seg[max(a, s - 40):s]  # a window: searching all of seg[a:s] per candidate would be quadratic
        if (before and (before.isalnum() or before in "_.,^{\\")) or _OPERATOR_BEFORE.search(left):
            return False
        if _AFTER_BAD.match(seg, e):
            return False
        lm = _PAREN_BEFORE.search(left)
        rm = _PAREN_AFTER.match(seg, e)
        if not (lm and rm):
            return True
        s, e = s - len(left) + lm.start(), rm.end()


def find(text: str, a: int, b: int, *, math: bool, min_digits: int = 1) -> list[Match]:
    """The arithmetic expressions in ``text[a:b]`` that become cells, in order."""
    out: list[Match] = []
    seg = text[:b]
    pos = a
    while True:
        m = _START.search(seg, pos)
        if m is None:
            return out
        s = m.start()
        pos = s + 1
        before = seg[max(a, s - 1):s]
        if before and (before.isalnum() or before in "_.,^{\\"):
            continue
        p = parse_at(seg, s, math=math)
        if p is None or p.start != s:
            continue
        if not p.ops or not _context_ok(seg, a, s, p.end):
            pos = max(pos, p.end) if p.ops else pos  # what it glues to, its parts glue to as well
            continue
        claim = _claim(seg, p.end, math)
        if not _plausible(p, claim is not None, math, min_digits):
            pos = p.end
            continue
        code = python_code(p.tree)
        if code is None:
            pos = p.end
            continue
        cut, end = claim or (p.end, p.end)
        out.append(Match(code, s, p.end, cut, end))
        pos = end


def _plausible(p: Parsed, claimed: bool, math: bool, min_digits: int) -> bool:
    """Whether a parsed expression is arithmetic someone computed (not a range, date or list):
    "3-5", "12/25", "3 x 4" and "9 mod 10" count only with a claimed result."""
    for t in p.ops:
        tight = not t.spaced and t.start > p.start
        if t.value in ("x", "mod") and not claimed:
            return False  # "3 x 4 grid", "n^2 \\equiv 9 \\bmod 10": notation unless a result is claimed
        if t.value in ("sub", "div") and not claimed and tight and t.start == t.end - 1:
            return False
    if not claimed and _is_value(p.tree):
        return False  # a bare 3/4 or \frac{3}{4} is a number; "3562719 / 739 = 4821" is a division
    if math and _has_negative_power(p.tree):
        return False  # 7^{-1} in a proof is usually a modular inverse
    if math and not claimed and p.tree[0] == "pow" and p.tree[1][0] == p.tree[2][0] == "num":
        return False  # a lone $3^2$ is notation more often than a computation
    return max(len(n.split(".")[0]) for n in p.numbers) >= min_digits


def _has_negative_power(tree: tuple) -> bool:
    if tree[0] == "num":
        return False
    if tree[0] == "pow" and tree[2][0] == "neg":
        return True
    return any(_has_negative_power(t) for t in tree[1:] if isinstance(t, tuple))


# ---- the rewrite ----

@dataclass
class _Edit:
    start: int  # text[start:end] is replaced
    end: int
    close: str = ""  # written before the cells (a math span's closing delimiter)
    codes: list[str] = field(default_factory=list)
    claim: bool = False  # a dropped claim: punctuation that followed it goes too


_SENTENCE_END = re.compile(r"[.!?](?=[ \t]*(?:\n|\Z)|[ \t]+\S)|\n")


def rewrite_arithmetic(step: str, *, min_digits: int = 1) -> CriticResult:
    """The rule-based rewrite (see the module docstring); ``min_digits``: skip expressions whose
    numbers all have fewer digits (``3 + 4``)."""
    edits: list[_Edit] = []
    pending: list[str] = []  # cells of expressions without a claim, waiting for the sentence end

    def flush_at(i: int) -> None:
        if pending:
            edits.append(_Edit(i, i, codes=pending.copy()))
            pending.clear()

    rs = regions(step)
    for i, r in enumerate(rs):
        if r.kind == "code":
            flush_at(r.start)
        elif r.kind == "math":
            _math_span(step, r, edits, pending, min_digits)
        else:
            pos = r.start
            cell_next = i + 1 < len(rs) and step.startswith(CELL_OPEN, rs[i + 1].start)
            for m in find(step, r.start, r.end, math=False, min_digits=min_digits):
                if cell_next and _leads_into_cell(step, m, r.end):
                    continue
                end = _sentence_end(step, pos, m.start) if pending else None
                if end is not None:
                    flush_at(end)
                if m.claim_end > m.end:  # the cell takes the claim's place, after any still waiting
                    edits.append(_Edit(m.cut, m.claim_end, codes=[*pending, m.code], claim=True))
                    pending.clear()
                else:
                    pending.append(m.code)
                pos = m.claim_end
            end = _sentence_end(step, pos, r.end) if pending else None
            if end is not None:
                flush_at(end)
    flush_at(len(step))
    text, n = _apply(step, edits)
    return CriticResult(text, n, text != step)


def _leads_into_cell(step: str, m: Match, end: int) -> bool:
    """Whether only a connector, a claim and blanks stand between ``m`` and ``end``, where a python
    cell begins: the step computes it in that cell already ("48 + 184 =" then the actor's own
    cell), and a second cell before it would only repeat it."""
    pos = m.claim_end
    if pos == m.end:
        c = _CONNECT.match(step, pos)
        pos = c.end() if c else pos
    return not step[pos:end].strip(" \t\n.,;:")


def _sentence_end(step: str, a: int, b: int) -> int | None:
    m = _SENTENCE_END.search(step, a, b)
    if m is None:
        return None
    return m.start() if m.group() == "\n" else m.end()


def _math_span(step: str, r: Region, edits: list[_Edit], pending: list[str], min_digits: int) -> None:
    """A math span: rewritten only when it is [lhs =] expression [= claims] and nothing more."""
    a, b = r.inner
    found = find(step, a, b, math=True, min_digits=min_digits)
    if len(found) != 1:
        return
    m = found[0]
    rest = step[m.claim_end:b].strip(" \t\n.,;")
    lhs = step[a:m.start]
    if rest or (lhs.strip() and not lhs.rstrip().endswith("=")):
        return
    if m.claim_end > m.end:  # the claim and the rest of the span go; the span is closed before the cell
        edits.append(_Edit(m.cut, r.end, close=step[b:r.end], codes=[*pending, m.code], claim=True))
        pending.clear()
    else:
        pending.append(m.code)


def _apply(step: str, edits: list[_Edit]) -> tuple[str, int]:
    """The step with the edits made, and the number of cells written."""
    parts: list[str] = []  # every part before a cell ends in a newline, so only the newest piece is stripped
    pos = n = 0
    for e in sorted(edits, key=lambda e: e.start):
        if not e.codes or e.start < pos:
            continue
        piece = step[pos:e.start].rstrip(" \t") + e.close
        if piece and not piece.endswith("\n") or (not piece and parts and not parts[-1].endswith("\n")):
            piece += "\n"
        parts += [piece, *(cell(c) for c in e.codes)]
        n += len(e.codes)
        pos = e.end
        while pos < len(step) and step[pos] in " \t":
            pos += 1
        if e.claim and pos < len(step) and step[pos] in ".,;" and step[pos + 1:pos + 2] in ("", " ", "\t", "\n"):
            pos += 1  # the claim's punctuation
            while pos < len(step) and step[pos] in " \t":
                pos += 1
        if step.startswith("\n", pos):
            pos += 1  # the cell ends the line already
    return "".join(parts) + step[pos:], n


# "The final answer is 209784." / "the answer is: $-3.5$" -- a number stated as the answer in words
# "the answer is 16 + 16 = 32" states an expression, not 16, and "40x" a term: a number that the
# arithmetic goes on from, or glued to a letter, is not the answer (nor a prefix of it: no early stop)
_STATED_ANSWER = re.compile(r"((?:final answer|the answer|answer)\s*(?:is|:|=)\s*:?\s*\$?)(-?\d[\d,]*(?:\.\d+)?)"
                            r"(?!\d|[.,]\d|[(A-Za-z_])(?![ \t]*(?:[-+*/^×÷·∙⋅−=<>%]|\\times|\\cdot|\\div|x[ \t]*\d|"
                            r"(?:times|plus|minus|divided|multiplied)\b))(\$?)", re.I)


def box_stated_answer(step: str) -> str:
    """``step`` with the last number stated as the answer in words put in ``\\boxed{}``, when the step
    has no ``\\boxed`` yet (THOR's format stage keeps only boxed answers; small actors often state
    the answer without it). The number itself is the actor's, unchanged.

    >>> box_stated_answer("So the final answer is 1,234.")
    'So the final answer is \\\\boxed{1234}.'
    >>> box_stated_answer("Answer: \\\\boxed{3}")
    'Answer: \\\\boxed{3}'
    """
    if "\\boxed" in step:
        return step
    found = list(_STATED_ANSWER.finditer(step))
    if not found:
        return step
    m = found[-1]
    return step[:m.start(2)] + "\\boxed{" + m.group(2).replace(",", "") + "}" + step[m.end(2):]


@dataclass
class ArithmeticCritic:
    """Rule-based critic for explicit arithmetic. A retry (``feedback``) gets the step back
    unchanged: the rules would write the same cell again. ``box_answer``: also put a final
    answer stated in words ("the answer is 42") in ``\\boxed{}`` (``box_stated_answer``)."""

    min_digits: int = 1
    name: str = "arithmetic"
    box_answer: bool = True

    async def rewrite(self, problem: dict[str, Any], step: str, feedback: str | None = None) -> CriticResult:
        if feedback is not None:
            return CriticResult(step, 0, False)
        res = rewrite_arithmetic(step, min_digits=self.min_digits)
        if self.box_answer:
            boxed = box_stated_answer(res.text)
            if boxed != res.text:
                return CriticResult(boxed, res.n_cells, True)
        return res


CRITICS: dict[str, type[ArithmeticCritic]] = {"arithmetic": ArithmeticCritic}
