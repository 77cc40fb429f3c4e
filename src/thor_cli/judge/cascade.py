"""The grading cascade: rules decide what they can, the judge sees only what they cannot.

"Cannot" (``needs_judge``): the rules said *no* without comparing two mathematical forms --
method ``unparsed`` (math-verify read nothing in one answer, or one is prose), ``string`` (plain
text compared after normalising, which misses paraphrase), ``timeout`` or ``error``. Every
*yes* of the rules stands (they are exact or checked by a CAS), and so does every *no* that
compared two parsed answers (``numeric``, ``exact_sympy``, ``math_verify``, ``structure``,
``choice``), as do ``no_answer``, ``no_gold`` and code tests. A judged record's grade has method
``judge``, ``correct`` = the verdict, the rules' method in ``detail``, and ``judge = {verdict,
reason, model}``; an ``invalid`` reply counts as wrong (precision first).

``CascadeGrader.reward`` is a reward function: 1.0 for a correct answer, else 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thor_cli.grading import Grader, is_code
from thor_cli.judge.judge import Judge, JudgeItem
from thor_cli.records.schema import Grade

JUDGE_METHODS = frozenset({"unparsed", "string", "timeout", "error"})


@dataclass
class JudgedGrade(Grade):
    """A ``Grade`` with the judge's verdict (``to_dict`` gives it as ``grade.judge``)."""

    judge: dict[str, str] | None = None


def needs_judge(record: dict[str, Any], grade: Grade) -> bool:
    """Whether the rules could not decide this record (see the module doc)."""
    return (not grade.correct and grade.method in JUDGE_METHODS and not is_code(record)
            and bool(grade.pred) and bool(grade.gold))


class CascadeGrader:
    """``Grader`` first, ``Judge`` for what it cannot decide. Owns neither: close them yourself."""

    def __init__(self, grader: Grader, judge: Judge, *, question_field: str = "question") -> None:
        self.grader = grader
        self.judge = judge
        self.question_field = question_field

    def _question(self, record: dict[str, Any]) -> str | None:
        q = record.get(self.question_field)
        if q is None and self.question_field == "question":
            q = record.get("problem")  # MATH's field name
        return None if q is None else str(q)

    def _items(self, records: list[dict[str, Any]], grades: list[Grade]) -> tuple[list[int], list[JudgeItem]]:
        idx = [i for i, (r, g) in enumerate(zip(records, grades, strict=True)) if needs_judge(r, g)]
        return idx, [JudgeItem(str(grades[i].pred), str(grades[i].gold), self._question(records[i])) for i in idx]

    @staticmethod
    def _merge(grades: list[Grade], idx: list[int], verdicts: list[Any]) -> list[Grade]:
        out = list(grades)
        for i, v in zip(idx, verdicts, strict=True):
            g = grades[i]
            out[i] = JudgedGrade(v.verdict == "yes", g.pred, g.gold, "judge", f"rules: {g.method}", judge=v.to_dict())
        return out

    def grade(self, records: list[dict[str, Any]]) -> list[Grade]:
        grades = self.grader.grade(records)
        idx, items = self._items(records, grades)
        return self._merge(grades, idx, self.judge.judge(items)) if items else grades

    async def agrade(self, records: list[dict[str, Any]]) -> list[Grade]:
        grades = await self.grader.agrade(records)
        idx, items = self._items(records, grades)
        return self._merge(grades, idx, await self.judge.ajudge(items)) if items else grades

    def reward(self, records: list[dict[str, Any]]) -> list[float]:
        """1.0 per correct answer (rules, else judge), 0.0 otherwise."""
        return [1.0 if g.correct else 0.0 for g in self.grade(records)]

    async def areward(self, records: list[dict[str, Any]]) -> list[float]:
        return [1.0 if g.correct else 0.0 for g in await self.agrade(records)]
