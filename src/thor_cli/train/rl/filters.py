"""THOR's rollout filters: pure predicates on a trajectory dict (a record's ``trajectory``).

A trajectory-level sample is dropped when a tool call failed, when it is very short, or when it
does not end with a non-empty ``\\boxed{}``; then a group with too few survivors is dropped whole
(its advantages would rest on one or two samples). DAPO's dynamic sampling (``dapo.py``) comes
after these.

"Failed" follows the rollout protocol's own rule (``ToolProtocol.failure``, the one that triggers
self-correction): exec status error / timeout / killed / memory, or a python cell that printed
nothing. A code turn without an output turn (the trajectory stopped at its tool budget or on an
error) was never executed and is not a failed cell. Self-corrections (``retries``) are failed
calls too; ``count_retries=False`` ignores them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from thor_cli.errors import ThorError
from thor_cli.records.schema import ExecResult, default_author
from thor_cli.rollout.protocols import get_protocol, last_boxed


def turns_of(traj: dict[str, Any]) -> list[dict[str, Any]]:
    turns = traj.get("turns")
    if not isinstance(turns, list):
        raise ThorError("the trajectory has no turns list", 'pass a record\'s "trajectory" dict')
    return turns


def is_policy(turn: dict[str, Any]) -> bool:
    """The policy sampled this turn's ids (``Turn.sampled`` on a turn dict): not tool output, not
    text a critic or a dataset wrote."""
    return (turn.get("author") or default_author(str(turn.get("kind")))) == "policy"


def cell_failure(traj: dict[str, Any], code_turn: int) -> str | None:
    """Why the cell at ``turns[code_turn]`` failed (the protocol's reason), or None when it ran
    fine or never ran."""
    turns = turns_of(traj)
    if turns[code_turn].get("kind") != "code" or code_turn + 1 >= len(turns):
        return None
    out = turns[code_turn + 1]
    if out.get("kind") != "output" or out.get("exec") is None:
        return None
    tool = out.get("tool") or turns[code_turn].get("tool") or "python"
    proto = get_protocol(traj.get("protocol") or "thor")
    return proto.failure(str(tool), ExecResult.from_dict(out["exec"]))


def failed_cells(traj: dict[str, Any]) -> list[int]:
    """Indices (into ``turns``) of the code turns whose execution failed, in order."""
    return [i for i, t in enumerate(turns_of(traj)) if t.get("kind") == "code" and cell_failure(traj, i) is not None]


def has_failed_cell(traj: dict[str, Any], *, count_retries: bool = True) -> bool:
    return bool(failed_cells(traj)) or (count_retries and bool(traj.get("retries")))


def sampled_tokens(traj: dict[str, Any]) -> int:
    """Token ids the policy sampled (kept turns; tool output and other authors' text left out)."""
    n = 0
    for t in turns_of(traj):
        if not is_policy(t):
            continue
        ids = t.get("ids")
        if ids is None and t.get("text"):
            raise ThorError("the trajectory was written without token ids (--drop-ids)",
                            "roll out with token ids kept to filter by length")
        n += len(ids or [])
    return n


def too_short(traj: dict[str, Any], min_tokens: int) -> bool:
    return sampled_tokens(traj) < min_tokens


def ends_with_boxed(traj: dict[str, Any]) -> bool:
    """Does the model's text after its last tool output hold a non-empty ``\\boxed{}``?"""
    turns = turns_of(traj)
    last_out = max((i for i, t in enumerate(turns) if t.get("kind") == "output"), default=-1)
    tail = "".join(str(t.get("text", "")) for t in turns[last_out + 1:])
    boxed = last_boxed(tail)
    return boxed is not None and boxed.strip() != ""


def reject_reason(traj: dict[str, Any], *, min_tokens: int = 0, count_retries: bool = True) -> str | None:
    """The first filter that rejects ``traj`` ("failed_cell", "too_short", "no_boxed"), or None."""
    if has_failed_cell(traj, count_retries=count_retries):
        return "failed_cell"
    if min_tokens > 0 and too_short(traj, min_tokens):
        return "too_short"
    if not ends_with_boxed(traj):
        return "no_boxed"
    return None


def survivors(group_ids: Sequence[Hashable], keep: Sequence[bool], min_survivors: int) -> list[bool]:
    """``keep`` with whole groups dropped when fewer than ``min_survivors`` of their samples are kept.

    >>> survivors(["a", "a", "b", "b"], [True, True, True, False], 2)
    [True, True, False, False]
    """
    if len(group_ids) != len(keep):
        raise ThorError(f"{len(keep)} keep flags for {len(group_ids)} group ids", "pass one of each per sample")
    count: dict[Hashable, int] = {}
    for g, k in zip(group_ids, keep, strict=True):
        count[g] = count.get(g, 0) + bool(k)
    return [bool(k) and count[g] >= min_survivors for g, k in zip(group_ids, keep, strict=True)]
