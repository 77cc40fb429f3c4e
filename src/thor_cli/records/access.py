"""Read-only accessors over plain record dicts, shared by stages (evaluate, show, later gen and rl)."""

from __future__ import annotations

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
