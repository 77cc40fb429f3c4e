"""Which records ``thor show`` shows: --id, --wrong, --failed-cells, --benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from thor_cli.records.access import benchmark_of, cell_statuses  # noqa: F401 -- re-exported


def has_failed_cell(rec: dict[str, Any]) -> bool:
    return any(s != "ok" for s in cell_statuses(rec))


def is_correct(rec: dict[str, Any]) -> bool | None:
    grade = rec.get("grade")
    return None if not isinstance(grade, dict) else bool(grade.get("correct"))


@dataclass
class Filters:
    ids: list[str] = field(default_factory=list)
    wrong: bool = False
    failed_cells: bool = False
    benchmarks: list[str] = field(default_factory=list)

    def match(self, rec: dict[str, Any]) -> bool:
        if self.ids and str(rec.get("id")) not in self.ids:
            return False
        if self.wrong and is_correct(rec) is not False:
            return False
        if self.failed_cells and not has_failed_cell(rec):
            return False
        return not (self.benchmarks and benchmark_of(rec) not in self.benchmarks)
