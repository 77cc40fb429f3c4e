"""Evaluation metrics over graded sample records, per benchmark.

Records are grouped by benchmark (``source``, or the id's first part) and by problem (``id``);
each record is one sample with a ``grade``. Metrics (k = samples per problem):

- avg@k: mean correctness over all samples (the paper's avg@4); pass@1 in expectation.
- pass@k: the unbiased estimator 1 - C(n-c, k) / C(n, k) (Chen et al. 2021), averaged over
  problems; here k = n per problem, so it is "any sample right"; ``pass_at`` gives any k <= n.
- maj@k: the most common predicted answer (grouped by its cleaned form) is right.
- best@k (cells): THOR's self-rewarded best-of-N: the sample whose cells executed best (has an
  answer; then fewest failed cells; then highest cell success rate; then fewest corrections).
- mean tool calls, cell success rate (every executed cell, dropped retries included), mean
  self-corrections, mean completion tokens, wall time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from math import comb
from typing import Any

from thor_cli.grading.normalize import clean
from thor_cli.records.access import benchmark_of, cell_statuses


def pass_at(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for a problem with n samples of which c are correct.

    >>> pass_at(4, 1, 1), pass_at(4, 1, 4), round(pass_at(4, 2, 2), 4)
    (0.25, 1.0, 0.8333)
    """
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def _correct(rec: dict[str, Any]) -> bool:
    g = rec.get("grade")
    return bool(g.get("correct")) if isinstance(g, dict) else False


def _pred(rec: dict[str, Any]) -> str | None:
    g = rec.get("grade")
    p = g.get("pred") if isinstance(g, dict) else None
    return None if p is None or not str(p).strip() else str(p)


def cell_score(rec: dict[str, Any]) -> tuple[int, int, float, int]:
    """Higher is better: (has an answer, -failed cells, cell success rate, -corrections)."""
    statuses = cell_statuses(rec)
    failed = sum(s != "ok" for s in statuses)
    rate = (len(statuses) - failed) / len(statuses) if statuses else 1.0
    corrections = int((rec.get("trajectory") or {}).get("n_corrections", 0))
    return (int(_pred(rec) is not None), -failed, rate, -corrections)


def majority(samples: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A representative sample of the most common answer (ties: the answer seen first)."""
    votes: Counter[str] = Counter()
    first: dict[str, dict[str, Any]] = {}
    for rec in samples:
        p = _pred(rec)
        if p is None:
            continue
        key = clean(p)
        votes[key] += 1
        first.setdefault(key, rec)
    if not votes:
        return None
    top = max(votes.values())
    winner = next(k for k in first if votes[k] == top)
    return first[winner]


def best_by_cells(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """THOR's self-rewarded best-of-N: the first sample with the best ``cell_score``."""
    return max(samples, key=cell_score)  # max keeps the first of equal scores


def tokens_of(rec: dict[str, Any]) -> int:
    """The completion tokens of a record (n_tokens, eval.tokens, completion_ids or the trajectory)."""
    if isinstance(rec.get("n_tokens"), int):
        return int(rec["n_tokens"])
    if isinstance((rec.get("eval") or {}).get("tokens"), int):
        return int(rec["eval"]["tokens"])
    if isinstance(rec.get("completion_ids"), list):
        return len(rec["completion_ids"])
    traj = rec.get("trajectory") or {}
    return sum(len(t.get("ids") or []) for t in traj.get("turns", []))


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def benchmark_metrics(records: list[dict[str, Any]], wall_s: float | None = None) -> dict[str, Any]:
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_problem[str(rec.get("id"))].append(rec)
    for samples in by_problem.values():
        samples.sort(key=lambda r: int(r.get("sample") or 0))
    ns = [len(s) for s in by_problem.values()]
    k = min(ns) if ns else 0
    avg, pk, maj, best = [], [], [], []
    for samples in by_problem.values():
        n, c = len(samples), sum(_correct(r) for r in samples)
        avg.append(c / n)
        pk.append(pass_at(n, c, k))
        m = majority(samples)
        maj.append(float(m is not None and _correct(m)))
        best.append(float(_correct(best_by_cells(samples))))
    statuses = [s for r in records for s in cell_statuses(r)]
    trajs = [r.get("trajectory") or {} for r in records]
    sample_wall = [float(w) for r in records if (w := (r.get("eval") or {}).get("wall_s")) is not None]
    return {
        "problems": len(by_problem), "samples": len(records), "k": k,
        "avg@k": _mean(avg), "pass@k": _mean(pk), "maj@k": _mean(maj), "best@k_cells": _mean(best),
        "pass@1": _mean([pass_at(len(s), sum(_correct(r) for r in s), 1) for s in by_problem.values()]),
        "tool_calls_mean": _mean([float(t.get("n_tool_calls", 0)) for t in trajs]),
        "cells": len(statuses),
        "cell_success_rate": _mean([float(s == "ok") for s in statuses]),
        "corrections_mean": _mean([float(t.get("n_corrections", 0)) for t in trajs]),
        "tokens_mean": _mean([float(tokens_of(r)) for r in records]),
        "tokens_total": sum(tokens_of(r) for r in records),
        "no_answer": sum(_pred(r) is None for r in records),
        "errors": sum(bool(r.get("error")) for r in records),
        "wall_s": wall_s if wall_s is not None else (sum(sample_wall) if sample_wall else None),
        "sample_wall_s_mean": _mean(sample_wall),
    }


def summarize(records: Iterable[dict[str, Any]], wall_s: dict[str, float] | None = None) -> dict[str, Any]:
    """Metrics per benchmark and over all; reads every record (keep only what metrics need)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[benchmark_of(rec)].append(slim(rec))
    out = {name: benchmark_metrics(recs, (wall_s or {}).get(name)) for name, recs in sorted(groups.items())}
    summary: dict[str, Any] = {"benchmarks": out}
    if len(out) > 1:
        accs = [m["avg@k"] for m in out.values() if m["avg@k"] is not None]
        summary["macro_avg@k"] = _mean(accs)
    return summary


def slim(rec: dict[str, Any]) -> dict[str, Any]:
    """The parts of a record metrics need (drops token ids and texts so memory stays small)."""
    traj = rec.get("trajectory") or {}
    turns = [{"kind": t.get("kind"), "exec": {"status": (t.get("exec") or {}).get("status")}}
             for t in traj.get("turns", []) if t.get("kind") == "output" and t.get("exec") is not None]
    retries = [{"exec": {"status": (r.get("exec") or {}).get("status")} if r.get("exec") else None,
                "reason": r.get("reason")} for r in traj.get("retries", [])]
    return {
        "id": rec.get("id"), "source": rec.get("source"), "sample": rec.get("sample"), "grade": rec.get("grade"),
        "error": rec.get("error"), "eval": rec.get("eval"), "n_tokens": tokens_of(rec),
        "trajectory": {"turns": turns, "retries": retries, "n_tool_calls": traj.get("n_tool_calls", 0),
                       "n_corrections": traj.get("n_corrections", 0)},
    }
