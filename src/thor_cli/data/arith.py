"""Synthetic exact-arithmetic problems (``thor data synth arithmetic``): a task a small model
cannot do in its head but can do with a Python tool.

Problems come in plain form ("Compute 4821 * 739.") and word form ("A warehouse holds 4821
boxes of 739 screws each. ..."), in three splits: ``train`` and ``test`` (1-2 operations on
3-6 digit numbers: + - * exact division, floor division, remainder, small powers, percentages,
terminating decimal quotients) and ``hard`` (2-4 operations chained, bigger numbers); plus
``train-hard``, problems drawn like ``hard`` but from the training share of expressions (prompts
for RL, where the model after SFT has headroom; never a problem of ``test`` or ``hard``).

Guarantees:

- Answers are exact: every value is a Python int or ``fractions.Fraction``; never a float. The
  answer is an integer or a terminating decimal, written as a string the grader reads.
- Deterministic: a record depends only on (split, seed, index) (``random.Random`` seeded with
  a string, which Python hashes with SHA-512).
- The splits never share a problem, whatever the seeds: each expression (its canonical form,
  operands of + and * sorted and flattened, so "a*b" and "b*a" are one problem) belongs to
  exactly one split by a hash of it, and a split only keeps its own expressions. Within one
  run of a split, no expression repeats.
- ``meta.expression`` is Python that prints the answer exactly (``//`` where a division is
  integral by construction).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from typing import Any

from thor_cli.data.arith_expr import (
    PY_SYMBOLS,
    Expr,
    canonical,
    count_ops,
    evaluate,
    exact_str,
    node,
    num,
    render,
)
from thor_cli.errors import ThorError, UsageError

SPLITS = ("train", "train-hard", "test", "hard")
FORMS = ("mixed", "plain", "word")
# Shares of the hash space of expressions (of 20 buckets): train 16, test 2, hard 2.
_BUCKETS = {"train": range(0, 16), "test": range(16, 18), "hard": range(18, 20)}


# The share of expressions a split draws from (train-hard lives in train's share).
_SHARE = {"train": "train", "train-hard": "train", "test": "test", "hard": "hard"}
# Which generators a split draws with.
_HARD_STYLE = {"hard", "train-hard"}


def home_split(e: Expr) -> str:
    """The one split an expression may appear in (by a hash of its canonical form)."""
    h = int.from_bytes(hashlib.sha256(("thor-arith:" + canonical(e)).encode()).digest()[:8], "big") % 20
    return next(s for s, r in _BUCKETS.items() if h in r)


# ---- generators: rng -> (expression, kind); numbers sized so the model cannot do them in its head ----

def _n(rng: random.Random, lo: int, hi: int) -> int:
    """A number with lo..hi digits."""
    d = rng.randint(lo, hi)
    return rng.randint(10 ** (d - 1), 10**d - 1)


def _divisors(v: int, lo: int = 3, hi: int = 999) -> list[int]:
    return [d for d in range(lo, min(hi, v) + 1) if v % d == 0]


def _pct_for(rng: random.Random, x: int) -> int | None:
    """A percentage p (1..99, not 50) with p% of x an integer, or None."""
    options = [p for p in range(1, 100) if (x * p) % 100 == 0 and p != 50]
    return rng.choice(options) if options else None


def _basic(rng: random.Random) -> tuple[Expr, str]:
    """One or two operations (train and test)."""
    kind = rng.choices(["mul", "add", "sub", "div", "floor", "mod", "pct", "pow", "mul_add", "mul_sub",
                        "add_mul", "add3", "fdiv"],
                       weights=[4, 2, 2, 2, 1, 2, 2, 1, 2, 2, 2, 1, 1])[0]
    if kind == "mul":
        return node("*", num(_n(rng, 3, 5)), num(_n(rng, 2, 4))), kind
    if kind == "add":
        return node("+", num(_n(rng, 4, 6)), num(_n(rng, 4, 6))), kind
    if kind == "add3":
        return node("+", node("+", num(_n(rng, 3, 6)), num(_n(rng, 3, 6))), num(_n(rng, 3, 6))), kind
    if kind == "sub":
        a, b = sorted([_n(rng, 4, 6), _n(rng, 3, 6)], reverse=True)
        return node("-", num(a), num(b)), kind
    if kind == "div":
        b = _n(rng, 2, 3)
        return node("/", num(b * _n(rng, 3, 4)), num(b)), kind
    if kind in ("floor", "mod"):
        b = _n(rng, 2, 3)
        a = b * _n(rng, 2, 4) + rng.randint(1, b - 1)
        return node("//" if kind == "floor" else "%", num(a), num(b)), kind
    if kind == "pct":
        x = rng.randrange(100, 100_000, 20)
        p = _pct_for(rng, x)
        return (node("pct", num(p), num(x)), kind) if p else _basic(rng)
    if kind == "pow":
        base = rng.randint(11, 99)
        return node("**", num(base), num(rng.randint(3, 5))), kind
    if kind == "mul_add":
        return node("+", node("*", num(_n(rng, 3, 4)), num(_n(rng, 2, 3))), num(_n(rng, 3, 5))), kind
    if kind == "mul_sub":
        a, b = _n(rng, 3, 4), _n(rng, 2, 3)
        return node("-", node("*", num(a), num(b)), num(rng.randint(100, a * b - 1))), kind
    if kind == "add_mul":
        return node("*", node("+", num(_n(rng, 3, 4)), num(_n(rng, 3, 4))), num(_n(rng, 2, 3))), kind
    d = rng.choice([4, 8, 16, 20, 25, 32, 40, 80, 125])  # fdiv: a terminating decimal
    a = _n(rng, 3, 5)
    a += 1 if a % d == 0 else 0
    return node("fdiv", num(a), num(d)), kind


def _compose(rng: random.Random, e: Expr, v: int, room: int) -> tuple[Expr, int]:
    """One more operation on e (value v >= 0) with a new number, or (``room`` >= 2) two more with a
    new product."""
    for _ in range(20):
        step = rng.choice(["+", "-", "*", "/", "+mul", "-mul", "rsub"] if room >= 2 else ["+", "-", "*", "/", "rsub"])
        if step == "+":
            n = _n(rng, 3, 6)
            return node("+", e, num(n)), v + n
        if step == "-" and v > 1000:
            n = rng.randint(100, v - 1)
            return node("-", e, num(n)), v - n
        if step == "*" and v < 10**9:
            n = _n(rng, 2, 3)
            return node("*", e, num(n)), v * n
        if step == "/":
            divs = [d for d in _divisors(v, 7) if v // d > 100]
            if divs:
                d = rng.choice(divs)
                return node("/", e, num(d)), v // d
        if step in ("+mul", "-mul"):
            a, b = _n(rng, 2, 4), _n(rng, 2, 3)
            if step == "+mul":
                return node("+", e, node("*", num(a), num(b))), v + a * b
            if a * b < v:
                return node("-", e, node("*", num(a), num(b))), v - a * b
        if step == "rsub" and v < 10**7:
            n = v + _n(rng, 4, 6)
            return node("-", num(n), e), n - v
    return node("+", e, num(1000)), v + 1000


def _hard(rng: random.Random) -> tuple[Expr, str]:
    """Two to four operations chained, with a remainder or a percentage on top now and then."""
    first = rng.choice(["mul", "pow", "add"])
    if first == "mul":
        e, v = node("*", num(_n(rng, 3, 5)), num(_n(rng, 2, 4))), 0
    elif first == "pow":
        e = node("**", num(rng.randint(12, 99)), num(rng.randint(3, 4)))
    else:
        e = node("+", num(_n(rng, 4, 6)), num(_n(rng, 4, 6)))
    v = int(evaluate(e))
    target = rng.randint(2, 4)
    top = rng.choices(["none", "mod", "pct"], weights=[6, 2, 2])[0] if target >= 3 else "none"
    while count_ops(e) < target - (top != "none"):
        e, v = _compose(rng, e, v, target - (top != "none") - count_ops(e))
    if top == "mod":
        return node("%", e, num(_n(rng, 2, 3))), "chain_mod"
    if top == "pct":
        p = _pct_for(rng, v)
        if p:
            return node("pct", num(p), e), "chain_pct"
        e, v = _compose(rng, e, v, 1)
    return e, "chain"


# ---- word problems: rng -> (expression, question) ----

Word = Callable[[random.Random], tuple[Expr, str]]
_STORES = [("warehouse", "boxes", "screws"), ("library", "shelves", "books"), ("orchard", "rows", "trees"),
           ("stadium", "sections", "seats"), ("factory", "pallets", "bottles"), ("port", "containers", "crates"),
           ("school", "classrooms", "chairs"), ("farm", "crates", "apples")]
_GOODS = [("tablets", "school"), ("bicycles", "club"), ("laptops", "company"), ("tents", "camp"), ("pianos", "academy")]


def _w_mul(rng: random.Random) -> tuple[Expr, str]:
    place, box, item = rng.choice(_STORES)
    a, b = _n(rng, 3, 5), _n(rng, 2, 4)
    return node("*", num(a), num(b)), f"The {place} holds {a} {box} of {b} {item} each. How many {item} are there in all?"


def _w_price(rng: random.Random) -> tuple[Expr, str]:
    thing, buyer = rng.choice(_GOODS)
    a, b = _n(rng, 2, 4), _n(rng, 3, 4)
    return node("*", num(a), num(b)), f"The {buyer} buys {a} {thing} at ${b} each. How many dollars does it pay in total?"


def _w_add(rng: random.Random) -> tuple[Expr, str]:
    a, b = _n(rng, 4, 6), _n(rng, 4, 6)
    return node("+", num(a), num(b)), (f"A museum had {a} visitors in spring and {b} visitors in summer. How many "
                                       "visitors did it have in the two seasons together?")


def _w_sub(rng: random.Random) -> tuple[Expr, str]:
    a, b = sorted([_n(rng, 5, 6), _n(rng, 4, 6)], reverse=True)
    return node("-", num(a), num(b)), (f"A reservoir held {a} liters of water, and {b} liters were drained from it. "
                                       "How many liters are left?")


def _w_share(rng: random.Random) -> tuple[Expr, str]:
    b = _n(rng, 2, 3)
    a = b * _n(rng, 3, 4)
    return node("/", num(a), num(b)), (f"{a} kilograms of rice are shared equally among {b} families. How many "
                                       "kilograms does each family get?")


def _w_floor_mod(rng: random.Random, op: str) -> tuple[Expr, str]:
    b = _n(rng, 2, 3)
    a = b * _n(rng, 2, 4) + rng.randint(1, b - 1)
    ask = ("How many boxes can it fill completely?" if op == "//"
           else "How many cookies are left over after it fills as many boxes as it can?")
    return node(op, num(a), num(b)), f"A bakery packs {a} cookies into boxes of {b}. {ask}"


def _w_pct(rng: random.Random) -> tuple[Expr, str]:
    x = rng.randrange(1000, 1_000_000, 100)
    p = rng.choice([p for p in range(3, 98) if p != 50])
    return node("pct", num(p), num(x)), (f"A town has {x} residents, and {p}% of them voted in the election. How many "
                                         "residents voted?")


def _w_mul_add(rng: random.Random) -> tuple[Expr, str]:
    a, b, c = _n(rng, 3, 4), _n(rng, 2, 3), _n(rng, 2, 3)
    return node("+", node("*", num(a), num(b)), num(c)), (
        f"A farm packs {a} crates with {b} apples in each and has {c} more apples loose. How many apples does it "
        "have in total?")


def _w_mul_sub(rng: random.Random) -> tuple[Expr, str]:
    a, b = _n(rng, 3, 4), _n(rng, 2, 3)
    c = rng.randint(100, a * b - 1)
    return node("-", node("*", num(a), num(b)), num(c)), (
        f"A printer prints {a} pages an hour for {b} hours, and {c} of the pages come out smudged. How many clean "
        "pages does it print?")


def _w_add_mul(rng: random.Random) -> tuple[Expr, str]:
    a, b, c = _n(rng, 3, 4), _n(rng, 3, 4), _n(rng, 2, 3)
    return node("*", node("+", num(a), num(b)), num(c)), (
        f"A shop sold {a} lamps on Monday and {b} lamps on Tuesday, at ${c} per lamp. How many dollars did it "
        "take in for lamps on those two days?")


def _w_growth(rng: random.Random) -> tuple[Expr, str]:
    a, f, k = _n(rng, 3, 4), rng.choice([2, 3]), rng.randint(5, 12)
    how = "doubles" if f == 2 else "triples"
    return node("*", num(a), node("**", num(f), num(k))), (
        f"A culture starts with {a} bacteria, and the number {how} every hour. How many bacteria are there after "
        f"{k} hours?")


WORD_BASIC: dict[str, Word] = {
    "mul": _w_mul, "price": _w_price, "add": _w_add, "sub": _w_sub, "share": _w_share,
    "floor": lambda r: _w_floor_mod(r, "//"), "mod": lambda r: _w_floor_mod(r, "%"), "pct": _w_pct,
    "mul_add": _w_mul_add, "mul_sub": _w_mul_sub, "add_mul": _w_add_mul, "growth": _w_growth,
}


def _w_ship(rng: random.Random, op: str) -> tuple[Expr, str]:
    a, b, d = _n(rng, 3, 4), _n(rng, 2, 3), _n(rng, 2, 3)
    c = rng.randint(100, a * b // 2)
    ask = ("How many boxes can it fill completely?" if op == "//"
           else "How many widgets are left over after it fills as many boxes as it can?")
    rest = node("-", node("*", num(a), num(b)), num(c))
    return node(op, rest, num(d)), (f"A factory makes {a} widgets a day for {b} days. It ships {c} of them and packs "
                                    f"the rest into boxes of {d}. {ask}")


def _w_tickets(rng: random.Random) -> tuple[Expr, str]:
    a, b, c, d = _n(rng, 3, 5), _n(rng, 2, 3), _n(rng, 3, 5), _n(rng, 2, 3)
    return node("+", node("*", num(a), num(b)), node("*", num(c), num(d))), (
        f"A theater sold {a} adult tickets at ${b} each and {c} child tickets at ${d} each. How many dollars did "
        "it take in?")


def _w_raise(rng: random.Random) -> tuple[Expr, str]:
    a, b, p = _n(rng, 3, 4), rng.randrange(1500, 9900, 100), rng.randint(2, 19)
    pay = node("*", num(a), num(b))
    return node("+", pay, node("pct", num(p), pay)), (
        f"A company has {a} employees who each earn ${b} a month. Everyone gets a {p}% raise. What is the new "
        "total monthly payroll in dollars?")


def _w_stock(rng: random.Random) -> tuple[Expr, str]:
    a, b, c = _n(rng, 2, 3), _n(rng, 2, 3), _n(rng, 2, 3)
    d = rng.randint(1000, a * b * c - 1)
    return node("-", node("*", node("*", num(a), num(b)), num(c)), num(d)), (
        f"A warehouse has {a} shelves with {b} boxes on each shelf, and each box holds {c} parts. Then {d} parts "
        "are shipped out. How many parts are left?")


def _w_tiles(rng: random.Random) -> tuple[Expr, str]:
    c = rng.randint(12, 60)
    a, b = c * _n(rng, 2, 3), c * _n(rng, 2, 3)
    return node("*", node("/", num(a), num(c)), node("/", num(b), num(c))), (
        f"A hall is {a} cm long and {b} cm wide. It is covered with square tiles {c} cm on a side, without gaps "
        "or overlaps. How many tiles are used?")


def _w_savings(rng: random.Random) -> tuple[Expr, str]:
    a, b, d = _n(rng, 3, 3), _n(rng, 2, 3), rng.randint(3, 19)
    total = a * b
    c = total % d + d * rng.randint(1, max(1, total // (2 * d)))
    return node("/", node("-", node("*", num(a), num(b)), num(c)), num(d)), (
        f"Maya saves ${a} every week for {b} weeks. She spends ${c} on a bike and splits the rest equally among "
        f"{d} charities. How many dollars does each charity get?")


WORD_HARD: dict[str, Word] = {
    "ship_boxes": lambda r: _w_ship(r, "//"), "ship_left": lambda r: _w_ship(r, "%"), "tickets": _w_tickets,
    "raise": _w_raise, "stock": _w_stock, "tiles": _w_tiles, "savings": _w_savings,
}


# ---- records ----

PLAIN_LEADS = ("Compute {e}.", "What is {e}?", "Calculate {e}.", "Evaluate {e}.")


def plain_question(e: Expr, rng: random.Random) -> str:
    sym = {**PY_SYMBOLS, "/": rng.choice(["/", "÷"]), "fdiv": "/", "*": rng.choice(["*", "*", "×"]), "**": "^"}
    if e.op == "%":
        return f"What is the remainder when {render(e.args[0], sym)} is divided by {render(e.args[1], sym)}?"
    if e.op == "//":
        return (f"What is {render(e.args[0], sym)} divided by {render(e.args[1], sym)}, rounded down to a "
                "whole number?")
    if e.op == "pct":
        return f"What is {render(e, sym)}?"
    if e.op == "fdiv":
        return f"Compute {render(e, sym)} exactly, as a decimal."
    return rng.choice(PLAIN_LEADS).format(e=render(e, sym))


def _draw(split: str, rng: random.Random, form: str) -> tuple[Expr, str, str, str]:
    """(expression, kind, form, question) drawn for ``split``."""
    if form == "word" or (form == "mixed" and rng.random() < 0.5):
        table = WORD_HARD if split in _HARD_STYLE else WORD_BASIC
        kind = rng.choice(sorted(table))
        e, question = table[kind](rng)
        return e, kind, "word", question
    e, kind = _hard(rng) if split in _HARD_STYLE else _basic(rng)
    return e, kind, "plain", plain_question(e, rng)


def generate(split: str, n: int, seed: int = 0, form: str = "mixed") -> Iterator[dict[str, Any]]:
    """``n`` distinct problem records of ``split`` (one of ``SPLITS``) for ``seed``."""
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}", f"choose one of: {', '.join(SPLITS)}")
    if form not in FORMS:
        raise UsageError(f"unknown form {form!r}", f"choose one of: {', '.join(FORMS)}")
    if n < 0:
        raise UsageError(f"--n {n}: must be >= 0", None)
    rng = random.Random(f"thor-arith/{split}/{seed}/{form}")
    seen: set[str] = set()
    made = tries = 0
    while made < n:
        tries += 1
        if tries > 100 * n + 1000:
            raise ThorError(f"could not draw {n} distinct {split} problems ({made} after {tries} tries)",
                            "ask for fewer")
        e, kind, shown, question = _draw(split, rng, form)
        key = canonical(e)
        if key in seen or home_split(e) != _SHARE[split]:
            continue
        value = evaluate(e)
        seen.add(key)
        yield {
            "id": f"arith-{split}/{seed}/{made}",
            "question": question,
            "answer": exact_str(value),
            "source": f"arith-{split}",
            "task": "math",
            "answer_form": "number",  # the grader wants the value, not the expression restated
            "meta": {"expression": render(e), "ops": count_ops(e), "difficulty": _difficulty(e, split),
                     "kind": kind, "form": shown, "seed": seed},
        }
        made += 1


def _difficulty(e: Expr, split: str) -> str:
    ops = count_ops(e)
    return "hard" if split in _HARD_STYLE or ops >= 3 else "medium" if ops == 2 else "easy"


def worked_solution(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """A worked tool-integrated solution of a generated problem as an OpenAI chat (``messages``):
    the question, one python call that evaluates the problem's own expression, the tool's output
    (what that code prints, run here: the expression is thor's own, never a model's), and the
    answer in ``\\boxed{}``. Reference solutions for a cold start (``thor sft`` reads ``messages``),
    like the worked solutions a dataset ships with.

    >>> msgs = worked_solution({"question": "Compute 12 * 13.", "answer": "156", "meta": {"expression": "12 * 13"}})
    >>> [m["role"] for m in msgs], msgs[2]["content"], msgs[3]["content"]
    (['user', 'assistant', 'tool', 'assistant'], '156', 'The answer is \\\\boxed{156}.')
    >>> msgs[0]["content"].startswith("Compute 12 * 13.\\nPlease integrate natural language reasoning")
    True
    """
    import contextlib
    import io
    import json
    from fractions import Fraction

    from thor_cli.rollout.protocols import get_protocol

    expr = rec["meta"]["expression"]
    code = expr if "print(" in expr else f"print({expr})"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<arith>", "exec"), {"Fraction": Fraction})  # noqa: S102 -- thor's own generated code
    call = {"id": "call_0", "type": "function", "function": {"name": "python", "arguments": json.dumps({"code": code})}}
    # the user message is the one thor's engine prompts with (the thor protocol's, tools on), so SFT
    # trains on the prompt the model is run with: a bare question here taught SmolLM2 to close the
    # prompt's "\\boxed{}" right after "\\boxed{" (empty answers, hard split 36% -> 8% after SFT)
    user = get_protocol("thor").user_message(rec["question"], with_tools=True)
    return [{"role": "user", "content": user},
            {"role": "assistant", "content": "Let me compute it exactly with Python.\n", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0", "content": out.getvalue().strip()},
            {"role": "assistant", "content": f"The answer is \\boxed{{{rec['answer']}}}."}]
