"""THOR's step level: where to resample a trajectory whose tool call failed, the reward of a
resampled step, the step sample's loss mask, and how the two levels' losses combine.

Flow (the trainer's, with ``RolloutEngine``):

    cut = step_cut(rec["trajectory"])                       # None: no failed cell
    fields = await engine.continue_from(rec, cut_turn=cut.cut_turn, backoff_tokens=cut.backoff_tokens,
                                        one_round=True, sample=k, self_correct=False)
    reward = step_reward(fields); mask = step_loss_mask(fields)

The cut is just before the FIRST failing cell's code turn: the step that went wrong first is the
one to learn from (the reference implementation backs off to the *last* cell, which is a later,
often unrelated step, or a cell that ran fine). ``backoff_tokens`` is the number of sampled
tokens the engine will then remove (``TrajState.back_off``): the last ``suffix_tokens`` (THOR's
L_suf = 100) of the reasoning before that cell, never reaching back past a tool output, into text
another author wrote (a TIRGen critic's step) or into the prompt; it is exactly what ``back_off`` removes, so ``prefix_tokens`` can be checked against it.

Step-level continuations must run with ``self_correct=False``: a self-correction would drop the
failed new cell and hide the failure the reward is about.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from thor_cli.errors import ThorError
from thor_cli.train.rl.filters import cell_failure, failed_cells, is_policy, turns_of

THOR_SUFFIX_TOKENS = 100  # L_suf


class StepCut(NamedTuple):
    """``continue_from(record, **cut._asdict(), one_round=True)``."""

    cut_turn: int
    backoff_tokens: int


def step_cut(traj: dict[str, Any], *, suffix_tokens: int = THOR_SUFFIX_TOKENS) -> StepCut | None:
    """The cut before the first failing cell of ``traj``, or None when no cell failed."""
    failed = failed_cells(traj)
    if not failed:
        return None
    cut = failed[0]
    turns = turns_of(traj)
    room = 0  # policy-sampled tokens between the previous tool output / other author's text / prompt and the cell
    for t in reversed(turns[:cut]):
        if not is_policy(t):
            break
        ids = t.get("ids")
        if ids is None:
            raise ThorError("the trajectory was written without token ids (--drop-ids)",
                            "roll out with token ids kept for step-level resampling")
        room += len(ids)
    return StepCut(cut, min(max(suffix_tokens, 0), room))


def step_reward(fields: dict[str, Any]) -> float | None:
    """1.0 when the first cell written after the prefix executed without failing (the protocol's
    rule: exec status ok and, for python, printed output), else 0.0 (a failed cell, a cell that
    never ran, or no cell at all: the step's job was a working tool call). None when the
    continuation itself failed (its ``error`` is set): that is no verdict on the model.

    ``fields``: what ``RolloutEngine.continue_from`` returned.
    """
    if fields.get("error"):
        return None
    info = fields.get("continued_from")
    if not isinstance(info, dict):
        raise ThorError("the record has no continued_from", "pass the output of RolloutEngine.continue_from")
    traj = fields["trajectory"]
    turns = turns_of(traj)
    for i in range(int(info["prefix_turns"]), len(turns)):
        if turns[i].get("kind") == "code":
            ran = i + 1 < len(turns) and turns[i + 1].get("kind") == "output"
            return 1.0 if ran and cell_failure(traj, i) is None else 0.0
    return 0.0


def step_loss_mask(fields: dict[str, Any]) -> list[int]:
    """The continuation's ``completion_mask`` with the kept prefix zeroed: a step-level sample
    trains only on what was resampled."""
    mask = fields.get("completion_mask")
    info = fields.get("continued_from")
    if not isinstance(mask, list) or not isinstance(info, dict):
        raise ThorError("the record lacks completion_mask or continued_from",
                        "pass continue_from output rolled out with token ids kept")
    n = int(info["prefix_tokens"])
    return [0] * min(n, len(mask)) + [int(x) for x in mask[n:]]


def combine_levels(traj_loss: torch.Tensor, step_loss: torch.Tensor | None, step_weight: float = 1.0) -> torch.Tensor:
    """``traj_loss + step_weight * step_loss`` (THOR adds the two, weight 1). ``None``: no step samples
    this step.

    Each level is aggregated over its own tokens first, so a few step samples weigh as much as
    the whole trajectory batch; to weigh every token alike instead, put both levels' samples in
    one batch (their group ids keep the advantages apart) and aggregate once."""
    return traj_loss if step_loss is None else traj_loss + step_weight * step_loss
