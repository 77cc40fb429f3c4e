"""Accessors over plain record dicts, shared by stages (rollout, evaluate, show, later gen and rl):
read-only ones, and ``drop_ids`` (the one place that strips the engine's token ids)."""

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


# The token-id fields the rollout engine adds to a record (with keep_ids): top level, per turn.
COMPLETION_FIELDS = ("completion_ids", "completion_mask", "completion_logprobs")
ENGINE_ID_FIELDS = ("prompt_ids", *COMPLETION_FIELDS, "token_source")
TURN_ID_FIELDS = ("ids", "logprobs")


def drop_ids(rec: dict[str, Any]) -> dict[str, Any]:
    """Remove the token ids the rollout engine adds (``--drop-ids``), in place; returns ``rec``.

    Call it on the engine's output fields before merging them into the input problem: a
    ``prompt_ids`` the problem came with is input (the engine's prompt), not engine output, and
    must stay. A retry keeps its ``dropped_text`` and gets ``dropped_ids: []`` (the schema default).
    """
    for k in ENGINE_ID_FIELDS:
        rec.pop(k, None)
    traj = rec.get("trajectory")
    if isinstance(traj, dict):
        for t in traj.get("turns") or []:
            for k in TURN_ID_FIELDS:
                t.pop(k, None)
        for r in traj.get("retries") or []:
            r["dropped_ids"] = []
    return rec
