"""Which records ``thor show`` shows: --id, --wrong, --failed-cells, --benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def benchmark_of(rec: dict[str, Any]) -> str:
    """The record's benchmark: ``source``, else the first part of an id like ``math500/...``."""
    src = rec.get("source")
    if src:
        return str(src)
    rid = str(rec.get("id", ""))
    return rid.split("/", 1)[0] if "/" in rid else "unknown"


def cell_statuses(rec: dict[str, Any]) -> list[str]:
    """Exec status of every cell the model ran, failed retries (self-corrections) included."""
    traj = rec.get("trajectory") or {}
    out = [str((t.get("exec") or {}).get("status", "ok")) for t in traj.get("turns", [])
           if t.get("kind") == "output" and t.get("exec") is not None]
    for r in traj.get("retries", []):
        out.append(str((r.get("exec") or {}).get("status") or r.get("reason") or "error"))
    return out


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
