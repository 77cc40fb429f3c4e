"""Grading records: pick the prediction and the gold, decide, attach ``grade``.

``Grader`` is what ``thor grade``, ``thor eval`` and RL rewards call. Math answers are decided
by ``GradePool`` (fast paths in-process, math-verify in time-bounded workers); code problems
(``task == "code"``) by running their tests in the sandbox (``grading.code``). ``Grader.grade``
runs code tests in one sandbox pool of its own, started on the first code record that needs it
and kept (with a private event loop) until the Grader is closed.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from thor_cli import aio
from thor_cli.grading.code import grade_code
from thor_cli.grading.extract import prediction
from thor_cli.grading.pool import GradePool
from thor_cli.records.schema import Grade
from thor_cli.sandbox import Sandbox, SandboxConfig, SandboxRef

T = TypeVar("T")
_PLAIN_NUMBER = re.compile(r"^\$?\s*[-+−]?\s*(\d{1,3}(,\d{3})+|\d+)(\.\d+)?\s*\$?$|^\$?[-+−]?\\?d?frac\{\d+\}\{\d+\}\$?$|^[-+−]?\d+/\d+$")


def is_plain_number(pred: str) -> bool:
    r"""A number as written, not an expression: "3,562,719", "-12.5", "\\frac{3}{4}", "3/4".

    >>> [is_plain_number(x) for x in ("3,562,719", "-12.5", "\\frac{3}{4}", "5406 * 4342", "2^{10}")]
    [True, True, True, False, False]
    """
    return bool(_PLAIN_NUMBER.match(pred.strip()))

@dataclass
class GradeConfig:
    pattern: str | None = None  # a regex for the final answer (group 1 if it has one)
    timeout: float = 5.0  # seconds per answer check; beyond it the answer is graded wrong
    workers: int | None = None  # grader processes (default: number of CPUs)
    gold_field: str = "answer"
    code_timeout: float = 10.0  # seconds per code test run in the sandbox
    code_memory_mb: int = 1024  # memory of a sandbox session running code tests


def gold_of(record: dict[str, Any], field: str = "answer") -> str | None:
    gold = record.get(field)
    if gold is None and field == "answer":
        gold = record.get("final_answer")
    if isinstance(gold, list):  # OlympiadBench keeps a list of accepted forms
        gold = ", ".join(str(g) for g in gold)
    return None if gold is None else str(gold)


def is_code(record: dict[str, Any]) -> bool:
    return record.get("task") == "code"


class Grader:
    """Grades batches of records; reuse one for a whole run (it owns the worker processes and,
    once a code record is graded, a sandbox pool) and close it (``with``) at the end."""

    def __init__(self, config: GradeConfig | None = None, *, sandbox: Sandbox | None = None) -> None:
        """``sandbox``: a started SandboxPool (or a server client) for the code tests to share, e.g.
        with the python tool; None: the grader starts its own on the first code record."""
        self.config = config or GradeConfig()
        self.pool = GradePool(workers=self.config.workers, timeout=self.config.timeout)
        # grade() runs code tests on this loop: a sandbox pool lives on the loop that started it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sandbox = SandboxRef(sandbox, SandboxConfig(timeout=self.config.code_timeout,
                                                          memory_mb=self.config.code_memory_mb))
        self._loop_lock = threading.Lock()

    def close(self) -> None:
        with self._loop_lock:
            loop, self._loop = self._loop, None
            if loop is not None:
                try:
                    loop.run_until_complete(self._sandbox.close())
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()
        self.pool.close()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def grade_math(self, records: list[dict[str, Any]]) -> list[Grade]:
        out: list[Grade | None] = [None] * len(records)
        pairs: list[tuple[str, str]] = []
        where: list[int] = []
        for i, rec in enumerate(records):
            gold = gold_of(rec, self.config.gold_field)
            pred = prediction(rec, pattern=self.config.pattern)
            if gold is None:
                out[i] = Grade(False, pred, None, "no_gold", f'the record has no "{self.config.gold_field}"')
            elif pred is None or not pred.strip():
                out[i] = Grade(False, None, gold, "no_answer", "no final answer found")
            elif rec.get("answer_form") == "number" and not is_plain_number(pred):
                # a task that asks for the value (exact arithmetic): "5406 * 4342" restates the
                # question, it does not answer it, however equal math-verify finds the two
                out[i] = Grade(False, pred, gold, "not_a_number", 'the record asks for a number ("answer_form")')
            else:
                pairs.append((pred, gold))
                where.append(i)
        for i, (ok, method, detail), (pred, gold) in zip(where, self.pool.check(pairs), pairs, strict=True):
            out[i] = Grade(ok, pred, gold, method, detail)
        return [g for g in out if g is not None]

    async def agrade(self, records: list[dict[str, Any]]) -> list[Grade]:
        """Grade from inside an event loop: math in a thread (the pool blocks), code in the sandbox
        (the grader's own pool lives on the loop that first needs it: end with :meth:`aclose` there)."""
        code_idx = [i for i, r in enumerate(records) if is_code(r)]
        math_idx = [i for i, r in enumerate(records) if not is_code(r)]
        out: list[Grade | None] = [None] * len(records)
        if math_idx:
            grades = await asyncio.to_thread(self.grade_math, [records[i] for i in math_idx])
            for i, g in zip(math_idx, grades, strict=True):
                out[i] = g
        if code_idx:
            grades = await grade_code([records[i] for i in code_idx], timeout=self.config.code_timeout,
                                      pool=self._sandbox)
            for i, g in zip(code_idx, grades, strict=True):
                out[i] = g
        return [g for g in out if g is not None]

    def grade(self, records: list[dict[str, Any]]) -> list[Grade]:
        """Grade a batch outside an event loop."""
        if not any(is_code(r) for r in records):
            return self.grade_math(records)
        with self._loop_lock:  # one batch at a time on the private loop
            if self._loop is None:
                self._loop = aio.new_event_loop()
            return self._loop.run_until_complete(self.agrade(records))

    async def aclose(self) -> None:
        """Close the grader's own sandbox pool (not a shared one) on the loop :meth:`agrade` ran on."""
        await self._sandbox.close()


def grade_answer(pred: str | None, gold: str, *, timeout: float = 5.0) -> Grade:
    """One answer against one gold, with its own short-lived pool (convenient, not fast).

    >>> grade_answer("1,000", "1000").correct
    True
    """
    with Grader(GradeConfig(timeout=timeout, workers=1)) as g:
        return g.grade_math([{"pred": pred, "answer": gold}])[0]


def graded_in_batches(items: Iterable[T], grade: Callable[[list[dict[str, Any]]], list[Grade]], *,
                      record: Callable[[T], dict[str, Any]], batch: int = 256) -> Iterator[tuple[T, Grade]]:
    """(item, its grade) for every item, in order, graded ``batch`` records at a time by ``grade``
    (``Grader.grade``, or a cascade's): the one batch loop of ``thor grade`` and ``thor eval
    --grade-only``. Memory stays bounded by the batch."""
    pending: list[T] = []
    size = max(1, batch)
    for item in items:
        pending.append(item)
        if len(pending) >= size:
            yield from zip(pending, grade([record(x) for x in pending]), strict=True)
            pending = []
    if pending:
        yield from zip(pending, grade([record(x) for x in pending]), strict=True)
