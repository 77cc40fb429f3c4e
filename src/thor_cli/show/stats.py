"""``thor show --stats``: counts, accuracy, tool-call histogram, cell error types, per benchmark."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from thor_cli.show.filters import benchmark_of, cell_statuses, is_correct


def error_type(ex: dict[str, Any] | None, status: str) -> str:
    """"ZeroDivisionError" from "ZeroDivisionError: division by zero"; else the exec status."""
    err = (ex or {}).get("error")
    if status == "error" and err:
        head = str(err).split(":", 1)[0].strip()
        if head and " " not in head:
            return head
    return status


def compute_stats(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    n = graded = correct = 0
    per_bench: dict[str, list[int]] = {}
    tool_hist: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    cells = cells_ok = corrections = 0
    stops: Counter[str] = Counter()
    for rec in records:
        n += 1
        ok = is_correct(rec)
        b = per_bench.setdefault(benchmark_of(rec), [0, 0, 0])
        b[0] += 1
        if ok is not None:
            graded += 1
            b[1] += 1
            correct += ok
            b[2] += ok
        traj = rec.get("trajectory") or {}
        if traj:
            tool_hist[int(traj.get("n_tool_calls", 0))] += 1
            corrections += int(traj.get("n_corrections", 0))
            stops[str(traj.get("stop_reason", "?"))] += 1
        statuses = cell_statuses(rec)
        cells += len(statuses)
        cells_ok += sum(s == "ok" for s in statuses)
        for t in traj.get("turns", []):
            ex = t.get("exec")
            if t.get("kind") == "output" and ex and ex.get("status") != "ok":
                errors[error_type(ex, str(ex.get("status")))] += 1
        for r in traj.get("retries", []):
            ex = r.get("exec")
            errors[error_type(ex, str((ex or {}).get("status") or r.get("reason") or "error"))] += 1
    return {
        "records": n, "graded": graded, "correct": correct,
        "accuracy": correct / graded if graded else None,
        "benchmarks": {k: {"records": v[0], "graded": v[1], "correct": v[2],
                           "accuracy": v[2] / v[1] if v[1] else None} for k, v in sorted(per_bench.items())},
        "tool_calls": dict(sorted(tool_hist.items())), "cells": cells,
        "cell_success_rate": cells_ok / cells if cells else None, "corrections": corrections,
        "cell_errors": dict(errors.most_common()), "stop_reasons": dict(stops.most_common()),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def render_stats(s: dict[str, Any]) -> RenderableType:
    top = Table(title="records", title_justify="left")
    for col in ("benchmark", "records", "graded", "correct", "accuracy"):
        top.add_column(col, justify="left" if col == "benchmark" else "right")
    for name, b in s["benchmarks"].items():
        top.add_row(name, str(b["records"]), str(b["graded"]), str(b["correct"]), _pct(b["accuracy"]))
    top.add_row("all", str(s["records"]), str(s["graded"]), str(s["correct"]), _pct(s["accuracy"]), style="bold")
    hist = Table(title="tool calls per trajectory", title_justify="left")
    hist.add_column("calls", justify="right")
    hist.add_column("trajectories", justify="right")
    hist.add_column("", justify="left")
    most = max(s["tool_calls"].values(), default=1)
    for calls, cnt in s["tool_calls"].items():
        hist.add_row(str(calls), str(cnt), "#" * max(1, round(30 * cnt / most)))
    cells = Table(title=f"cells: {s['cells']} run, success {_pct(s['cell_success_rate'])}, "
                        f"{s['corrections']} self-corrections", title_justify="left")
    cells.add_column("cell error", justify="left")
    cells.add_column("count", justify="right")
    for err, cnt in s["cell_errors"].items():
        cells.add_row(err, str(cnt))
    stops = Table(title="stop reasons", title_justify="left")
    stops.add_column("reason")
    stops.add_column("count", justify="right")
    for reason, cnt in s["stop_reasons"].items():
        stops.add_row(reason, str(cnt))
    return Group(top, hist, cells, stops)
