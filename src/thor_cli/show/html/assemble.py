"""The data of one ``thor show --html`` report, read from its inputs (no HTML here).

- per run (a label: ``base``, ``sft``, ``rl``, or a file name): the eval summary, computed with
  ``evaluate.metrics.summarize`` from the run's records (the numbers ``thor eval`` prints) or
  taken from an eval summary JSON with the same label; ``show.stats.compute_stats`` (tool calls,
  cell error types, stop reasons); completion lengths;
- per metrics file: its numeric rows (training curves);
- per filter summary: its funnel;
- the browser's rows (``rows.row_of``) of the records that pass the ``show`` filters, at most
  ``limit`` of them (summaries still read every record).

Records are read once, streaming; what is kept per record for the summaries is the small
``slim`` view (no texts, no token ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from thor_cli.errors import InputError
from thor_cli.evaluate.metrics import slim, summarize, tokens_of
from thor_cli.evaluate.report import COLUMNS
from thor_cli.records.jsonl import iter_records
from thor_cli.show.filters import Filters
from thor_cli.show.html.inputs import Input
from thor_cli.show.html.rows import row_of
from thor_cli.show.stats import compute_stats


@dataclass
class Run:
    label: str
    summary: dict[str, Any] | None = None  # evaluate.summarize's shape: {"benchmarks": {...}, ...}
    summary_from: str = ""  # "records" or the summary file's path
    stats: dict[str, Any] | None = None  # show.stats.compute_stats over the run's records
    lengths: list[int] = field(default_factory=list)  # completion tokens per record
    records: int = 0
    paths: list[str] = field(default_factory=list)


@dataclass
class Report:
    runs: list[Run] = field(default_factory=list)
    metrics: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    funnels: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    matched: int = 0  # records that passed the filters (rows may hold fewer: the limit)
    inputs: list[Input] = field(default_factory=list)

    @property
    def benchmarks(self) -> list[str]:
        names = {b for r in self.runs if r.summary for b in r.summary.get("benchmarks", {})}
        return sorted(names)


def _stat_view(rec: dict[str, Any]) -> dict[str, Any]:
    """The parts of a record ``compute_stats`` reads (keeps exec errors: they are the error types)."""
    traj: dict[str, Any] = rec["trajectory"] if isinstance(rec.get("trajectory"), dict) else {}
    outs = [{"kind": "output", "exec": {"status": (t.get("exec") or {}).get("status"),
                                        "error": (t.get("exec") or {}).get("error")}}
            for t in traj.get("turns") or [] if t.get("kind") == "output" and t.get("exec") is not None]
    retries = [{"exec": r.get("exec"), "reason": r.get("reason")} for r in traj.get("retries") or []]
    small = {k: traj.get(k) for k in ("n_tool_calls", "n_corrections", "stop_reason") if k in traj}
    return {"id": rec.get("id"), "source": rec.get("source"), "grade": rec.get("grade"),
            "trajectory": {**small, "turns": outs, "retries": retries} if traj else {}}


def read_metrics(path: str) -> list[dict[str, float]]:
    """The numeric fields of every line of a metrics.jsonl that has an integer ``step``."""
    out = []
    for r in iter_records([path]):
        step = r.data.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            raise InputError("expected an integer", path=r.path, line=r.line, field="step",
                             hint="pass the metrics.jsonl that thor sft / thor rl wrote")
        out.append({k: float(v) for k, v in r.data.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)})
    return out


def _check_summary(inp: Input) -> dict[str, Any]:
    data = inp.data or {}
    for name, m in data.get("benchmarks", {}).items():
        if not isinstance(m, dict):
            raise InputError("expected an object of metrics", path=inp.path, field=f"benchmarks.{name}",
                             hint="pass the JSON that thor eval --summary wrote")
    return data


def _check_funnel(inp: Input) -> dict[str, Any]:
    data = inp.data or {}
    for i, row in enumerate(data.get("funnel", [])):
        if not isinstance(row, dict) or not isinstance(row.get("filter"), str):
            raise InputError("expected an object with a filter name", path=inp.path, field=f"funnel[{i}]",
                             hint="pass the JSON that thor gen filter --summary wrote")
    return data


def assemble(inputs: list[Input], filters: Filters | None = None, limit: int | None = None) -> Report:
    """Read every input into a Report; ``filters`` and ``limit`` select the browser's rows only."""
    filters = filters or Filters()
    rep = Report(inputs=inputs)
    runs: dict[str, Run] = {}

    def run(label: str) -> Run:
        if label not in runs:
            runs[label] = Run(label)
            rep.runs.append(runs[label])
        return runs[label]

    for inp in inputs:
        if inp.kind == "metrics":
            rep.metrics[inp.label] = read_metrics(inp.path)
        elif inp.kind == "funnel":
            rep.funnels[inp.label] = _check_funnel(inp)
        elif inp.kind == "trajectories":
            r = run(inp.label)
            r.paths.append(inp.path)
            slims, views = [], []
            for rec in iter_records([inp.path]):
                d = rec.data
                slims.append(slim(d))
                views.append(_stat_view(d))
                r.lengths.append(tokens_of(d))
                if filters.match(d):
                    rep.matched += 1
                    if limit is None or len(rep.rows) < limit:
                        rep.rows.append(row_of(d, inp.label))
            r.records += len(slims)
            r.summary, r.summary_from = summarize(slims), "records"
            r.stats = compute_stats(views)
    for inp in inputs:  # after the records: an eval summary file with the run's label gives its numbers
        if inp.kind == "eval_summary":
            r = run(inp.label)
            r.summary, r.summary_from = _check_summary(inp), inp.path
            r.paths.append(inp.path)
    return rep


def summary_tables(rep: Report) -> list[dict[str, Any]]:
    """Per benchmark: one row per run with ``evaluate.report.COLUMNS``' values (None if missing)."""
    tables = []
    for bench in rep.benchmarks:
        rows = []
        for r in rep.runs:
            m = (r.summary or {}).get("benchmarks", {}).get(bench)
            if m is not None:
                rows.append({"run": r.label, "k": m.get("k"), "values": [m.get(key) for _, key, _ in COLUMNS]})
        ks = {row["k"] for row in rows}
        tables.append({"benchmark": bench, "k": ks.pop() if len(ks) == 1 else "k", "rows": rows})
    return tables
